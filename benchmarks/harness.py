"""Latency and accuracy measurement. numpy only, so it also runs on a device without torch."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np

from edgeslim.modalities.scoring import cosine_rows, spearman  # noqa: F401  (re-exported)

LATENCY_WHAT = "model forward + pooling on pre-tokenized input (tokenization excluded)"


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


def where_measured() -> str:
    from edgeslim.targets.host import read_host_profile

    profile = read_host_profile()
    return f"this host: {profile.name}, {profile.cores} cores, {platform.machine()}"


def teacher_agreement(teacher: np.ndarray, student: np.ndarray) -> tuple[float, float]:
    cos = cosine_rows(teacher, student)
    return float(cos.mean()), float(cos.min())


def knn_top1(train: np.ndarray, train_labels, test: np.ndarray, test_labels, k: int = 20) -> float:
    """Top-1 accuracy of a k-nearest-neighbour vote (cosine similarity, each neighbour's vote
    weighted by its similarity), the memory bank being the train embeddings."""
    classes = sorted(set(train_labels))
    index = {c: i for i, c in enumerate(classes)}
    train_y = np.asarray([index[c] for c in train_labels])
    a = train / np.clip(np.linalg.norm(train, axis=1, keepdims=True), 1e-12, None)
    b = test / np.clip(np.linalg.norm(test, axis=1, keepdims=True), 1e-12, None)
    k = min(k, len(train_y))
    correct = 0
    for start in range(0, len(b), 512):
        sims = b[start : start + 512] @ a.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        votes = np.zeros((len(top), len(classes)))
        for row, (neighbours, sim_row) in enumerate(zip(top, sims)):
            np.add.at(votes[row], train_y[neighbours], sim_row[neighbours])
        predicted = votes.argmax(1)
        correct += sum(classes[p] == label for p, label in zip(predicted, test_labels[start : start + 512]))
    return correct / len(b)


def linear_probe(train: np.ndarray, train_labels, test: np.ndarray, test_labels, ridge: float = 1e-2) -> float:
    """Top-1 accuracy of a linear classifier fitted in closed form: ridge regression of one-hot
    labels on the (standardised) embeddings, lambda = ridge x n. Deterministic, no training loop."""
    classes = sorted(set(train_labels))
    index = {c: i for i, c in enumerate(classes)}
    mean, std = train.mean(0), train.std(0) + 1e-6
    x = np.hstack([(train - mean) / std, np.ones((len(train), 1))]).astype(np.float64)
    y = np.zeros((len(train), len(classes)))
    y[np.arange(len(train)), [index[c] for c in train_labels]] = 1.0
    weights = np.linalg.solve(x.T @ x + ridge * len(train) * np.eye(x.shape[1]), x.T @ y)
    scores = np.hstack([(test - mean) / std, np.ones((len(test), 1))]) @ weights
    return float(np.mean([classes[i] == label for i, label in zip(scores.argmax(1), test_labels)]))
