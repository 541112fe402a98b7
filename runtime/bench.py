"""The latency harness a device runs with the runtime alone (numpy, no torch): `edgeslim bench`
here, and `edgeslim bench --on ssh://...` through the device agent (runtime/device.py).

Same rules as `edgeslim run`: warm-up, then >= `min_runs` runs and >= `min_seconds`, batch /
sequence length / threads pinned (default: the bundle's budget operating point), one input of
exactly `seq_len` real tokens (fixed-size inputs: one preprocessed item of the input shape per
batch row; `--seq-len` does not apply). The result names the bundle (identity: name + manifest
digest) and the machine (CPU, cores, kernel, OS, Python and runtime package versions).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from edgeslim.errors import InputError

__all__ = ["bench_bundle", "device_identity", "measure_latency", "peak_rss_mb"]

# Packages whose versions decide a bundle's speed on a device (absent ones are left out).
RUNTIME_PACKAGES = ("edgeslim", "numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "ai-edge-litert",
                    "tflite-runtime", "tokenizers", "tensorrt")
# CPU flags that decide which int8 / fp16 kernels run (x86 and Arm).
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "avx_vnni", "asimd", "asimddp", "asimdhp",
             "i8mm", "sve", "bf16")


def _cpu_busy_seconds() -> float | None:
    """Busy CPU time of the whole machine so far (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def measure_latency(run: Callable[[], object], warmup: int = 10, min_runs: int = 100,
                    min_seconds: float = 0.0) -> dict:
    """Time `run()`: `warmup` calls, then at least `min_runs` calls and `min_seconds` seconds.

    Also records the background CPU load during the timed part: busy core-seconds of the
    whole machine minus this process's own, per wall second (0 = idle machine; 1 = another
    process kept one core busy). On a shared machine that figure says how far to trust p99.
    """
    for _ in range(warmup):
        run()
    times = []
    busy_start, own_start = _cpu_busy_seconds(), time.process_time()
    wall_start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - wall_start < min_seconds:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - wall_start
    busy_end, own_end = _cpu_busy_seconds(), time.process_time()
    background = None
    if busy_start is not None and busy_end is not None:
        background = max(0.0, ((busy_end - busy_start) - (own_end - own_start)) / wall)
    ms = np.asarray(times) * 1e3
    return {
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "runs": len(times),
        "warmup": warmup,
        "seconds": round(wall, 3),
        "background_cpu_cores": None if background is None else round(background, 3),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process. VmHWM belongs to the address space, so unlike
    getrusage's ru_maxrss (kept across execve on Linux) it does not inherit the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_name() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/device-tree/model").read_text(errors="ignore").splitlines():
            return f"{line.strip(chr(0))} ({platform.machine()})"  # Raspberry Pi, Jetson boards name themselves here
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return name


def bench_bundle(path: Path, threads: int | None = None, batch: int | None = None, seq_len: int | None = None,
                 warmup: int = 10, min_runs: int = 100, min_seconds: float = 0.0,
                 trusted_keys: str | Path | None = None) -> dict:
    """Latency of `path` at its operating point on this machine, the machine's identity and the
    bundle's health check (its reference embeddings, taken on the build host, against this run)."""
    from edgeslim.runtime.encoder import load
    from edgeslim.runtime.bundle import read_manifest
    from edgeslim.runtime.health import check_health

    for flag, value, low in (("--threads", threads, 1), ("--batch", batch, 1), ("--seq-len", seq_len, 1),
                             ("--warmup", warmup, 0), ("--runs", min_runs, 1)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            raise InputError(f"{flag} must be an integer >= {low}, got {value!r}")
    if not isinstance(min_seconds, (int, float)) or not 0 <= min_seconds <= 3600:
        raise InputError(f"--seconds must be a number from 0 to 3600, got {min_seconds!r}")
    budget = read_manifest(Path(path)).budget or {}
    # The operating point is pinned before loading, so the backend runs the thread count reported.
    threads = threads or budget.get("threads") or 1
    encoder = load(path, threads=threads, trusted_keys=trusted_keys)
    batch = batch or budget.get("batch") or 1
    # The operating point as the bundle's modality defines it (text: a row of seq_len real
    # tokens; fixed-size inputs: --seq-len is refused, values do not change the work done).
    variable = encoder.modality_plugin.variable_length
    feeds = encoder.modality_plugin.bench_feeds(encoder, batch, seq_len or (budget.get("seq_len") if variable else None))
    run = lambda: encoder.embed_inputs(feeds)  # noqa: E731
    seq_len = next(iter(feeds.values())).shape[1] if variable else None
    latency = measure_latency(run, warmup, min_runs, min_seconds)
    device = device_identity()
    health = check_health(encoder)
    return {
        "bundle": encoder.manifest.name, "bundle_id": encoder.identity, "signed_by": encoder.signed_by,
        "target": encoder.manifest.target, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "latency_ms": {**latency, "batch": batch, "seq_len": seq_len, "threads": threads, "kind": "measured",
                       "where": f"measured on {machine_name()}, edgeslim bench"},
        "operating_point": encoder.modality_plugin.operating_point(seq_len),
        "providers": encoder.providers, "peak_rss_mb": round(peak_rss_mb(), 1), "device": device,
        "health": health,
    }


def _cpuinfo_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="ignore").splitlines():
            if line.startswith(("flags", "Features")):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in ISA_FLAGS if flag in present]
    except OSError:
        pass
    return []


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def device_identity() -> dict:
    """What the figures were measured on: enough to tell two devices (and two setups) apart."""
    packages = {}
    for name in RUNTIME_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"machine": machine_name(), "arch": platform.machine(), "cores": os.cpu_count(),
            "isa_features": _cpuinfo_flags(), "kernel": f"{platform.system()} {platform.release()}",
            "os": _os_name(), "hostname": platform.node(), "python": platform.python_version(), "executable": sys.executable,
            "packages": packages}
