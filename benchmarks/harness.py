"""Latency and accuracy measurement. numpy only, so it also runs on a device without torch."""

from __future__ import annotations

import platform

import numpy as np

from edgeslim.modalities.scoring import cosine_rows, spearman  # noqa: F401  (re-exported)
from edgeslim.runtime.bench import measure_latency, peak_rss_mb  # noqa: F401  (re-exported: the device's harness)

LATENCY_WHAT = "model forward + pooling on pre-tokenized input (tokenization excluded)"


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
