"""`edgeslim bench BUNDLE`: the latency harness on whatever machine the bundle sits on, with the
runtime only (no torch): what a Raspberry Pi or Jetson runs to replace an estimate with a
measurement. Same rules as `edgeslim run`: warm-up, then >= `min_runs` runs and >= `min_seconds`,
batch / sequence length / threads pinned (default: the bundle's budget operating point), one
input of exactly `seq_len` real tokens (an image bundle: one preprocessed image of its input
shape per batch row; `--seq-len` does not apply).
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path

import numpy as np

from edgeslim.benchmarks.harness import measure_latency, peak_rss_mb
from edgeslim.errors import InputError
from edgeslim.outputs import write_atomic

def _machine() -> str:
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
                 warmup: int = 10, min_runs: int = 100, min_seconds: float = 0.0) -> dict:
    from edgeslim.runtime import load, read_manifest

    for flag, value, low in (("--threads", threads, 1), ("--batch", batch, 1), ("--seq-len", seq_len, 1),
                             ("--warmup", warmup, 0), ("--runs", min_runs, 1)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            raise InputError(f"{flag} must be an integer >= {low}, got {value!r}")
    if not isinstance(min_seconds, (int, float)) or not 0 <= min_seconds <= 3600:
        raise InputError(f"--seconds must be a number from 0 to 3600, got {min_seconds!r}")
    budget = read_manifest(Path(path)).budget or {}
    # The operating point is pinned before loading, so the backend runs the thread count reported.
    threads = threads or budget.get("threads") or 1
    encoder = load(path, threads=threads)
    batch = batch or budget.get("batch") or 1
    # The operating point as the bundle's modality defines it (text: a row of seq_len real
    # tokens; fixed-size inputs: --seq-len is refused, values do not change the work done).
    variable = encoder.modality_plugin.variable_length
    feeds = encoder.modality_plugin.bench_feeds(encoder, batch, seq_len or (budget.get("seq_len") if variable else None))
    run = lambda: encoder.embed_inputs(feeds)  # noqa: E731
    seq_len = next(iter(feeds.values())).shape[1] if variable else None
    latency = measure_latency(run, warmup, min_runs, min_seconds)
    return {
        "bundle": encoder.manifest.name, "bundle_id": encoder.identity, "signed_by": encoder.signed_by,
        "target": encoder.manifest.target, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "latency_ms": {**latency, "batch": batch, "seq_len": seq_len, "threads": threads, "kind": "measured",
                       "where": f"measured on {_machine()}, edgeslim bench"},
        "operating_point": encoder.modality_plugin.operating_point(seq_len),
        "providers": encoder.providers, "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def write_json(result: dict, out: Path, force: bool = False) -> None:
    write_atomic(Path(out), json.dumps(result, indent=2), force=force)
