"""Arm Cortex-A boards (Raspberry Pi 4 and 5): LiteRT .tflite or ONNX for onnxruntime on aarch64.

Latency is estimated from the board's datasheet profile (targets/roofline.py): this machine is
x86. `edgeslim verify BUNDLE --arch aarch64` is where the bundle runs on an aarch64 userland.
"""

from __future__ import annotations

from edgeslim.targets.base import Budget, DeviceProfile, Target

_GHZ = 1e9


class CortexABoard(Target):
    accepts = {"litert": ("litert", "litert-int8"), "onnxruntime": ("onnx",)}
    backend_options = {
        "litert": {"input_order": ["input_ids", "attention_mask"]},
        "onnxruntime": {"providers": ["CPUExecutionProvider"]},
    }

    def __init__(self, name: str, description: str, profile: DeviceProfile, default_variant: str, budget: Budget,
                 qemu_cpu: str):
        self.name, self.description = name, description
        self._profile = profile
        self.default_variant = default_variant
        self.default_budget = budget
        self.qemu_cpu = qemu_cpu

    def profile(self) -> DeviceProfile:
        return self._profile


# Peak MAC/s: NEON is 128 bits, two pipes. fp32: 2 x 4 lanes per cycle. int8: with sdot (A76)
# 2 x 16 per cycle; without it (A72) widening multiply-accumulates give about 2 x 8.
RPI5 = CortexABoard(
    "rpi5", "Raspberry Pi 5 (BCM2712, 4x Cortex-A76 @ 2.4 GHz, sdot): LiteRT or onnxruntime, latency estimated",
    DeviceProfile(name="Raspberry Pi 5 (Cortex-A76)", cores=4, clock_ghz=2.4,
                  isa_features=("neon", "asimddp (sdot)", "fp16"),
                  peak_fp32_macs_per_s=4 * 2.4 * _GHZ * 8, peak_int8_macs_per_s=4 * 2.4 * _GHZ * 32,
                  memory_bandwidth_gbs=17.1, ram_mb=8192, source="datasheet",
                  notes="LPDDR4X-4267, 32-bit bus; int8 kernels use sdot, so int8 pays (default: int8)"),
    default_variant="litert-int8-dynamic", qemu_cpu="cortex-a76",
    budget=Budget(p95_ms=60.0, max_size_mb=40.0, max_peak_rss_mb=600.0, min_teacher_cosine=0.99,
                  min_stsb_spearman=81.0),
)
RPI4 = CortexABoard(
    "rpi4", "Raspberry Pi 4 (BCM2711, 4x Cortex-A72 @ 1.8 GHz, no sdot): LiteRT or onnxruntime, latency estimated",
    DeviceProfile(name="Raspberry Pi 4 (Cortex-A72)", cores=4, clock_ghz=1.8, isa_features=("neon",),
                  peak_fp32_macs_per_s=4 * 1.8 * _GHZ * 8, peak_int8_macs_per_s=4 * 1.8 * _GHZ * 16,
                  memory_bandwidth_gbs=12.8, ram_mb=4096, source="datasheet",
                  notes="LPDDR4-3200, 32-bit bus; no dot-product instructions, so int8 gains little "
                        "over fp32 in compute (2x peak at best, less in practice); the default stays int8 "
                        "for its 4x smaller file, which is what fits the size budget"),
    default_variant="litert-int8-dynamic", qemu_cpu="cortex-a72",
    budget=Budget(p95_ms=150.0, max_size_mb=40.0, max_peak_rss_mb=600.0, min_teacher_cosine=0.99,
                  min_stsb_spearman=81.0),
)
