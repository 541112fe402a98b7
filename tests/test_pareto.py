"""The Pareto front, checked in both directions: every dropped point is dominated by a kept one,
and no kept point is dominated by any point. A 'front' that returns every point fails."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgeslim.benchmarks.pareto import front, quality
from edgeslim.benchmarks.report import Accuracy, Latency, Result


def _point(i: int, ms: float, cosine: float) -> Result:
    return Result(
        name=f"p{i}", target="x86-cpu", backend="onnxruntime", bundle=None, size_mb=1.0, peak_rss_mb=1.0,
        latency_ms=Latency(p50=ms, p90=ms, p95=ms, p99=ms, batch=1, seq_len=8, threads=1, runs=1, kind="measured",
                           where="test"),
        accuracy=Accuracy(teacher_cosine_mean=cosine, teacher_cosine_min=cosine, eval_set="e", eval_sentences=1,
                          disjoint_from_calibration=True, overlap_with_calibration=0),
        speedup_vs_baseline=None)


def _dominates(a: Result, b: Result) -> bool:
    qa, qb = quality(a)[0], quality(b)[0]
    ca, cb = a.latency_ms.p50, b.latency_ms.p50
    return ca <= cb and qa >= qb and (ca < cb or qa > qb)


def front_violations(points: list[Result], kept: list[Result]) -> list[str]:
    problems = [f"{p.name} dropped but nothing kept dominates it" for p in points
                if p not in kept and not any(_dominates(k, p) or (k.latency_ms.p50 == p.latency_ms.p50 and
                                                                  quality(k)[0] == quality(p)[0]) for k in kept)]
    problems += [f"{k.name} kept but {p.name} dominates it" for k in kept for p in points if _dominates(p, k)]
    return problems


def test_a_known_front():
    points = [_point(0, 10, 0.99), _point(1, 5, 0.95), _point(2, 12, 0.98), _point(3, 5, 0.90), _point(4, 20, 0.999)]
    kept = front(points, lambda r: r.latency_ms.p50)
    assert [p.name for p in kept] == ["p1", "p0", "p4"]
    assert not front_violations(points, kept)


def test_the_checker_rejects_a_front_of_every_point_and_an_empty_one():
    points = [_point(0, 10, 0.99), _point(1, 12, 0.98)]  # p1 is dominated
    assert front_violations(points, points) == ["p1 kept but p0 dominates it"]
    assert front_violations(points, []) == ["p0 dropped but nothing kept dominates it",
                                            "p1 dropped but nothing kept dominates it"]


@given(st.lists(st.tuples(st.integers(1, 50), st.integers(900, 1000)), min_size=1, max_size=25))
def test_front_is_exactly_the_undominated_points(pairs):
    points = [_point(i, float(ms), c / 1000) for i, (ms, c) in enumerate(pairs)]
    kept = front(points, lambda r: r.latency_ms.p50)
    assert kept and not front_violations(points, kept)


def test_a_report1_accuracy_reads_into_the_metric_and_probe_lists():
    """edgeslim.report/1 kept STS-B and one probe in fixed fields; they load as report/2's lists."""
    probe = {"train": "banking77-train", "test": "banking77-test", "train_items": 10, "test_items": 5, "knn_k": 3,
             "knn_top1": 80.0, "linear_probe_top1": 82.0, "test_disjoint_from_calibration": True}
    old = Accuracy.model_validate({"teacher_cosine_mean": 0.99, "teacher_cosine_min": 0.9, "eval_set": "e",
                                   "eval_sentences": 1, "disjoint_from_calibration": True,
                                   "overlap_with_calibration": 0, "stsb_spearman": 81.5, "stsb_split": "test",
                                   "probe": probe})
    assert old.metric("stsb_spearman") == 81.5 and old.metrics[0].label == "STS-B Spearman x100 (test)"
    assert old.probe.knn_top1 == 80.0 and len(old.probes) == 1
    assert quality(_point(0, 1.0, 0.99).model_copy(update={"accuracy": old}))[0] == 81.5
