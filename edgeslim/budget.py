"""The budget: one schema for a target's default budget, a recipe's `budget:` section and the
verdict's checks. Each row of `BUDGET_CHECKS` is one limit: its key, how to read the value from a
measured result, and which way it must lie; the modalities add rows for their own metrics (text:
`min_stsb_spearman`). `Budget` is built from the table, so a key exists exactly when a check
reads it.

    budget = Budget(min_speedup=1.5, min_teacher_cosine=0.99)    # a target's default
    merged = budget.merged(Budget(p95_ms=10))                      # a recipe's override
    checks = [(spec, budget.limit(spec)) for spec in BUDGET_CHECKS]  # benchmarks/budget.py
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pydantic import Field, create_model

from edgeslim.schema import StrictModel


@dataclass(frozen=True)
class BudgetCheck:
    key: str  # the budget field, e.g. "p95_ms"
    check: str  # the check's name in a verdict, e.g. "p95_ms"
    read: Callable[[Any], float | None]  # a benchmarks.report.Result -> the measured value (None: not measured)
    at_most: bool  # the value must be <= the limit (else >=)
    kind: type = float
    bounds: dict | None = None  # pydantic Field bounds of the limit
    doc: str = ""
    modality: str | None = None  # only runs of this modality take it
    # Read from a bundle's first, cheap measurement (size, accuracy), before any timing: a
    # search stops a candidate there when such a check fails (latency cannot change it).
    first_look: bool = False


def _probe_drop(result):
    probe = result.accuracy.probe
    return probe.knn_top1_drop if probe is not None else None


GENERIC_CHECKS: tuple[BudgetCheck, ...] = (
    BudgetCheck("p95_ms", "p95_ms", lambda r: r.latency_ms.p95, True, bounds={"gt": 0},
                doc="p95 latency at the operating point, ms"),
    # A ratio measured in the same run (the teacher and the bundle in interleaved rounds on one
    # core): it holds on any host, where an absolute p95 holds only on the CPU it was set on.
    BudgetCheck("min_speedup", "speedup", lambda r: r.speedup_vs_baseline, False, bounds={"gt": 0},
                doc="the bundle's speedup over the uncompressed teacher, measured in the same run (x)"),
    BudgetCheck("max_size_mb", "size_mb", lambda r: r.size_mb, True, bounds={"gt": 0}, doc="bundle size, MB",
                first_look=True),
    BudgetCheck("max_peak_rss_mb", "peak_rss_mb", lambda r: r.peak_rss_mb, True, bounds={"gt": 0},
                doc="peak resident memory of the process running the bundle, MB"),
    BudgetCheck("min_teacher_cosine", "teacher_cosine_mean", lambda r: r.accuracy.teacher_cosine_mean, False,
                bounds={"ge": -1, "le": 1}, doc="mean cosine to the teacher on held-out items", first_look=True),
    BudgetCheck("max_knn_drop", "knn_top1_drop", _probe_drop, True, bounds={"ge": 0, "le": 100},
                doc="kNN top-1 points the bundle may lose against the teacher (the recipe's first probe)",
                first_look=True),
    BudgetCheck("max_npu_sram_kib", "npu_sram_kib", lambda r: (r.device_estimate or {}).get("sram_used_kib"), True,
                bounds={"gt": 0}, doc="NPU SRAM the graph uses (the NPU compiler's report), KiB"),
    BudgetCheck("max_cpu_operators", "cpu_operators", lambda r: (r.device_estimate or {}).get("cpu_operators"),
                True, kind=int, bounds={"ge": 0}, doc="operators the NPU compiler leaves to the CPU"),
)


def _metric_check(modality: str, metric) -> BudgetCheck:
    name = metric.name
    return BudgetCheck(metric.budget_key, name, lambda r: r.accuracy.metric(name), not metric.higher_is_better,
                       doc=metric.budget_doc or metric.label, modality=modality, first_look=True)


def _modality_checks() -> tuple[BudgetCheck, ...]:
    from edgeslim.modalities import MODALITIES

    return tuple(_metric_check(m.name, metric) for m in MODALITIES.values() for metric in m.metrics
                 if metric.budget_key)


BUDGET_CHECKS: tuple[BudgetCheck, ...] = GENERIC_CHECKS + _modality_checks()
OPERATING_POINT = {"batch": 1, "seq_len": 128, "threads": 1}  # what the latency limit refers to


class _BudgetBase(StrictModel):
    """What a bundle must meet on its target. None disables a check. batch, seq_len (text:
    tokens per row) and threads are the operating point the latency limit refers to."""

    def merged(self, overrides: "_BudgetBase") -> "Budget":
        """This budget with the keys `overrides` sets (a recipe's budget over a target's)."""
        return self.model_copy(update={k: getattr(overrides, k) for k in overrides.model_fields_set})

    def for_modality(self, modality: str) -> "Budget":
        """Without the limits of metrics other modalities' runs are scored by (a sentence
        similarity is not a check an image model can take)."""
        return self.model_copy(update={c.key: None for c in BUDGET_CHECKS if c.modality not in (None, modality)})

    def limit(self, check: BudgetCheck):
        return getattr(self, check.key)

    def to_dict(self) -> dict:
        return self.model_dump()


Budget = create_model(
    "Budget", __base__=_BudgetBase,
    **{c.key: (c.kind | None, Field(None, description=c.doc, **(c.bounds or {}))) for c in BUDGET_CHECKS},
    **{key: (int, Field(default, ge=1, le=65_536)) for key, default in OPERATING_POINT.items()},
)
