"""Model surgery: distillation, structured and vocabulary pruning, static embeddings (PyTorch
side, run by the pipeline before export), ONNX export, and int8 quantization (export side).

Each technique is a frozen config (`configs.py`) plus one function that applies it. Export-side
functions are found through `_HANDLERS`, imported only when a step runs (torch, onnx and
openvino are heavy); the PyTorch-side ones are `distill.distill`, `prune.prune_model`,
`vocab.prune_vocabulary` and `static.make_static`.

    artifact, record = apply_step(OnnxModel(path), Int8DynamicConfig(), ctx)
"""

from __future__ import annotations

from importlib import import_module

from edgeslim.compress.artifacts import LiteRtModel, ModelArtifact, NpuBodyModel, OnnxModel, OpenVinoModel
from edgeslim.compress.configs import (
    DistillConfig,
    Int8DynamicConfig,
    Int8StaticConfig,
    LiteRtConvertConfig,
    LiteRtInt8DynamicConfig,
    NpuBodyQuantizeConfig,
    OnnxFp16Config,
    OpenVinoConvertConfig,
    OpenVinoInt8Config,
    OpenVinoStaticShapesConfig,
    PruneConfig,
    StaticEmbeddingConfig,
    StepConfig,
    VocabPruneConfig,
)
from edgeslim.compress.context import StepContext
from edgeslim.extras import require

__all__ = [
    "DistillConfig",
    "Int8DynamicConfig",
    "Int8StaticConfig",
    "LiteRtConvertConfig",
    "LiteRtInt8DynamicConfig",
    "LiteRtModel",
    "ModelArtifact",
    "NpuBodyModel",
    "NpuBodyQuantizeConfig",
    "OnnxFp16Config",
    "OnnxModel",
    "OpenVinoConvertConfig",
    "OpenVinoInt8Config",
    "OpenVinoModel",
    "OpenVinoStaticShapesConfig",
    "PruneConfig",
    "StaticEmbeddingConfig",
    "StepConfig",
    "StepContext",
    "VocabPruneConfig",
    "apply_step",
]

# config type -> "module:function"; every function has the signature (artifact, cfg, ctx) ->
# (artifact, record) where record is a JSON-able dict for the bundle manifest.
_HANDLERS = {
    Int8DynamicConfig: "edgeslim.compress.quantize_ort:int8_dynamic",
    Int8StaticConfig: "edgeslim.compress.quantize_ort:int8_static",
    OpenVinoInt8Config: "edgeslim.compress.openvino:int8",
    OpenVinoConvertConfig: "edgeslim.compress.openvino:convert",
    OpenVinoStaticShapesConfig: "edgeslim.compress.openvino:static_shapes",
    LiteRtConvertConfig: "edgeslim.compress.litert:convert",
    LiteRtInt8DynamicConfig: "edgeslim.compress.litert:dynamic_int8",
    NpuBodyQuantizeConfig: "edgeslim.compress.npu_body:quantize_body",
    OnnxFp16Config: "edgeslim.compress.onnx_fp16:fp16",
}


def apply_step(artifact: ModelArtifact, cfg, ctx: StepContext) -> tuple[ModelArtifact, dict]:
    require((cfg.extra,), f"step {cfg.step!r}")
    module_name, function_name = _HANDLERS[type(cfg)].split(":")
    handler = getattr(import_module(module_name), function_name)
    result, record = handler(artifact, cfg, ctx)
    return result, {"step": cfg.step, "config": cfg.model_dump(mode="json"), **record}
