"""x86-64 CPU: the host itself. Bundles run on ONNX Runtime or OpenVINO; latency is measured."""

from __future__ import annotations

from edgeslim.targets.host import read_host_profile
from edgeslim.targets.base import Budget, DeviceProfile, Target


class X86Cpu(Target):
    name = "x86-cpu"
    description = "x86-64 CPU (the host): ONNX Runtime, OpenVINO or a static table, latency measured here"
    accepts = {"onnxruntime": ("onnx",), "openvino": ("openvino",), "static": ("static",)}
    latency_kind = "measured"
    default_variant = "ort-int8-dynamic"
    backend_options = {
        # ORT 1.32's fused SkipLayerNormalization kernel is slower than Add + LayerNormalization
        # on the AVX-512 Xeon this was measured on (MiniLM int8 dynamic, 1 thread: 12.0 -> 10.2 ms).
        "onnxruntime": {"providers": ["CPUExecutionProvider"], "disabled_optimizers": ["SkipLayerNormFusion"]},
        # Without the hint OpenVINO runs bf16 on CPUs that have it; bundles are measured in f32.
        "openvino": {"device": "CPU", "config": {"INFERENCE_PRECISION_HINT": "f32"}},
        "static": {},
    }
    default_budget = Budget(
        p95_ms=20.0,  # batch 1, 128 tokens, 1 thread
        max_size_mb=40.0,
        max_peak_rss_mb=600.0,
        min_teacher_cosine=0.99,
        min_stsb_spearman=81.0,
    )

    def profile(self) -> DeviceProfile:
        return read_host_profile()


TARGET = X86Cpu()
