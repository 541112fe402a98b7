"""Latency estimates for devices this machine is not: a roofline of the model's MAC count (its
family counts them: `ModelFamily.macs`) and the bytes it must read, against a device profile's
peak MAC/s and memory bandwidth.

    estimate = max(MACs / (peak MAC/s per core x threads), weight bytes / bandwidth)

No kernel efficiency factor is applied, so it is an optimistic bound: real kernels reach a
fraction of peak. `tests/test_roofline.py` checks the model against a measurement on the host
(same formula with the host's own profile) and states the factor it allows.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeslim.targets.base import DeviceProfile, round_ms

@dataclass(frozen=True)
class Estimate:
    ms: float
    macs: float
    weight_bytes: int
    bound: str  # "compute" or "memory"
    precision: str  # "int8" or "fp32"
    model: str  # how the figure was computed, for the report

    def where(self, profile: DeviceProfile, threads: int) -> str:
        return (f"estimated: roofline on {profile.name} ({threads} thread(s)), {self.macs / 1e9:.2f} GMAC, "
                f"{self.weight_bytes / 1e6:.1f} MB weights, {self.precision} peak, {self.bound}-bound, "
                "no kernel-efficiency factor")


def estimate_latency(profile: DeviceProfile, macs: float, weight_bytes: int, int8: bool, threads: int) -> Estimate:
    threads = max(1, min(threads, profile.cores))
    # Devices that run float in fp16 (NPUs, GPUs) use their fp16 peak for float models.
    float_peak, float_name = ((profile.peak_fp16_macs_per_s, "fp16") if profile.peak_fp16_macs_per_s
                              else (profile.peak_fp32_macs_per_s, "fp32"))
    peak = (profile.peak_int8_macs_per_s if int8 else float_peak) / profile.cores * threads
    compute_s = macs / peak
    memory_s = weight_bytes / (profile.memory_bandwidth_gbs * 1e9) if profile.memory_bandwidth_gbs else 0.0
    bound = "compute" if compute_s >= memory_s else "memory"
    return Estimate(ms=round_ms(1000 * max(compute_s, memory_s)), macs=macs, weight_bytes=weight_bytes, bound=bound,
                    precision="int8" if int8 else float_name,
                    model="max(MACs / (peak MAC/s per core x threads), weight bytes / memory bandwidth)")
