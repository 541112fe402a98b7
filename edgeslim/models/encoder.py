"""A loaded encoder: a family's module plus what it reads (a tokenizer for text) and how it
pools. What the pipeline, the steps and the benchmark worker pass around."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from edgeslim.models.base import ModelFamily, pool_states


@dataclass
class EncoderModel:
    name: str
    family: ModelFamily
    module: object  # a torch.nn.Module in eval mode
    pooling: str
    normalize: bool
    weights_sha256: str
    license: str = "unknown: see the source model's documentation"
    tokenizer: object | None = None  # tokenizers.Tokenizer, truncation at max_seq_length (text)
    max_seq_length: int | None = None
    preprocessing: dict | None = None  # the manifest's preprocessing (images, audio), run by the runtime's modality
    languages: str | None = None  # text: what the model card says it covers

    reference = "PyTorch fp32"  # what the baseline runs on
    on_overlong = "truncate"

    @property
    def modality(self) -> str:
        return self.family.modality

    @property
    def runtime_modality(self):
        from edgeslim.runtime.modalities import MODALITIES

        return MODALITIES[self.modality]

    @property
    def transformer(self) -> bool:
        return self.family.transformer

    @property
    def hidden_size(self) -> int:
        return self.family.hidden_size(self.module)

    def replace(self, **changes) -> "EncoderModel":
        return dataclasses.replace(self, **changes)

    def parameters_mb(self) -> float:
        return sum(p.numel() * p.element_size() for p in self.module.parameters()) / 1e6

    # -- input: prepared exactly as the runtime prepares it on a device ---------------------
    @property
    def preprocessor(self):
        """The tokenizer, or the typed preprocessing (what the runtime's modality reads)."""
        return self.tokenizer if self.tokenizer is not None else self.runtime_modality.preprocessing(self.preprocessing)

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs()]

    def note_truncated(self, count: int) -> None:
        """Texts cut to max_seq_length are not counted for the teacher (the runtime counts them)."""

    def model_inputs(self, items, pad_to: int | None = None) -> dict[str, np.ndarray]:
        """The graph's feeds for a batch of raw items (texts padded to the longest or `pad_to`)."""
        return self.runtime_modality.model_inputs(self.preprocessor, list(items), self.input_names, pad_to)[0]

    def tokenize(self, texts, pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Text: (input_ids, attention_mask) int64 arrays."""
        from edgeslim.runtime.text import tokenize

        return tokenize(self.tokenizer, texts, pad_to)

    # -- running --------------------------------------------------------------------------
    def states(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Token / patch / frame states of the PyTorch model for `feeds` (numpy in and out)."""
        import torch

        with torch.inference_mode():
            hidden = self.family.hidden_states(self.module, **{k: torch.from_numpy(v) for k, v in feeds.items()})
        return hidden.float().numpy()

    def embed_inputs(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Pooled embeddings of prepared input (the reference for every bundle)."""
        hidden = self.states(feeds)
        return pool_states(hidden, self.runtime_modality.pooling_mask(feeds, hidden), self.pooling, self.normalize)

    def embed_tokens(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.embed_inputs({"input_ids": input_ids, "attention_mask": attention_mask})

    def embed_items(self, items, batch_size: int = 32) -> np.ndarray:
        """Reference embeddings of raw items (texts, images, clips): the runtime's input
        preparation, then the plain PyTorch model, as its source library runs it."""
        return self.runtime_modality.embed_items(self, list(items), batch_size)

    embed = embed_items

    def exportable(self):
        return self.family.exportable(self.module)

    def inputs(self):
        return self.family.inputs(self.module)

    def output(self):
        return self.family.output(self.hidden_size)

    def example_inputs(self) -> tuple:
        """Inputs to trace the exportable module with (the modality's choice)."""
        from edgeslim.modalities import get_modality

        return get_modality(self.modality).example_inputs(self)
