"""Structured pruning of a BERT encoder: whole attention heads and FFN channels.

torch-pruning's dependency graph removes the matching rows and columns everywhere (Q/K/V
outputs with the attention output's inputs, FFN up with FFN down). Per DESIGN.md's
measurements: the embeddings and the two residual-writing projections (attention.output.dense,
output.dense) stay unpruned on their output side, so the hidden size never changes.

A pruned model cannot be rebuilt from its Hugging Face config (the head count is derived from
it), so `save_pruned`/`load_pruned` store the per-layer shapes next to the weights.
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


def layer_shapes(bert) -> list[dict]:
    head_size = bert.encoder.layer[0].attention.self.attention_head_size
    return [{"heads": layer.attention.self.query.out_features // head_size,
             "ffn": layer.intermediate.dense.out_features} for layer in bert.encoder.layer]


def parameter_count(bert) -> int:
    return sum(p.numel() for p in bert.parameters())


def prune_model(model, cfg: PruneConfig):
    """Return (pruned EncoderModel, record). Importance: L2 norm of each head's / channel's
    weights across every layer it couples (torch-pruning GroupMagnitudeImportance)."""
    import torch_pruning as tp

    bert = copy.deepcopy(model.bert).eval()
    layers = bert.encoder.layer
    heads = _per_layer(cfg.heads, len(layers), "heads")
    ffn = _per_layer(cfg.ffn, len(layers), "ffn")
    before = parameter_count(bert)
    shapes_before = layer_shapes(bert)
    ids, mask = model.tokenize(["an example sentence that traces the graph", "short"])
    example = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    num_heads, head_ratio, ffn_ratio = {}, {}, {}
    ignored = [bert.embeddings]
    for layer, head_r, ffn_r in zip(layers, heads, ffn):
        attention = layer.attention.self
        for linear in (attention.query, attention.key, attention.value):
            num_heads[linear] = linear.out_features // attention.attention_head_size
            head_ratio[linear] = head_r
            # torch-pruning skips a group whose channel ratio is 0; with prune_head_dims=False this
            # ratio only switches head pruning on, it removes no dimensions inside a head.
            ffn_ratio[linear] = head_r
        ffn_ratio[layer.intermediate.dense] = ffn_r
        ignored += [layer.attention.output.dense, layer.output.dense]
        if ffn_r == 0:
            ignored.append(layer.intermediate.dense)
    pruner = tp.pruner.MetaPruner(
        bert, example, importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=0.0, pruning_ratio_dict=ffn_ratio, ignored_layers=ignored,
        num_heads=num_heads, prune_num_heads=True, prune_head_dims=False, head_pruning_ratio_dict=head_ratio,
        output_transform=lambda out: out.last_hidden_state,
    )
    with torch.no_grad():
        pruner.step()
    after = parameter_count(bert)
    from edgeslim.models import EncoderModel, weights_digest

    pruned = EncoderModel(
        name=f"{model.name}-pruned", bert=bert, tokenizer=model.tokenizer, pooling=model.pooling,
        normalize=model.normalize, max_seq_length=model.max_seq_length,
        weights_sha256=weights_digest(bert), license=model.license,
    )
    record = {
        "importance": "L2 magnitude per coupled group (torch-pruning GroupMagnitudeImportance)",
        "parameters_before": before,
        "parameters_after": after,
        "layers_before": shapes_before,
        "layers_after": layer_shapes(bert),
    }
    return pruned, record


def save_pruned(bert, path: Path) -> None:
    """Weights + config + per-layer shapes in one safetensors file (config and shapes as JSON in
    its header), written atomically. Nothing in it is pickled: loading it runs no code."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tensors = {name: tensor.contiguous() for name, tensor in bert.state_dict().items()}
    save_file(tensors, str(tmp), metadata={"format": "edgeslim.pruned/1", "config": json.dumps(bert.config.to_dict()),
                                           "layers": json.dumps(layer_shapes(bert))})
    os.replace(tmp, path)


def load_pruned(path: Path):
    """Rebuild a BertModel with the saved per-layer head and FFN sizes, then load its weights."""
    from safetensors import SafetensorError, safe_open
    from transformers import BertConfig, BertModel

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            state_dict = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise StepError(f"{path} is not a pruned model saved by edgeslim (safetensors): {exc}") from None
    if metadata.get("format") != "edgeslim.pruned/1":
        raise StepError(f"{path}: safetensors header has format {metadata.get('format')!r}, expected "
                        "'edgeslim.pruned/1' (save it with edgeslim.compress.prune.save_pruned)")
    try:
        config = BertConfig.from_dict(json.loads(metadata["config"]))
        layers = json.loads(metadata["layers"])
    except (KeyError, ValueError) as exc:
        raise StepError(f"{path}: unreadable config or layer shapes in the header ({exc})") from None
    bert = BertModel(config, add_pooling_layer=any(k.startswith("pooler.") for k in state_dict))
    hidden = config.hidden_size
    for layer, shape in zip(bert.encoder.layer, layers):
        attention = layer.attention.self
        width = shape["heads"] * attention.attention_head_size
        for name in ("query", "key", "value"):
            setattr(attention, name, torch.nn.Linear(hidden, width))
        attention.num_attention_heads = shape["heads"]
        attention.all_head_size = width
        layer.attention.output.dense = torch.nn.Linear(width, hidden)
        layer.intermediate.dense = torch.nn.Linear(hidden, shape["ffn"])
        layer.output.dense = torch.nn.Linear(shape["ffn"], hidden)
    bert.load_state_dict(state_dict, strict=True)
    return bert.eval()

