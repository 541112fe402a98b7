"""Drift: is what a device encodes still like the data the bundle was checked on?

At build time the kit embeds held-out in-domain items with the bundle itself (the run's
teacher-agreement set, which calibration never saw) and stores in the manifest's `drift`:
the mean unit vector, the per-dimension variance, the distribution of each item's cosine to
the mean and of the embedding norms before normalisation (as equal-mass bin edges), and
thresholds calibrated on a second, disjoint part of that set.

Input is scored in windows of the calibration's size (a file, or what an Encoder saw since
`track_drift()`: the last 20 windows); each window of n items on three statistics, each against
its calibrated threshold:

- mean_shift: n * |mean(u) - mu|^2 / sum(var): how far the window's mean direction moved, in
  units of its own sampling noise (about 1 for an in-domain window);
- cosine_ks: the largest gap between the window's and the reference's distributions of
  cosine to mu (binned Kolmogorov-Smirnov), scaled by sqrt(n N / (n + N));
- norm_ks: the same for the norms before normalisation.

A window's score is its largest ratio statistic / threshold, and the score is the median over
the windows; above 1 is drift. Thresholds are the 99.5th percentile of each statistic over
random in-domain windows of the calibration half (three statistics: about 1.5% of in-domain
windows flagged, at best; edgeslim/drift_benchmark.py measures it). Memory is O(dim + bins) per window
kept, whatever the number of items: running sums and two histograms.
"""

from __future__ import annotations

import threading
from collections import deque
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
    score: float  # the median window's largest statistic / threshold; > 1 is drift
    drifted: bool
    items: int  # items seen (since the last reset)
    windows: int  # windows scored (full ones; a partial one only when no window is full)
    flagged_windows: int  # windows whose own score is above 1
    statistics: dict  # name -> median over the windows of {"value", "threshold", "ratio"}
    reference: str  # what the reference was built from

    def to_dict(self) -> dict:
        return {"score": self.score, "drifted": self.drifted, "items": self.items, "windows": self.windows,
                "flagged_windows": self.flagged_windows, "statistics": self.statistics, "reference": self.reference}


class _Window:
    """Sums of one window: O(dim + bins)."""

    def __init__(self, dim: int, bins: int):
        self.count = 0
        self.total = np.zeros(dim)
        self.cosine_bins = np.zeros(bins, np.int64)
        self.norm_bins = np.zeros(bins, np.int64)

    def add(self, unit: np.ndarray, cosine_index: np.ndarray, norm_index: np.ndarray) -> None:
        self.count += len(unit)
        self.total += unit.sum(0)
        self.cosine_bins += np.bincount(cosine_index, minlength=len(self.cosine_bins))
        self.norm_bins += np.bincount(norm_index, minlength=len(self.norm_bins))


class DriftTracker:
    """Running drift statistics of raw (pre-normalisation) pooled embeddings, in windows of the
    reference's calibration size (`reference.window` items): the thresholds were calibrated on
    windows of that size, and a window's score does not grow with the number of items seen (one
    huge window would measure the reference's own sampling noise). The score is the median over
    the last `keep` full windows. `update` and `score` may be called from any thread."""

    def __init__(self, reference, keep: int = 20):
        self.reference = reference
        self.window = reference.window
        self._mean = np.asarray(reference.mean, np.float64)
        self._mean_unit = self._mean / max(np.linalg.norm(self._mean), 1e-12)
        self._total_variance = float(np.sum(reference.variance))
        self._cosine_edges = np.asarray(reference.cosine_edges, np.float64)
        self._norm_edges = np.asarray(reference.norm_edges, np.float64)
        self._keep = keep
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._count = 0
            self._current = _Window(len(self._mean), len(self._cosine_edges) + 1)
            self._done: deque[dict[str, float]] = deque(maxlen=self._keep)

    def update(self, raw: np.ndarray) -> None:
        raw = np.asarray(raw, np.float64)
        if raw.ndim != 2 or raw.shape[1] != self._mean.shape[0]:
            raise InputError(f"drift statistics take (items, {self._mean.shape[0]}) embeddings, got {raw.shape}")
        unit = _unit(raw)
        cosine_index = np.searchsorted(self._cosine_edges, unit @ self._mean_unit)
        norm_index = np.searchsorted(self._norm_edges, np.linalg.norm(raw, axis=1))
        with self._lock:
            start = 0
            while start < len(raw):
                stop = min(len(raw), start + self.window - self._current.count)
                self._current.add(unit[start:stop], cosine_index[start:stop], norm_index[start:stop])
                start = stop
                if self._current.count == self.window:
                    self._done.append(self._statistics(self._current))
                    self._current = _Window(len(self._mean), len(self._cosine_edges) + 1)
            self._count += len(raw)

    @property
    def count(self) -> int:
        return self._count

    def _statistics(self, window: _Window) -> dict[str, float]:
        return _statistics(window.count, window.total, window.cosine_bins, window.norm_bins, self._mean,
                           self._total_variance, self.reference.items)

    def statistics(self) -> list[dict[str, float]]:
        """Each scored window's statistics (unscaled by thresholds), oldest first."""
        with self._lock:
            done = list(self._done)
            current = self._statistics(self._current) if self._current.count >= MIN_DRIFT_ITEMS else None
        return done if done else ([current] if current else [])

    def score(self) -> DriftScore:
        windows = self.statistics()
        if not windows:
            raise InputError(f"drift needs at least {MIN_DRIFT_ITEMS} items to say anything; {self._count} seen")
        thresholds = self.reference.thresholds
        used = [name for name in windows[0] if getattr(thresholds, name) is not None]  # None: no spread in the reference
        ratios = [{name: w[name] / getattr(thresholds, name) for name in used} for w in windows]
        window_scores = [max(r.values()) for r in ratios]
        per = {name: {"value": round(float(np.median([w[name] for w in windows])), 4),
                      "threshold": round(float(getattr(thresholds, name)), 4),
                      "ratio": round(float(np.median([r[name] for r in ratios])), 4)} for name in used}
        score = float(np.median(window_scores))
        return DriftScore(round(score, 4), bool(score > 1.0), self._count, len(windows),
                          int(sum(s > 1.0 for s in window_scores)), per, self.reference.source)


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
        # With replacement: a window of fresh data varies like that; drawn without replacement
        # from a pool of a few hundred, windows vary less, and thresholds would come out low.
        pick = rng.choice(len(calibration), window, replace=True)
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
