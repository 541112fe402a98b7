"""Where the kit keeps what it can rebuild: distillation checkpoints, teacher embeddings, trimmed
ONNX sources, teachers trained by the benchmark scripts. `EDGESLIM_CACHE`, default
~/.cache/edgeslim."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("EDGESLIM_CACHE", Path.home() / ".cache" / "edgeslim"))
