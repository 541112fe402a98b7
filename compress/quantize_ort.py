"""int8 with ONNX Runtime: dynamic quantization, and static QDQ with a sensitivity search."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType
from onnxruntime.quantization import quantize_dynamic, quantize_static

from edgeslim.compress.artifacts import OnnxModel
from edgeslim.compress.configs import Int8DynamicConfig, Int8StaticConfig
from edgeslim.compress.context import StepContext
from edgeslim.errors import StepError

_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}


def _require_onnx(artifact, step: str) -> Path:
    if not isinstance(artifact, OnnxModel):
        raise StepError(f"{step} quantizes ONNX models; it got a {artifact.kind} model. Put it before any OpenVINO step")
    return artifact.path


def _size_mb(path: Path) -> float:
    return os.path.getsize(path) / 1e6


def int8_dynamic(artifact, cfg: Int8DynamicConfig, ctx: StepContext):
    source = _require_onnx(artifact, cfg.step)
    target = ctx.workdir / "model.int8-dynamic.onnx"
    quantize_dynamic(
        source, target, per_channel=cfg.per_channel, weight_type=QuantType.QInt8,
        op_types_to_quantize=list(cfg.op_types),
    )
    return OnnxModel(target), {
        "size_mb_before": round(_size_mb(source), 3),
        "size_mb_after": round(_size_mb(target), 3),
        "quantized_nodes": _count_ops(target, ("MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear",
                                               "DequantizeLinear")),
    }


class _TextReader(CalibrationDataReader):
    def __init__(self, ctx: StepContext, texts, pad_to: int | None):
        # One sentence per batch at its own length, unless a method needs equal shapes.
        self._feeds = []
        batch = 8 if pad_to else 1
        for start in range(0, len(texts), batch):
            self._feeds.append(ctx.feeds(texts[start : start + batch], pad_to))
        self._iter = iter(self._feeds)

    def get_next(self):
        return next(self._iter, None)

    def __len__(self):
        return len(self._feeds)


def _embed(path: Path, batches, ctx: StepContext) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = [ctx.pooled(session.run(None, feeds)[0], feeds) for feeds in batches]
    return np.concatenate(out)


def _count_ops(path: Path, op_types) -> dict:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type in op_types:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def int8_static(artifact, cfg: Int8StaticConfig, ctx: StepContext):
    """U8S8 QDQ (uint8 activations, per-channel int8 weights) on `op_types` (MatMul and Gather;
    for a CNN: Conv, Gemm, Add...).

    Sensitivity search, all measured: if quantizing every MatMul misses `cosine_floor`
    (mean cosine to the float model on held-back calibration sentences), each MatMul is
    quantized alone to score the damage it does; then the fewest most-damaging MatMuls are
    kept in float (binary search over that ranking) so the floor is met.
    """
    source = _require_onnx(artifact, cfg.step)
    needed = cfg.calibration_samples + cfg.sensitivity_samples
    if len(ctx.calibration_texts) < needed:
        raise StepError(
            f"int8_static needs {needed} calibration sentences (calibration_samples + sensitivity_samples), "
            f"the calibration corpus has {len(ctx.calibration_texts)}"
        )
    calibration = list(ctx.calibration_texts[: cfg.calibration_samples])
    held_back = list(ctx.calibration_texts[cfg.calibration_samples : needed])
    pad_to = ctx.max_seq_length if cfg.calibration_method != "minmax" else None
    batches = []
    for start in range(0, len(held_back), 16):
        batches.append(ctx.feeds(held_back[start : start + 16]))
    reference = _embed(source, batches, ctx)

    graph = onnx.load(str(source), load_external_data=False).graph
    # The sensitivity search ranks the weight-carrying nodes (MatMul; Conv/Gemm in a CNN).
    weighted = {"MatMul"} | ({"Conv", "Gemm"} & set(cfg.op_types))
    matmuls = [node.name for node in graph.node if node.op_type in weighted]
    others = [node.name for node in graph.node if node.op_type in cfg.op_types and node.op_type not in weighted]
    cache = ctx.workdir / "calibration-ranges.json"
    cache.unlink(missing_ok=True)
    candidate = ctx.workdir / "model.int8-static.candidate.onnx"
    runs = {"count": 0}

    def quantized_cosine(nodes: list[str]) -> float:
        quantize_static(
            source, candidate,
            calibration_data_reader=None if cache.exists() else _TextReader(ctx, calibration, pad_to),
            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(cfg.op_types), per_channel=True,
            activation_type=QuantType.QInt8 if cfg.activation_type == "int8" else QuantType.QUInt8,
            weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
            calibrate_method=_METHODS[cfg.calibration_method], calibration_cache_path=cache,
            extra_options={"ActivationSymmetric": cfg.symmetric_activations, "WeightSymmetric": True},
        )
        runs["count"] += 1
        return float((_embed(candidate, batches, ctx) * reference).sum(1).mean())

    logging.getLogger().setLevel(logging.ERROR)  # ORT's pre-processing advice on every call
    full = quantized_cosine(matmuls + others)
    ctx.log(f"    int8_static: all {len(matmuls)} {'/'.join(sorted(weighted))} nodes quantized -> cosine {full:.4f} "
            f"(floor {cfg.cosine_floor})")
    kept_float: list[str] = []
    damage: dict[str, float] = {}
    cosine = full
    if full < cfg.cosine_floor:
        for name in matmuls:
            damage[name] = 1.0 - quantized_cosine([name] + others)
        ranking = sorted(matmuls, key=damage.get, reverse=True)
        # Smallest k whose top-k exclusion meets the floor; k = len(ranking) is plain float.
        low, high, best = 1, len(ranking), None
        while low <= high:
            k = (low + high) // 2
            score = quantized_cosine([m for m in matmuls if m not in ranking[:k]] + others)
            if score >= cfg.cosine_floor:
                best, high = (k, score), k - 1
            else:
                low = k + 1
        if best is None:
            raise StepError(f"int8_static cannot reach cosine {cfg.cosine_floor} even with every MatMul in float")
        kept_float = ranking[: best[0]]
        cosine = quantized_cosine([m for m in matmuls if m not in kept_float] + others)
        ctx.log(f"    int8_static: kept {len(kept_float)} of {len(matmuls)} weighted nodes in float -> cosine {cosine:.4f}")
    target = ctx.workdir / "model.int8-static.onnx"
    os.replace(candidate, target)
    return OnnxModel(target), {
        "activations": f"{cfg.activation_type} ({'symmetric' if cfg.symmetric_activations else 'asymmetric'})",
        "weights": "int8 per-channel (symmetric)", "format": "QDQ",
        "calibration_sentences": len(calibration),
        "sensitivity_sentences": len(held_back),
        "matmuls": len(matmuls),
        "cosine_all_quantized": round(full, 5),
        "matmuls_kept_float": kept_float,
        "cosine_to_float_model": round(cosine, 5),
        "most_sensitive": [{"node": n, "cosine_drop": round(damage[n], 5)}
                           for n in sorted(damage, key=damage.get, reverse=True)[:8]],
        "quantize_runs": runs["count"],
        "size_mb_before": round(_size_mb(source), 3),
        "size_mb_after": round(_size_mb(target), 3),
    }
