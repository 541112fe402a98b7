"""`edgeslim bench BUNDLE [--on ssh://...]`: the device's latency harness (runtime/bench.py),
here or on a device, and the JSON it writes."""

from __future__ import annotations

import json
from pathlib import Path

from edgeslim.outputs import write_atomic
from edgeslim.runtime.bench import bench_bundle, device_identity  # noqa: F401  (re-exported)


def write_json(result: dict, out: Path, force: bool = False) -> None:
    write_atomic(Path(out), json.dumps(result, indent=2), force=force)
