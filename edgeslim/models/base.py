"""The contract every model family fulfils, and the loaded encoder the pipeline passes around.

A family knows one architecture: how to build it from a config (for tiny random test models)
or a folder, which inputs it takes, how to run it as the teacher, an export-friendly module,
and which surgery applies to it. Everything else (distillation, pruning, export, estimates)
is written once against this contract.

Needs torch (the `compress` extra); the runtime never imports this.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

# A finite additive mask instead of transformers' finfo.min: the latter wrecks int8 activation
# scales. exp(-30) ~ 1e-13, so float results are unchanged.
MASK_VALUE = -30.0


# Surgery a family may support; steps name the parts they need (`StepBase.needs`).
SURGERY_PARTS = {
    "layers": "keep a subset of the transformer blocks / stages (distill.keep_layers)",
    "heads": "remove whole attention heads (prune.heads)",
    "ffn": "remove feed-forward / conv channels (prune.ffn)",
    "vocabulary": "shrink the token table with its WordPiece tokenizer (vocab_prune, static_embeddings)",
    "npu_body": "split into a CPU prelude and an integer-only body (npu_body_quantize)",
}


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, dtype, shape with named dynamic axes."""

    name: str
    dtype: str
    shape: tuple[str | int, ...]

    def to_manifest(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Surgery:
    """Which surgery parts apply; `why_not` says, for each absent one, why."""

    parts: frozenset[str]
    why_not: dict[str, str] = field(default_factory=dict)

    def refusal(self, part: str, family: str) -> str | None:
        if part in self.parts:
            return None
        reason = self.why_not.get(part, "the architecture has no such part")
        return f"family {family!r} does not support {SURGERY_PARTS[part]}: {reason}"


@dataclass(frozen=True)
class PruneSites:
    """The modules of one block that structured pruning couples: the attention projections
    whose outputs are heads, the one that merges them, and the FFN up/down pair."""

    query: Any
    key: Any
    value: Any
    attention_out: Any
    ffn_in: Any
    ffn_out: Any
    head_size: int


class ModelFamily:
    """Base class of a model family. Subclasses set the class attributes and override what
    their architecture needs; see `edgeslim/models/bert.py` for a complete one."""

    name: ClassVar[str]
    modality: ClassVar[str]
    # Hugging Face `config.model_type` values this family loads from a folder.
    model_types: ClassVar[tuple[str, ...]] = ()
    surgery: ClassVar[Surgery] = Surgery(frozenset())
    poolings: ClassVar[tuple[str, ...]] = ("mean", "cls")
    transformer: ClassVar[bool] = True  # attention blocks (quantizers place transformer patterns)
    load_kwargs: ClassVar[dict] = {}  # passed to from_pretrained (e.g. no classification pooler)
    languages: ClassVar[str | None] = None  # text families: what model cards say they cover

    # -- building -------------------------------------------------------------------------
    def tiny_random(self, max_seq_length: int):
        """(module, tokenizer or preprocessing) with random weights (seed 0), built offline."""
        raise NotImplementedError

    def from_folder(self, folder):
        """The module saved in a Hugging Face folder (config.json + model.safetensors)."""
        raise NotImplementedError

    def save(self, module, folder) -> None:
        """Write the module as a folder `source: local` reads (config.json + model.safetensors)."""
        module.save_pretrained(folder, safe_serialization=True)

    def save_preprocessing(self, preprocessing: dict, folder) -> None:
        """Write `preprocessing` into a model folder, in the file `preprocessing()` reads."""
        raise NotImplementedError(f"family {self.name} has no preprocessing to save")

    def inputs(self, module) -> tuple[InputSpec, ...]:
        """The exported graph's inputs, in the exportable module's argument order."""
        raise NotImplementedError

    def preprocessing(self, module, folder) -> dict | None:
        """The manifest's preprocessing for families of a modality that has one (images:
        resize/crop, interpolation, mean/std; audio: the log-mel front end); None for text."""
        return None

    def output(self, hidden_size: int) -> InputSpec:
        return InputSpec("last_hidden_state", "float32", ("batch", "sequence", hidden_size))

    def hidden_size(self, module) -> int:
        return int(module.config.hidden_size)

    # -- running --------------------------------------------------------------------------
    def hidden_states(self, module, **inputs):
        """The teacher's own forward: token (or patch) states as the source library runs it."""
        raise NotImplementedError

    def exportable(self, module):
        """A copy of the model as a module whose positional arguments are `inputs()` in order
        and whose output is the token states, written with ops every exporter handles."""
        raise NotImplementedError

    # -- surgery --------------------------------------------------------------------------
    def blocks(self, module):
        """The ModuleList of transformer blocks (or stages) `keep_layers` selects from."""
        raise NotImplementedError

    def keep_blocks(self, module, indices: tuple[int, ...]) -> None:
        """Keep only `indices` of the blocks, in place (module is already a copy)."""
        import torch

        blocks = self.blocks(module)
        self._set_blocks(module, torch.nn.ModuleList([blocks[i] for i in indices]))
        module.config.num_hidden_layers = len(indices)

    def _set_blocks(self, module, blocks) -> None:
        raise NotImplementedError

    def fewest_blocks(self, module) -> tuple[int, ...]:
        """The smallest valid `keep_layers` (a CNN keeps each stage's first block)."""
        return (0,)

    def prune_sites(self, block) -> PruneSites:
        raise NotImplementedError

    def sync_heads(self, module) -> None:
        """After head pruning: make each block's head-count attributes match its weights (for
        architectures whose forward reshapes by the count rather than by -1)."""

    def prune_ignored(self, module) -> list:
        """Modules torch-pruning must leave whole (embeddings: the hidden size never changes)."""
        return [module.get_input_embeddings()]

    def word_embeddings(self, module):
        return module.get_input_embeddings()

    def set_word_embeddings(self, module, embedding) -> None:
        module.set_input_embeddings(embedding)
        module.config.vocab_size = embedding.num_embeddings

    # -- cost -----------------------------------------------------------------------------
    def macs(self, module, positions: int, batch: int = 1) -> float:
        """MACs of one forward pass counted from the model's own layers (so pruned and
        distilled students count right): every Linear applied to each position, plus the two
        attention matmuls of each block."""
        import torch

        blocks = self.blocks(module)
        linear = sum(m.in_features * m.out_features for m in blocks.modules() if isinstance(m, torch.nn.Linear))
        attention = sum(2 * positions * positions * self.attention_width(block) for block in blocks)
        return float(batch * (positions * linear + attention))

    def attention_width(self, block) -> int:
        return int(self.prune_sites(block).query.out_features)


def eager_forward(family: "ModelFamily", module, input_names: tuple[str, ...]):
    """A copy of a transformers model as an export module: positional `input_names` in, the
    family's token states out, eager attention (plain MatMul/Softmax ops in the graph)."""
    import copy

    import torch

    class EagerForward(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            model = copy.deepcopy(model)
            model.config._attn_implementation = "eager"
            self.model = model

        def forward(self, *inputs):
            return family.hidden_states(self.model, **dict(zip(input_names, inputs)))

    return EagerForward(module).eval()


def weights_digest(module) -> str:
    """sha256 over every tensor of a model's state dict: its identity for caches and manifests."""
    digest = hashlib.sha256()
    for tensor in module.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def pool_states(hidden: np.ndarray, mask: np.ndarray | None, pooling: str, normalize: bool) -> np.ndarray:
    from edgeslim.runtime.text import pool

    if mask is None:
        mask = np.ones(hidden.shape[:2], np.int64)
    return pool(hidden, mask, pooling, normalize)
