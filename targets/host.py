"""The machine measurements run on, as a device profile: its CPU model, cores, ISA features and
peak MAC/s, read from /proc. The x86-cpu target's profile, and the `where` of every figure the
harness measures (benchmarks import it from here, never the other way round)."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

from edgeslim.targets.base import DeviceProfile

# ISA flags that decide which int8/bf16 kernels the backends pick.
_INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")
# The int8 dot-product instructions (u8 x s8 -> s32 in one step). Without one, oneDNN (OpenVINO's
# CPU kernels) has no brgemm int8 path and falls back to its older gemm (see X86Cpu).
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# ONEDNN_MAX_CPU_ISA values under which oneDNN uses no int8 dot product, whatever the CPU has
# (oneDNN's documented ISA names; the cap lets one machine reproduce an older one's kernels).
_ONEDNN_CAPS_WITHOUT_DOT_PRODUCT = ("SSE41", "AVX", "AVX2", "AVX512_CORE")


def onednn_isa_cap() -> str | None:
    """The oneDNN ISA cap of this process (ONEDNN_MAX_CPU_ISA, or DNNL_MAX_CPU_ISA), upper case."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return cap.strip().upper() if cap else None


def isa_summary() -> dict:
    """What a report states about the host's int8 kernels (read now, not cached: the cap is per process)."""
    return {"onednn_isa_cap": onednn_isa_cap(), "int8_dot_product": int8_dot_product()}


def int8_dot_product(profile: DeviceProfile | None = None) -> bool:
    """Whether oneDNN-based kernels (OpenVINO's CPU plugin) can use an int8 dot product here: the
    CPU has VNNI, AVX-VNNI or AMX, and no ONEDNN_MAX_CPU_ISA cap hides it."""
    profile = profile or read_host_profile()
    if onednn_isa_cap() in _ONEDNN_CAPS_WITHOUT_DOT_PRODUCT:
        return False
    return any(flag in profile.isa_features for flag in INT8_DOT_PRODUCT_FLAGS)


@lru_cache(maxsize=1)
def read_host_profile() -> DeviceProfile:
    flags: set[str] = set()
    model_name, mhz = platform.processor() or "x86-64", 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "flags" and not flags:
                flags = set(value.split())
            elif key == "model name":
                model_name = value.strip()
            elif key == "cpu MHz" and not mhz:
                mhz = float(value)
    except OSError:
        pass
    ram_mb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_mb = int(line.split()[1]) // 1024
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    clock_ghz = mhz / 1000 if mhz else 2.0
    # Peak MAC/s from the vector width: two FMA pipes; VNNI does 4 int8 MACs per 32-bit lane.
    fp32_lanes = 16 if "avx512f" in flags else 8
    int8_per_lane = 4 if ("avx512_vnni" in flags or "avx_vnni" in flags) else 2
    peak_fp32 = cores * clock_ghz * 1e9 * 2 * fp32_lanes
    return DeviceProfile(
        name=model_name,
        cores=cores,
        clock_ghz=round(clock_ghz, 3),
        isa_features=tuple(f for f in _INTERESTING_FLAGS if f in flags),
        peak_fp32_macs_per_s=peak_fp32,
        peak_int8_macs_per_s=peak_fp32 * int8_per_lane,
        memory_bandwidth_gbs=None,  # not readable from the host without a measurement
        ram_mb=ram_mb,
        source="host",
        notes="peak MAC/s estimated from ISA width x clock x cores (two FMA pipes)",
    )
