"""Drift: is what a device encodes still like the data the bundle was checked on?

At build time the kit embeds held-out in-domain items with the bundle itself (the run's
teacher-agreement set, which calibration never saw) and stores in the manifest's `drift`:
the mean unit vector, the per-dimension variance, the distribution of each item's cosine to
the mean and of the embedding norms before normalisation (as equal-mass bin edges), and
thresholds calibrated on a second, disjoint part of that set.

A window of n items (a file, or what an Encoder saw since `track_drift()`) is scored on three
statistics, each against its calibrated threshold:

- mean_shift: n * |mean(u) - mu|^2 / sum(var): how far the window's mean direction moved, in
  units of its own sampling noise (about 1 for an in-domain window);
- cosine_ks: the largest gap between the window's and the reference's distributions of
  cosine to mu (binned Kolmogorov-Smirnov), scaled by sqrt(n N / (n + N));
- norm_ks: the same for the norms before normalisation.

The score is the largest ratio statistic / threshold; above 1 is drift. Thresholds are the
99.5th percentile of each statistic over random in-domain windows (three statistics: about a 1.5%
false-alarm rate per window at the calibration window size, stated in the manifest). Memory is
O(dim + bins) whatever the number of items: a running sum and two histograms.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from edgeslim.errors import BundleError, InputError

__all__ = ["DriftScore", "DriftTracker", "MIN_DRIFT_ITEMS", "drift_reference"]

BINS = 20  # equal-mass bins of the reference distributions
MIN_DRIFT_ITEMS = 20  # fewer items say little about a distribution
THRESHOLD_PERCENTILE = 99.5
CALIBRATION_WINDOWS = 400


def _unit(raw: np.ndarray) -> np.ndarray:
    return raw / np.clip(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12, None)


@dataclass(frozen=True)
class DriftScore:
    score: float  # the largest statistic / threshold; > 1 is drift
    drifted: bool
    items: int
    statistics: dict  # name -> {"value", "threshold", "ratio"}
    reference: str  # what the reference was built from

    def to_dict(self) -> dict:
        return {"score": self.score, "drifted": self.drifted, "items": self.items, "statistics": self.statistics,
                "reference": self.reference}


class DriftTracker:
    """Running statistics of raw (pre-normalisation) pooled embeddings against a reference.
    `update` and `score` may be called from any thread."""

    def __init__(self, reference):
        self.reference = reference
        self._mean = np.asarray(reference.mean, np.float64)
        self._mean_unit = self._mean / max(np.linalg.norm(self._mean), 1e-12)
        self._total_variance = float(np.sum(reference.variance))
        self._cosine_edges = np.asarray(reference.cosine_edges, np.float64)
        self._norm_edges = np.asarray(reference.norm_edges, np.float64)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._count = 0
            self._sum = np.zeros_like(self._mean)
            self._cosine_bins = np.zeros(len(self._cosine_edges) + 1, np.int64)
            self._norm_bins = np.zeros(len(self._norm_edges) + 1, np.int64)

    def update(self, raw: np.ndarray) -> None:
        raw = np.asarray(raw, np.float64)
        if raw.ndim != 2 or raw.shape[1] != self._mean.shape[0]:
            raise InputError(f"drift statistics take (items, {self._mean.shape[0]}) embeddings, got {raw.shape}")
        unit = _unit(raw)
        cosine_bins = np.bincount(np.searchsorted(self._cosine_edges, unit @ self._mean_unit),
                                  minlength=len(self._cosine_edges) + 1)
        norm_bins = np.bincount(np.searchsorted(self._norm_edges, np.linalg.norm(raw, axis=1)),
                                minlength=len(self._norm_edges) + 1)
        with self._lock:
            self._count += len(raw)
            self._sum += unit.sum(0)
            self._cosine_bins += cosine_bins
            self._norm_bins += norm_bins

    @property
    def count(self) -> int:
        return self._count

    def statistics(self) -> dict[str, float]:
        """The three statistics of the items seen so far (unscaled by thresholds)."""
        with self._lock:
            count, total = self._count, self._sum.copy()
            cosine_bins, norm_bins = self._cosine_bins.copy(), self._norm_bins.copy()
        return _statistics(count, total, cosine_bins, norm_bins, self._mean, self._total_variance,
                           self.reference.items)

    def score(self) -> DriftScore:
        if self._count < MIN_DRIFT_ITEMS:
            raise InputError(f"drift needs at least {MIN_DRIFT_ITEMS} items to say anything; {self._count} seen")
        found = self.statistics()
        thresholds = self.reference.thresholds
        per = {}
        for name, value in found.items():
            threshold = getattr(thresholds, name)
            if threshold is None:  # no spread in the reference (e.g. a graph that normalises itself)
                continue
            per[name] = {"value": round(float(value), 4), "threshold": round(float(threshold), 4),
                         "ratio": round(float(value / threshold), 4)}
        score = float(max(v["ratio"] for v in per.values()))
        return DriftScore(round(score, 4), bool(score > 1.0), self._count, per, self.reference.source)


def _statistics(count: int, total: np.ndarray, cosine_bins: np.ndarray, norm_bins: np.ndarray, mean: np.ndarray,
                total_variance: float, reference_items: int) -> dict[str, float]:
    window_mean = total / count
    mean_shift = count * float(np.sum((window_mean - mean) ** 2)) / max(total_variance, 1e-12)
    expected = np.arange(1, len(cosine_bins)) / len(cosine_bins)  # the reference's CDF at its inner edges
    scale = np.sqrt(count * reference_items / (count + reference_items))

    def ks(bins: np.ndarray) -> float:
        return float(np.max(np.abs(np.cumsum(bins)[:-1] / count - expected))) * scale

    # mean_shift is about 1 + n/N in-domain (the reference mean has its own noise): divided out.
    return {"mean_shift": mean_shift / (1 + count / reference_items), "cosine_ks": ks(cosine_bins),
            "norm_ks": ks(norm_bins)}


def drift_reference(raw: np.ndarray, source: str, seed: int = 0) -> dict:
    """The manifest's `drift` entry from raw pooled embeddings of held-out in-domain items: the
    first half (shuffled) is the reference, the second calibrates the thresholds."""
    raw = np.asarray(raw, np.float64)
    if raw.ndim != 2 or len(raw) < 2 * MIN_DRIFT_ITEMS:
        raise BundleError(f"a drift reference needs at least {2 * MIN_DRIFT_ITEMS} held-out items, got {len(raw)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(raw))
    half = len(raw) // 2
    reference, calibration = raw[order[:half]], raw[order[half:]]
    unit = _unit(reference)
    mean = unit.mean(0)
    variance = unit.var(0)
    mean_unit = mean / max(np.linalg.norm(mean), 1e-12)
    quantiles = np.arange(1, BINS) / BINS
    cosine_edges = np.quantile(unit @ mean_unit, quantiles)
    norm_edges = np.quantile(np.linalg.norm(reference, axis=1), quantiles)
    window = max(MIN_DRIFT_ITEMS, min(100, len(calibration) // 2))
    calibration_unit = _unit(calibration)
    calibration_cosine = np.searchsorted(cosine_edges, calibration_unit @ mean_unit)
    calibration_norm = np.searchsorted(norm_edges, np.linalg.norm(calibration, axis=1))
    found = {"mean_shift": [], "cosine_ks": [], "norm_ks": []}
    for _ in range(CALIBRATION_WINDOWS):
        pick = rng.choice(len(calibration), window, replace=False)
        stats = _statistics(window, calibration_unit[pick].sum(0), np.bincount(calibration_cosine[pick], minlength=BINS),
                            np.bincount(calibration_norm[pick], minlength=BINS), mean, float(variance.sum()), half)
        for name, value in stats.items():
            found[name].append(value)
    thresholds = {name: round(max(float(np.percentile(values, THRESHOLD_PERCENTILE)), 1e-6), 6)
                  for name, values in found.items()}
    for name, edges in (("cosine_ks", cosine_edges), ("norm_ks", norm_edges)):
        if np.ptp(edges) <= 1e-6 * max(float(np.abs(edges).max()), 1.0):
            thresholds[name] = None  # every reference item has the same value: nothing to compare
    return {
        "source": source, "items": int(half), "calibration_items": int(len(calibration)), "window": int(window),
        "mean": [round(float(v), 7) for v in mean], "variance": [round(float(v), 9) for v in variance],
        "cosine_edges": [round(float(v), 7) for v in cosine_edges], "norm_edges": [round(float(v), 7) for v in norm_edges],
        "thresholds": thresholds, "threshold_percentile": THRESHOLD_PERCENTILE,
    }
