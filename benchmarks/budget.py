"""Budget verdict: compare one result with its target's budget."""

from __future__ import annotations

from edgeslim.benchmarks.report import BudgetCheck, BudgetVerdict, Result
from edgeslim.targets.base import Budget

# (check name, budget field, how to read the value from a result, value must be <= limit?)
_CHECKS = (
    ("p95_ms", "p95_ms", lambda r: r.latency_ms.p95, True),
    ("size_mb", "max_size_mb", lambda r: r.size_mb, True),
    ("peak_rss_mb", "max_peak_rss_mb", lambda r: r.peak_rss_mb, True),
    ("teacher_cosine_mean", "min_teacher_cosine", lambda r: r.accuracy.teacher_cosine_mean, False),
    ("stsb_spearman", "min_stsb_spearman", lambda r: r.accuracy.stsb_spearman, False),
    ("knn_top1_drop", "max_knn_drop", lambda r: r.accuracy.probe.knn_top1_drop if r.accuracy.probe else None, True),
    ("npu_sram_kib", "max_npu_sram_kib", lambda r: (r.device_estimate or {}).get("sram_used_kib"), True),
    ("cpu_operators", "max_cpu_operators", lambda r: (r.device_estimate or {}).get("cpu_operators"), True),
)


def check(result: Result, budget: Budget) -> BudgetVerdict:
    """Every budget limit set is checked. A value that could not be measured (e.g. STS-B with
    no data) is `passed: null` and listed as unverified: it neither passes nor fails."""
    checks = []
    for name, field, read, at_most in _CHECKS:
        limit = getattr(budget, field)
        if limit is None:
            continue
        value = read(result)
        passed = None if value is None else (value <= limit if at_most else value >= limit)
        checks.append(BudgetCheck(name=name, limit=limit, value=value, passed=passed,
                                  comparison="<=" if at_most else ">="))
    return BudgetVerdict(
        passed=all(c.passed is not False for c in checks),
        checks=checks,
        unverified=[c.name for c in checks if c.passed is None],
    )
