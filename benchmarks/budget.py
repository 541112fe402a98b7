"""Budget verdict: compare one result with its target's budget, check by check (the table is
`edgeslim.budget.BUDGET_CHECKS`, the same one the budget's schema is built from)."""

from __future__ import annotations

from edgeslim.benchmarks.report import BudgetCheck, BudgetVerdict, Result
from edgeslim.budget import BUDGET_CHECKS, Budget


def check(result: Result, budget: Budget, first_look: bool = False) -> BudgetVerdict:
    """Every budget limit set is checked. A value that could not be measured (e.g. a task
    metric whose data is absent) is `passed: null` and listed as unverified: it neither passes nor fails.
    first_look=True: only the checks a first, cheap measurement answers (size, accuracy); `result`
    then needs only `size_mb` and `accuracy`."""
    checks = []
    for spec in BUDGET_CHECKS:
        if first_look and not spec.first_look:
            continue
        limit = budget.limit(spec)
        if limit is None:
            continue
        value = spec.read(result)
        passed = None if value is None else (value <= limit if spec.at_most else value >= limit)
        checks.append(BudgetCheck(name=spec.check, limit=limit, value=value, passed=passed,
                                  comparison="<=" if spec.at_most else ">="))
    return BudgetVerdict(
        passed=all(c.passed is not False for c in checks),
        checks=checks,
        unverified=[c.name for c in checks if c.passed is None],
    )


def recheck(result: Result) -> BudgetVerdict | None:
    """The result's verdict again, same limits, values read afresh (after a device measurement
    replaced an estimate)."""
    if result.budget is None:
        return None
    specs = {spec.check: spec for spec in BUDGET_CHECKS}
    checks = []
    for old in result.budget.checks:
        value = specs[old.name].read(result)
        passed = None if value is None else (value <= old.limit if old.comparison == "<=" else value >= old.limit)
        checks.append(old.model_copy(update={"value": value, "passed": passed}))
    return BudgetVerdict(passed=all(c.passed is not False for c in checks), checks=checks,
                         unverified=[c.name for c in checks if c.passed is None])
