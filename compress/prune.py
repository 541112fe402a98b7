"""Structured pruning of a transformer encoder: whole attention heads and FFN channels, on
any family whose surgery includes them (the family names the modules: `prune_sites`).

torch-pruning's dependency graph removes the matching rows and columns everywhere (Q/K/V
outputs with the attention output's inputs, FFN up with FFN down). Per DESIGN.md's
measurements: the embeddings and the two residual-writing projections (attention output,
FFN output) stay unpruned on their output side, so the hidden size never changes.

A pruned model cannot be rebuilt from its Hugging Face config (the head count is derived from
it), so `load_pruned` resizes each Linear to the saved weights' shape.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch

from edgeslim.compress.configs import PruneConfig
from edgeslim.errors import StepError


def _per_layer(value, layers: int, name: str) -> list[float]:
    if isinstance(value, (int, float)):
        return [float(value)] * layers
    if len(value) != layers:
        raise StepError(f"prune.{name} lists {len(value)} ratios; the model has {layers} layers")
    return [float(v) for v in value]


def layer_shapes(model) -> list[dict]:
    """Heads and FFN width of every block of an EncoderModel."""
    shapes = []
    for block in model.family.blocks(model.module):
        sites = model.family.prune_sites(block)
        shapes.append({"heads": sites.query.out_features // sites.head_size, "ffn": sites.ffn_in.out_features})
    return shapes


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def prune_model(model, cfg: PruneConfig):
    """Return (pruned EncoderModel, record). Importance: L2 norm of each head's / channel's
    weights across every layer it couples (torch-pruning GroupMagnitudeImportance)."""
    import torch_pruning as tp

    family = model.family
    for part, ratios in (("heads", cfg.heads), ("ffn", cfg.ffn)):
        wanted = any(r > 0 for r in (ratios if isinstance(ratios, tuple) else (ratios,)))
        refusal = family.surgery.refusal(part, family.name) if wanted else None
        if refusal:
            raise StepError(refusal)
    pruned = model.replace(module=copy.deepcopy(model.module).eval())
    module = pruned.module
    if not family.transformer:
        return _prune_cnn(model, pruned, cfg)
    blocks = family.blocks(module)
    heads = _per_layer(cfg.heads, len(blocks), "heads")
    ffn = _per_layer(cfg.ffn, len(blocks), "ffn")
    before = parameter_count(module)
    shapes_before = layer_shapes(model)
    names = [spec.name for spec in model.inputs()]
    example = dict(zip(names, model.example_inputs()))
    num_heads, head_ratio, ffn_ratio = {}, {}, {}
    ignored = family.prune_ignored(module)
    for block, head_r, ffn_r in zip(blocks, heads, ffn):
        sites = family.prune_sites(block)
        for linear in (sites.query, sites.key, sites.value):
            num_heads[linear] = linear.out_features // sites.head_size
            head_ratio[linear] = head_r
            # torch-pruning skips a group whose channel ratio is 0; with prune_head_dims=False this
            # ratio only switches head pruning on, it removes no dimensions inside a head.
            ffn_ratio[linear] = head_r
        ffn_ratio[sites.ffn_in] = ffn_r
        # The residual-writing projections keep their outputs: the hidden size never changes.
        ignored += [sites.attention_out, sites.ffn_out]
        if ffn_r == 0:
            ignored.append(sites.ffn_in)
    pruner = tp.pruner.MetaPruner(
        module, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=0.0, pruning_ratio_dict=ffn_ratio, ignored_layers=ignored,
        num_heads=num_heads, prune_num_heads=True, prune_head_dims=False, head_pruning_ratio_dict=head_ratio,
        output_transform=lambda out: out.last_hidden_state,
    )
    with torch.no_grad():
        pruner.step()
    family.sync_heads(module)
    from edgeslim.models import weights_digest

    pruned = pruned.replace(name=f"{model.name}-pruned", weights_sha256=weights_digest(module))
    record = {
        "importance": "L2 magnitude per coupled group (torch-pruning GroupMagnitudeImportance)",
        "parameters_before": before,
        "parameters_after": parameter_count(module),
        "layers_before": shapes_before,
        "layers_after": layer_shapes(pruned),
    }
    return pruned, record


def _prune_cnn(model, pruned, cfg: PruneConfig):
    """Conv-channel pruning: `ffn` is the one channel ratio (CNNs have no heads)."""
    if isinstance(cfg.ffn, tuple):
        raise StepError(f"prune.ffn for a CNN ({model.family.name}) is one channel ratio, not one per layer")
    from edgeslim.models import weights_digest

    family, module = model.family, pruned.module
    before = parameter_count(module)
    family.prune_channels(module, float(cfg.ffn))
    pruned = pruned.replace(name=f"{model.name}-pruned", weights_sha256=weights_digest(module))
    return pruned, {"importance": "L2 magnitude per coupled group (torch-pruning GroupMagnitudeImportance)",
                    "channel_ratio": cfg.ffn, "parameters_before": before, "parameters_after": parameter_count(module),
                    "conv_channels_before": family.channel_shapes(model.module),
                    "conv_channels_after": family.channel_shapes(module)}


def save_pruned(model, path: Path) -> None:
    """Weights + family + config in one safetensors file (family and config as JSON in its
    header), written atomically. Nothing in it is pickled: loading it runs no code."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tensors = {name: tensor.contiguous() for name, tensor in model.module.state_dict().items()}
    save_file(tensors, str(tmp), metadata={"format": "edgeslim.pruned/2", "family": model.family.name,
                                           "config": json.dumps(model.module.config.to_dict())})
    os.replace(tmp, path)


def load_pruned(path: Path):
    """(family, module): the family's model built from the saved config, every Linear resized to
    the saved weights' shape (pruned blocks differ from what the config says), then loaded."""
    from safetensors import SafetensorError, safe_open
    from transformers import AutoConfig, AutoModel

    from edgeslim.errors import RecipeError
    from edgeslim.models import get_family

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            state_dict = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise StepError(f"{path} is not a pruned model saved by edgeslim (safetensors): {exc}") from None
    if metadata.get("format") != "edgeslim.pruned/2":
        raise StepError(f"{path}: safetensors header has format {metadata.get('format')!r}, expected "
                        "'edgeslim.pruned/2' (save it with edgeslim.compress.prune.save_pruned)")
    try:
        family = get_family(metadata["family"])
        config_dict = json.loads(metadata["config"])
        config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    except (KeyError, ValueError, RecipeError) as exc:
        raise StepError(f"{path}: unreadable family or config in the header ({exc})") from None
    module = AutoModel.from_config(config)
    for name, sub in list(module.named_modules()):
        if isinstance(sub, torch.nn.Linear) and f"{name}.weight" in state_dict:
            out_features, in_features = state_dict[f"{name}.weight"].shape
            if (out_features, in_features) != (sub.out_features, sub.in_features):
                parent, _, attr = name.rpartition(".")
                setattr(module.get_submodule(parent) if parent else module, attr,
                        torch.nn.Linear(in_features, out_features, bias=sub.bias is not None))
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
    if unexpected or any(not key.startswith("pooler.") for key in missing):
        raise StepError(f"{path}: weights do not fit the {family.name} model of its config "
                        f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    if missing:  # saved without the pooler, which sentence encoders do not use
        module.pooler = None
    family.sync_heads(module)
    return family, module.eval()
