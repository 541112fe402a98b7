"""The report of a finished search study: the measured candidates (from the study's trials, one
per candidate), the study's Pareto front, the 2-D fronts and their plots, the chosen bundle, what
was pruned or failed, and how the work was spread (workers, built vs read from the store).
`OUT/bundles/<name>` links each measured bundle in the store; `OUT/trials.json` lists every trial."""

from __future__ import annotations

import os
from pathlib import Path

from edgeslim.benchmarks.report import Report, Result


def _measured(trials) -> tuple[list[Result], dict, dict]:
    """(results of the completed candidates in grid order, pruned: name -> reason, failed: name ->
    reason). A candidate measured by several trials (two workers that asked at once) counts once."""
    from optuna.trial import TrialState

    trials = sorted(trials, key=lambda t: t.number)
    results, pruned, failed, settled = {}, {}, {}, set()
    for t in trials:
        name = t.user_attrs.get("candidate")
        if name is None or name in settled:
            continue
        if t.state == TrialState.COMPLETE:
            results[name] = Result.model_validate(t.user_attrs["result"])
            settled.add(name)
        elif t.state == TrialState.PRUNED:
            pruned[name] = t.user_attrs.get("pruned_because", "")
            settled.add(name)
        elif t.state == TrialState.FAIL:
            failed[name] = (t.user_attrs.get("error") or t.system_attrs.get("fail_reason")
                            or "its worker stopped (heartbeat), retries spent")
    for name in settled:
        failed.pop(name, None)  # a retry made it
    return list(results.values()), pruned, failed


def _link_bundles(results: list[Result], out: Path, log) -> None:
    """OUT/bundles/NAME -> the bundle in the store, for every one this machine can see."""
    folder = out / "bundles"
    folder.mkdir(exist_ok=True)
    unseen = []
    for result in results:
        link, bundle = folder / result.name, Path(result.bundle)
        if not bundle.is_dir():
            unseen.append(result.name)
        elif not (link.is_symlink() or link.exists()):  # else a resumed search's earlier link
            os.symlink(bundle.resolve(), link, target_is_directory=True)
    if unseen:
        log(f"  search: {len(unseen)} bundle(s) are in a store this machine does not see ({', '.join(unseen)}); "
            "give every worker the same shared --store")


def study_front(study) -> list[str]:
    """The study's own Pareto front (all objectives), as candidate names, best quality first."""
    names = []
    for trial in sorted(study.best_trials, key=lambda t: (-t.values[0], t.values[1], t.values[2])):
        name = trial.user_attrs["candidate"]
        if name not in names:
            names.append(name)
    return names


def write_search_report(study, recipe, session, out: Path, options, wall_seconds: float, log=print,
                        lost_workers: list[str] = ()) -> Report:
    from optuna.trial import TrialState

    from edgeslim.benchmarks.pareto import COSTS, front, plot_fronts, quality
    from edgeslim.pipeline import write_report
    from edgeslim.study import display_url, dump_trials

    trials = study.get_trials(deepcopy=False)
    results, pruned, failed = _measured(trials)
    states = {state.name: sum(t.state == state for t in trials) for state in TrialState
              if any(t.state == state for t in trials)}
    report = session.report(results)
    plots = plot_fronts(results, report.baseline, out, f"{recipe.name} on {results[0].target}") if results else []
    passing = [r for r in results if r.budget is not None and r.budget.passed]
    chosen = min(passing, key=lambda r: r.latency_ms.p50) if passing else None
    report.search = {
        "candidates": len(recipe.search.points()),
        "quality": quality(results[0])[1] if results else None,
        "fronts": {"study": study_front(study) if results else [],
                   **{axis: [r.name for r in front(results, cost)] for axis, (cost, _) in COSTS.items()}},
        "chosen": chosen.name if chosen else None,
        "chosen_reason": "fastest p50 among the candidates that meet the target budget" if chosen
        else "no candidate meets the target budget",
        "plots": [p.name for p in plots],
        "pruned": pruned,
        "failed": failed,
        "study": {
            "name": study.study_name, "storage": display_url(options.storage_url(out)),
            "sampler": recipe.search.sampler.model_dump(), "objectives": study.user_attrs.get("edgeslim_objectives"),
            "trials": states,
            "built": sum(bool(t.user_attrs.get("built_here")) for t in trials),
            "from_store": sum(t.user_attrs.get("built_here") is False for t in trials),
            "workers": sorted({t.user_attrs["worker"] for t in trials if t.user_attrs.get("worker")}),
            "store": str(options.store_root()), "wall_seconds": round(wall_seconds, 1),
            "lost_local_workers": list(lost_workers),
        },
    }
    _link_bundles(results, out, log)
    dump_trials(study, out / "trials.json")
    write_report(report, out)
    log(f"  search: {len(results)} measured, {len(pruned)} pruned, {len(failed)} failed; study front: "
        f"{', '.join(report.search['fronts']['study']) or 'empty'}")
    return report
