"""x86-64 CPU: the host itself. Bundles run on ONNX Runtime or OpenVINO; latency is measured."""

from __future__ import annotations

from dataclasses import replace

from edgeslim.compress.artifacts import OpenVinoModel
from edgeslim.runtime.backend_registry import PADDING_EXACT_PRECISIONS
from edgeslim.targets.base import Budget, BundleFiles, DeviceProfile, ExportContext, Target
from edgeslim.targets.host import int8_dot_product, read_host_profile

# Sequence lengths an OpenVINO text bundle is compiled for (plus the model's own maximum). Real
# sentences are short; a dynamic-shape IR re-planned per new length costs more than padding:
# MiniLM int8 (f32 float parts), STS-B test lengths, batch 1, 1 thread, AMX Xeon: p50 1.74 -> 1.23
# ms, p95 2.05 -> 1.36 ms (the run's own real-length measure of the 3-layer student: p95 7.40 ->
# 0.88-1.00 ms), for more memory: each compiled model holds its weights (peak RSS 248 -> 431 MB).
# Only where padding is exact (f32 float parts; the runtime refuses buckets with bf16).
SEQUENCE_BUCKETS = (16, 32, 64, 128)


def sequence_buckets(max_seq_length: int) -> list[int]:
    return [b for b in SEQUENCE_BUCKETS if b < max_seq_length] + [max_seq_length]


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
    # The host is whatever CPU runs the kit, so its latency limit is a ratio measured in the same
    # run (batch 1, 128 tokens, 1 thread), not milliseconds only one CPU meets; a recipe can still
    # set p95_ms for a known machine.
    default_budget = Budget(
        min_speedup=1.5,
        max_size_mb=40.0,
        max_peak_rss_mb=600.0,
        min_teacher_cosine=0.99,
        min_stsb_spearman=81.0,
    )

    # Backends whose int8 kernels are no faster than float without an int8 dot product, as measured.
    int8_needs_dot_product = {
        "openvino": (
            "no int8 dot product on this host (VNNI, AVX-VNNI or AMX): OpenVINO 2026.4 runs int8 FullyConnected "
            "with oneDNN's jit_gemm kernel, not brgemm (MiniLM, 1 thread, 128 tokens, ONEDNN_MAX_CPU_ISA=AVX2 on a "
            "Xeon: int8 42-45 ms vs fp32 30 ms, FullyConnected 38.1 of 43.9 ms; NNCF presets, SmoothQuant and "
            "target device change nothing; an AMD EPYC Zen 3 measured 1.03x PyTorch fp32); ONNX Runtime's int8 "
            "kernels do not depend on it"),
    }

    def profile(self) -> DeviceProfile:
        return read_host_profile()

    def export(self, artifact, backend: str, ctx: ExportContext) -> BundleFiles:
        files = super().export(artifact, backend, ctx)
        if (isinstance(artifact, OpenVinoModel) and artifact.static_shapes is None and ctx.max_seq_length
                and (artifact.inference_precision or "f32") in PADDING_EXACT_PRECISIONS):  # None: the f32 hint
            buckets = sequence_buckets(ctx.max_seq_length)
            files = replace(files, backend_options={**files.backend_options, "sequence_buckets": buckets})
        return files

    def waiver(self, backend: str, int8: bool) -> str | None:
        reason = self.int8_needs_dot_product.get(backend)
        return reason if int8 and reason and not int8_dot_product(self.profile()) else None


TARGET = X86Cpu()
