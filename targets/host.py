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
