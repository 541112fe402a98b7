"""What the benchmark's SSL teacher scripts share: the contrastive loss, the kNN / linear-probe
figures, atomic checkpoints and the run key that names them."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

# Arguments that do not change what a run computes (so a resumed run may differ in them).
NOT_IN_RUN_KEY = ("out", "threads", "checkpoint_every", "eval_every", "no_progress", "stop_after")


def nt_xent(z1, z2, temperature: float):
    """SimCLR's normalised-temperature cross entropy over the 2b views of a batch."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    n = z1.shape[0]
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def probe(train_x, train_y, test_x, test_y) -> dict:
    """kNN top-1 (k=20, cosine) and linear-probe top-1, x100."""
    from edgeslim.benchmarks.harness import knn_top1, linear_probe

    return {"knn_top1": round(100 * knn_top1(train_x, train_y, test_x, np.asarray(test_y), 20), 2),
            "linear_probe_top1": round(100 * linear_probe(train_x, train_y, test_x, test_y), 2)}


def atomic_torch_save(state, path: Path) -> None:
    """A kill mid-write leaves the previous checkpoint intact."""
    import torch

    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def run_key(args) -> str:
    keep = {k: v for k, v in vars(args).items() if k not in NOT_IN_RUN_KEY}
    return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]
