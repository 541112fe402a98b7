"""Model surgery: distillation, structured and vocabulary pruning, static embeddings (PyTorch
side, run by the pipeline before export), ONNX export, and int8 quantization (export side).

Each technique is a frozen config (`configs.py`, registry `STEPS`) plus one function that
applies it, named by the config's `handler` and imported only when the step runs (torch, onnx
and openvino are heavy). Every handler has the signature (artifact, cfg, ctx) -> (artifact, record).

    artifact, record = apply_step(OnnxModel(path), Int8DynamicConfig(), ctx)
"""

from __future__ import annotations

from importlib import import_module

from edgeslim.compress.artifacts import (ARTIFACT_KINDS, Artifact, LiteRtInt8Model, LiteRtModel, ModelArtifact, NpuBodyModel, OnnxModel,
                                        OpenVinoModel, StaticTable, TorchModel)
from edgeslim.compress.configs import (
    STEPS,
    DistillConfig,
    ExportOnnxConfig,
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
    "ARTIFACT_KINDS",
    "STEPS",
    "Artifact",
    "DistillConfig",
    "ExportOnnxConfig",
    "Int8DynamicConfig",
    "Int8StaticConfig",
    "LiteRtConvertConfig",
    "LiteRtInt8DynamicConfig",
    "LiteRtInt8Model",
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
    "StaticTable",
    "StepConfig",
    "StepContext",
    "TorchModel",
    "VocabPruneConfig",
    "apply_step",
]

def apply_step(artifact: Artifact, cfg, ctx: StepContext) -> tuple[Artifact, dict]:
    require((cfg.extra,), f"step {cfg.step!r}")
    module_name, function_name = cfg.handler.split(":")
    handler = getattr(import_module(module_name), function_name)
    result, record = handler(artifact, cfg, ctx)
    return result, {"step": cfg.step, "config": cfg.model_dump(mode="json"), **record}
