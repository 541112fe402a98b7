"""Measuring: each model in its own worker process (latency at the budget's operating point,
real-length latency, peak RSS, embeddings), the speedup over the teacher from interleaved
rounds on the same pinned core, the target's estimate where the host is not the device, and one
immutable Result with its budget verdict."""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from edgeslim.benchmarks.budget import check
from edgeslim.benchmarks.harness import knn_top1, linear_probe, teacher_agreement, where_measured
from edgeslim.benchmarks.report import (Accuracy, Latency, ProbeAccuracy, RealLengthLatency, Result, SpeedupSpread,
                                        TaskMetric)
from edgeslim.benchmarks.worker import run_worker
from edgeslim.budget import Budget
from edgeslim.evaldata import EvalData
from edgeslim.targets.base import EstimateInput


def agreement_rows(data: EvalData, embeddings: np.ndarray) -> np.ndarray:
    """The rows of the held-out agreement items, from embeddings of `data.texts` in order."""
    by_text = dict(zip(data.texts, embeddings))
    return np.stack([by_text[t] for t in data.agreement_texts])


def accuracy_of(data: EvalData, embeddings: np.ndarray, teacher_agreement_embeddings: np.ndarray) -> Accuracy:
    """Every accuracy figure of one model from its embeddings of `data.texts` (in order): cosine
    to the teacher on the agreement items, the modality's task metrics and the probes."""
    by_item = dict(zip(data.texts, embeddings))
    cos_mean, cos_min = teacher_agreement(teacher_agreement_embeddings, agreement_rows(data, embeddings))
    return Accuracy(
        teacher_cosine_mean=round(cos_mean, 6), teacher_cosine_min=round(cos_min, 6),
        eval_set=data.agreement.name, eval_sentences=len(data.agreement_texts),
        disjoint_from_calibration=data.metric_overlap == 0,  # agreement overlaps were removed
        overlap_with_calibration=data.metric_overlap,
        metrics=[TaskMetric(name=m.name, label=m.label, short=m.spec.short,
                            value=round(m.score(by_item), 3), higher_is_better=m.spec.higher_is_better,
                            data=m.described) for m in data.metrics],
        probes=[_probe(probe, by_item) for probe in data.probes],
    )


def _probe(probe, by_item: dict) -> ProbeAccuracy:
    train = np.stack([by_item[t] for t in probe.train_items])
    test = np.stack([by_item[t] for t in probe.test_items])
    return ProbeAccuracy(
        train=probe.train.name, test=probe.test.name, label=probe.label, train_items=len(train),
        test_items=len(test), knn_k=probe.k,
        knn_top1=round(100 * knn_top1(train, probe.train_labels, test, probe.test_labels, probe.k), 2),
        linear_probe_top1=round(100 * linear_probe(train, probe.train_labels, test, probe.test_labels), 2),
        test_disjoint_from_calibration=True)  # overlapping test items were removed (EvalData.describe)


@dataclass(frozen=True)
class FirstLook:
    """A bundle's cheap first measurement: size, accuracy, and the budget checks they answer."""

    size_mb: float
    accuracy: Accuracy
    verdict: object  # benchmarks.report.BudgetVerdict over the first-look checks only
    seconds: float


@dataclass(frozen=True)
class Baseline:
    """The measured teacher: its Result, its embeddings of the held-out agreement set, and the
    latency input it was timed on (in its own token ids)."""

    result: Result
    agreement_embeddings: np.ndarray
    latency_input: dict


class Measurer:
    """Measures a run's teacher and bundles. Its interleaved worker (the teacher loaded once,
    each bundle timed against it) lives until `close()`: use it as a context manager."""

    def __init__(self, recipe, data: EvalData, real_texts: list[str], real_texts_from: str, log=print):
        self.recipe, self.data, self.log = recipe, data, log
        self.real_texts, self.real_texts_from = real_texts, real_texts_from
        self._interleaved = None

    def close(self) -> None:
        if self._interleaved is not None:
            self._interleaved.close()
            self._interleaved = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _worker(self, spec: dict, budget: Budget, latency_input: dict, on_device: bool = True,
                embed: bool = True):
        """Measure in a fresh process. on_device=False (estimated targets, first looks): no timings
        are reported; a few runs only, for the peak RSS. embed=False: no accuracy pass (the
        embeddings are known already)."""
        bench = self.recipe.benchmark
        timing = (bench.warmup, bench.min_runs, bench.min_seconds) if on_device else (1, 3, 0.0)
        return run_worker({**spec, "threads": budget.threads, "batch": budget.batch, "latency_input": latency_input,
                           "warmup": timing[0], "min_runs": timing[1], "min_seconds": timing[2],
                           "real_batches": list(bench.real_length_batches) if on_device else [],
                           "real_texts": self.real_texts}, self.data.item_sets if embed else [])

    def _agreement(self, embeddings: np.ndarray) -> np.ndarray:
        return agreement_rows(self.data, embeddings)

    def _accuracy(self, embeddings: np.ndarray, teacher_agreement_embeddings: np.ndarray) -> Accuracy:
        return accuracy_of(self.data, embeddings, teacher_agreement_embeddings)

    def _latency(self, measured: dict, budget: Budget, kind: str) -> tuple[Latency, list[RealLengthLatency]]:
        real = [RealLengthLatency(**stats, threads=budget.threads, sentences_from=self.real_texts_from, kind=kind,
                                  where=where_measured()) for stats in measured.get("latency_real", {}).values()]
        variable = self.data.modality.runtime.variable_length
        return Latency(**measured["latency"], batch=budget.batch, seq_len=budget.seq_len if variable else None,
                       threads=budget.threads, kind=kind, where=where_measured(), what=self._what()), real

    def _what(self) -> str:
        runtime = self.data.modality.runtime
        prepared = "pre-tokenized input (tokenization excluded)" if runtime.variable_length else \
            f"prepared input ({runtime.noun} already decoded and preprocessed)"
        return f"model forward + pooling on {prepared}"

    def teacher(self, teacher, budget: Budget, latency_input: dict) -> Baseline:
        """The teacher measured as the bundles are; its held-out embeddings are what every
        bundle's agreement is scored against."""
        point = self.data.modality.runtime.operating_point(budget.seq_len)
        self.log(f"  teacher {teacher.name}: measuring the {teacher.reference} baseline (threads {budget.threads}, "
                 f"batch {budget.batch}, {point})")
        started = time.perf_counter()
        measured, embeddings = self._worker({"kind": "teacher", "model": self.recipe.model.model_dump(mode="json")},
                                            budget, latency_input)
        agreement = self._agreement(embeddings)
        latency, real = self._latency(measured, budget, "measured")
        result = Result(name=f"{teacher.name} ({teacher.reference})", target="host", backend=teacher.reference,
                        bundle=None, size_mb=round(teacher.parameters_mb(), 3), latency_ms=latency,
                        latency_real_ms=real, peak_rss_mb=measured["peak_rss_mb"],
                        accuracy=self._accuracy(embeddings, agreement), speedup_vs_baseline=None,
                        providers=measured["providers"], steps=[],
                        seconds={"measure": round(time.perf_counter() - started, 1)})
        return Baseline(result=result, agreement_embeddings=agreement, latency_input=latency_input)

    def speedup(self, built, budget: Budget, teacher_input: dict, bundle_input: dict) -> SpeedupSpread:
        """Teacher and bundle in rounds (teacher, bundle, teacher, bundle...) in one process pinned
        to one core: a drift of the host's speed hits both, and the per-round ratios show it."""
        from edgeslim.benchmarks.worker import InterleavedWorker

        bench = self.recipe.benchmark
        if self._interleaved is None:  # one process per run: the teacher loads once
            self._interleaved = InterleavedWorker({"model": self.recipe.model.model_dump(mode="json"),
                                                   "threads": budget.threads, "batch": budget.batch})
        # The same input in each model's own terms (text: each model's token ids).
        measured = self._interleaved.time_bundle({
            "path": str(built.staging), "manifest": str(built.manifest_path), "latency_input": bundle_input,
            "teacher_input": teacher_input, "warmup": bench.warmup, "rounds": bench.speedup_rounds,
            "runs_per_round": bench.speedup_runs_per_round})
        ratios = np.asarray(measured["ratios"])
        q1, median, q3 = np.percentile(ratios, [25, 50, 75])
        return SpeedupSpread(median=round(float(median), 3), q1=round(float(q1), 3), q3=round(float(q3), 3),
                             rounds=len(ratios), runs_per_round=bench.speedup_runs_per_round,
                             teacher_p50_ms=round(float(np.median(measured["teacher_p50"])), 3),
                             bundle_p50_ms=round(float(np.median(measured["bundle_p50"])), 3),
                             cpu=measured["cpu"])

    @staticmethod
    def _size_mb(built) -> float:
        # The staged files and the manifest that will join them (the model card is not counted).
        return (sum(p.stat().st_size for p in built.staging.rglob("*") if p.is_file())
                + built.manifest_path.stat().st_size) / 1e6

    def _bundle_accuracy(self, embeddings: np.ndarray, baseline: "Baseline") -> Accuracy:
        accuracy = self._accuracy(embeddings, baseline.agreement_embeddings)
        probes = [probe.model_copy(update={"knn_top1_drop": round(teacher.knn_top1 - probe.knn_top1, 2)})
                  for probe, teacher in zip(accuracy.probes, baseline.result.accuracy.probes)]
        return accuracy.model_copy(update={"probes": probes})

    def first_look(self, built, budget: Budget, latency_input: dict, baseline: "Baseline") -> "FirstLook":
        """The cheap first measurement of a staged bundle: its size and accuracy (no timings), and
        the verdict of the budget checks those answer."""
        started = time.perf_counter()
        _, embeddings = self._worker({"kind": "bundle", "path": str(built.staging),
                                      "manifest": str(built.manifest_path)}, budget, latency_input, on_device=False)
        size_mb, accuracy = round(self._size_mb(built), 3), self._bundle_accuracy(embeddings, baseline)
        verdict = check(SimpleNamespace(size_mb=size_mb, accuracy=accuracy), budget, first_look=True)
        return FirstLook(size_mb=size_mb, accuracy=accuracy, verdict=verdict,
                         seconds=round(time.perf_counter() - started, 1))

    def bundle(self, built, planned, budget: Budget, latency_input: dict, baseline: "Baseline",
               required: bool, first_look: "FirstLook | None" = None) -> Result:
        """Measure a staged bundle; `first_look`: its accuracy is taken from there, not embedded again."""
        target = planned.target
        on_device = target.latency_kind == "measured"
        started = time.perf_counter()
        measured, embeddings = self._worker({"kind": "bundle", "path": str(built.staging),
                                             "manifest": str(built.manifest_path)}, budget, latency_input,
                                            on_device=on_device, embed=first_look is None)
        size_mb = self._size_mb(built)
        latency, real = self._latency(measured, budget, target.latency_kind)
        spread, device_estimate = None, None
        measured_at = time.perf_counter()
        if on_device:
            spread = self.speedup(built, budget, baseline.latency_input, latency_input)
        else:  # the target's estimate in place of a host timing: this machine is not the device
            estimate = self._estimate(built, target, budget)
            variable = self.data.modality.runtime.variable_length
            latency = Latency(p50=estimate.ms, p90=estimate.ms, p95=estimate.ms, p99=estimate.ms, batch=budget.batch,
                              threads=budget.threads, runs=0, seq_len=budget.seq_len if variable else None,
                              kind="estimated",
                              where=estimate.where, what=estimate.what)
            real, device_estimate = [], estimate.details or None
        accuracy = first_look.accuracy if first_look else self._bundle_accuracy(embeddings, baseline)
        result = Result(
            name=planned.name, target=target.name, backend=planned.backend,
            bundle=str(built.staging.parent / planned.name), size_mb=round(size_mb, 3), latency_ms=latency,
            latency_real_ms=real, peak_rss_mb=measured["peak_rss_mb"],
            accuracy=accuracy,
            speedup_vs_baseline=spread.median if spread else None, speedup_spread=spread,
            providers=measured["providers"], steps=list(built.records), device_estimate=device_estimate,
            required=required,
            waived=target.waiver(planned.backend, built.int8) if required else None,
            seconds={"measure": round(measured_at - started + (first_look.seconds if first_look else 0), 1),
                     "interleaved": round(time.perf_counter() - measured_at, 1)},
        )
        return result.model_copy(update={"budget": check(result, budget)})

    def _estimate(self, built, target, budget: Budget):
        model = built.torch_model
        macs = model.family.macs(model.module, budget.seq_len, budget.batch) if model is not None else 0.0
        return target.estimate(EstimateInput(bundle_dir=built.staging, manifest=built.manifest_model,
                                             weight_files=built.weight_files(), macs=macs, int8=built.int8), budget)
