"""ONNX float32 -> float16 (onnxruntime's converter), inputs and outputs unchanged."""

from __future__ import annotations

import os

from edgeslim.compress.artifacts import ModelArtifact, OnnxModel
from edgeslim.errors import StepError


def fp16(artifact: ModelArtifact, cfg, ctx) -> tuple[OnnxModel, dict]:
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    if not isinstance(artifact, OnnxModel):
        raise StepError(f"onnx_fp16 converts an ONNX model, it got {artifact.kind}")
    block = list(cfg.op_block_list) if cfg.op_block_list is not None else list(DEFAULT_OP_BLOCK_LIST)
    model = convert_float_to_float16(onnx.load(str(artifact.path)), keep_io_types=True, op_block_list=block)
    path = ctx.workdir / "model.fp16.onnx"
    tmp = path.with_name("model.fp16.tmp.onnx")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return OnnxModel(path), {"converter": "onnxruntime.transformers.float16", "keep_io_types": True,
                             "ops_kept_float32": sorted(set(block)),
                             "size_mb_before": round(artifact.path.stat().st_size / 1e6, 3),
                             "size_mb_after": round(path.stat().st_size / 1e6, 3)}
