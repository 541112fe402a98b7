"""The encoder body for microcontroller NPUs (Arm Ethos-U): integer-only, static shape.

The NPU gets what it runs well: the transformer layers, fed hidden states and an additive
mask. Token lookup, the embedding LayerNorm and the mask stay on the CPU (`prelude.npz`,
run by `edgeslim.runtime.prelude`, which also feeds calibration here, so the quantizer sees
exactly what the device will).

Two rewrites keep every body op on the NPU in the precision it supports (Vela 5.2
SUPPORTED_OPS): LayerNorm without SQUARED_DIFFERENCE (the quantizer leaves it in float at
int16) and GELU as x * sigmoid(1.5958 (x + 0.044715 x^3)), the tanh form, which the
converter would otherwise fold back into a GELU op that U55/U65 run in int8 only. Under
`int16-mixed` the GELU input stays int16 through MUL/ADD/LOGISTIC, which the NPU runs at int16.
"""

from __future__ import annotations

import copy
import os
import warnings

import numpy as np

from edgeslim.compress.artifacts import ModelArtifact, NpuBodyModel, TorchModel
from edgeslim.errors import StepError
from edgeslim.runtime.prelude import embed_tokens

# ai-edge-quantizer rules: (operation, activation bits); later rules override earlier ones.
_PRECISION = {
    "int8": [("*", 8)],
    # BATCH_MATMUL and GELU: int8 only on U55/U65; SOFTMAX int8 keeps the probabilities exact enough.
    "int16-mixed": [("*", 16), ("BATCH_MATMUL", 8), ("GELU", 8), ("SOFTMAX", 8)],
}


def _quantizer_recipe(activations: str) -> list[dict]:
    return _quantizer_recipe_for(_PRECISION[activations])


def _quantizer_recipe_for(rules) -> list[dict]:
    return [{"regex": ".*", "operation": op, "algorithm_key": "min_max_uniform_quantize",
             "op_config": {"activation_tensor_config": {"num_bits": bits, "symmetric": bits == 16,
                                                        "granularity": "TENSORWISE", "dtype": "INT"},
                           "weight_tensor_config": {"num_bits": 8, "symmetric": True,
                                                    "granularity": "CHANNELWISE", "dtype": "INT"},
                           "compute_precision": "INTEGER", "explicit_dequantize": False,
                           "skip_checks": False, "min_weight_elements": 0}}
            for op, bits in rules]


def _npu_body(encoder):
    """The exportable encoder's layers as (hidden, additive_mask) -> hidden, NPU-friendly ops."""
    import torch

    class MulLayerNorm(torch.nn.Module):
        def __init__(self, norm):
            super().__init__()
            self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

        def forward(self, x):
            centered = x - x.mean(-1, keepdim=True)
            variance = (centered * centered).mean(-1, keepdim=True)
            return centered * torch.rsqrt(variance + self.eps) * self.weight + self.bias

    class SigmoidGelu(torch.nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(1.5957691216057308 * (x + 0.044715 * x * x * x))

    class Body(torch.nn.Module):
        def __init__(self, layers):
            super().__init__()
            self.layers = layers

        def forward(self, hidden, additive_mask):
            for layer in self.layers:
                hidden = layer(hidden, attention_mask=additive_mask)
            return hidden

    layers = copy.deepcopy(encoder.encoder.layer)
    for layer in layers:
        layer.attention.output.LayerNorm = MulLayerNorm(layer.attention.output.LayerNorm)
        layer.output.LayerNorm = MulLayerNorm(layer.output.LayerNorm)
        layer.intermediate.intermediate_act_fn = SigmoidGelu()
    return Body(layers).eval(), Body(encoder.encoder.layer).eval()


def _prelude_tables(encoder, dtype: str) -> dict[str, np.ndarray]:
    from edgeslim.models import MASK_VALUE

    emb = encoder.embeddings
    as_np = lambda t: t.detach().float().numpy()  # noqa: E731
    return {"word_embeddings": as_np(emb.word_embeddings.weight).astype(dtype),
            "position_embeddings": as_np(emb.position_embeddings.weight).astype(dtype),
            "token_type_embedding": as_np(emb.token_type_embeddings.weight[0]),
            "layer_norm_weight": as_np(emb.LayerNorm.weight), "layer_norm_bias": as_np(emb.LayerNorm.bias),
            "layer_norm_eps": np.float32(emb.LayerNorm.eps), "mask_value": np.float32(MASK_VALUE)}


def quantize_body(artifact: ModelArtifact, cfg, ctx) -> tuple[NpuBodyModel, dict]:
    """PyTorch encoder -> integer body .tflite + CPU prelude tables."""
    import litert_torch
    import torch
    from ai_edge_quantizer import quantizer

    if not isinstance(artifact, TorchModel):
        raise StepError(f"npu_body_quantize builds from a PyTorch model; it got a {artifact.kind} model")
    encoder = artifact.model.exportable().model  # a copy, with the export attention
    body, original = _npu_body(encoder)
    tables = _prelude_tables(encoder, cfg.embeddings_dtype)
    prelude = ctx.workdir / "prelude.npz"
    np.savez(ctx.workdir / "prelude.tmp.npz", **tables)
    os.replace(ctx.workdir / "prelude.tmp.npz", prelude)

    def inputs(texts):
        ids, mask = ctx.tokenize(list(texts), ctx.max_seq_length)
        return embed_tokens(tables, ids, mask), mask

    lengths = sorted({n for n in cfg.seq_lengths if n < ctx.max_seq_length} | {ctx.max_seq_length})
    float_paths = []
    for length in lengths:
        ids, mask = ctx.tokenize(["an example sentence to trace the graph"], length)
        hidden, additive = embed_tokens(tables, ids, mask)
        float_paths.append(ctx.workdir / f"body_float_s{length}.tflite")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            litert_torch.convert(body, (torch.from_numpy(hidden), torch.from_numpy(additive))).export(
                str(float_paths[-1]))

    texts = list(ctx.calibration_texts[: cfg.calibration_samples])
    (hidden, additive), mask = inputs(texts)
    # What the two rewrites cost before any quantization, on calibration sentences.
    with torch.no_grad():
        rewritten = body(torch.from_numpy(hidden), torch.from_numpy(additive)).numpy()
        reference = original(torch.from_numpy(hidden), torch.from_numpy(additive)).numpy()
    from edgeslim.runtime.text import pool

    rewrite_cosine = float((pool(rewritten, mask, "mean", True) * pool(reference, mask, "mean", True)).sum(1).min())

    ctx.log(f"    npu_body_quantize: {cfg.activations} activations, calibrating on {len(texts)} sentences at "
            f"{ctx.max_seq_length} tokens; static lengths {lengths}")
    recipe = _quantizer_recipe(cfg.activations)
    samples = [{"args_0": hidden[i:i + 1], "args_1": additive[i:i + 1]} for i in range(len(texts))]
    # Calibrated once on the longest graph; every length reuses those ranges (same tensor names),
    # so all lengths share weights and quantization parameters.
    stats = quantizer.Quantizer(str(float_paths[-1]), recipe).calibrate({"serving_default": samples})
    paths = []
    for length, float_path in zip(lengths, float_paths):
        paths.append(ctx.workdir / f"body_int_s{length}.tflite")
        quantizer.Quantizer(str(float_path), recipe).quantize(stats).export_model(str(paths[-1]), overwrite=True)
    path = paths[-1]
    record = {"quantizer": "ai-edge-quantizer (post-training, min-max)", "activations": cfg.activations,
              "activation_bits": dict(_PRECISION[cfg.activations]), "weights": "int8 per-channel symmetric",
              "rewrites": ["LayerNorm via MUL (no SQUARED_DIFFERENCE)", "GELU as x*sigmoid(1.5958(x+0.044715x^3))"],
              "rewrite_min_cosine_calibration": round(rewrite_cosine, 6),
              "calibration_sentences": len(texts), "seq_lengths": lengths,
              "input_shapes": [list(hidden.shape[1:]), list(additive.shape[1:])],
              "cpu_prelude": f"embedding lookup + LayerNorm + additive mask (numpy), tables {cfg.embeddings_dtype}",
              "size_mb_body": round(path.stat().st_size / 1e6, 3), "size_mb_prelude": round(prelude.stat().st_size / 1e6, 3)}
    return NpuBodyModel(tuple(paths), prelude, tuple(lengths)), record
