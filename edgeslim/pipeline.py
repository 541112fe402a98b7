"""`edgeslim run`: recipe -> plan -> teacher -> per variant: build -> measure -> publish -> report.

Orchestration only: evaluation data lives in `evaldata.py`, building in `build.py`, measuring
in `measure.py`. Data flows one way; the plan is checked before any model loads.
"""

from __future__ import annotations

import datetime as dt
import platform
import shutil
import time
from pathlib import Path

from edgeslim import __version__
from edgeslim.benchmarks.report import Report, render_markdown
from edgeslim.build import Builder, device_references
from edgeslim.bundle import MODEL_CARD, publish, render_model_card, write_manifest
from edgeslim.runtime.bundle import read_manifest
from edgeslim.runtime.encoder import bundle_identity
from edgeslim.errors import OutputError, RecipeError
from edgeslim.evaldata import latency_input, load_eval_data
from edgeslim.extras import require
from edgeslim.measure import Measurer
from edgeslim.outputs import write_atomic
from edgeslim.plan import Plan, plan_recipe
from edgeslim.recipe import Recipe


class Runner:
    def __init__(self, recipe: Recipe, plan: Plan, recipe_path: Path, out_dir: Path, log=print,
                 searching: bool = False):
        self.recipe, self.plan, self.recipe_path, self.out, self.log = recipe, plan, recipe_path, out_dir, log
        self.searching = searching
        self.work = out_dir / ".work"
        self.bundles = out_dir / "bundles"

    def run(self) -> Report:
        self._started = time.perf_counter()
        try:
            return self._run()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)  # scratch only; bundles and report are final

    def _budgets(self, plan) -> dict:
        """Each target's budget: its default with the recipe's overrides, less the limits of
        metrics that belong to other modalities."""
        overrides = {spec.target: spec.budget for spec in self.recipe.targets}
        budgets = {p.target.name: p.target.default_budget.merged(overrides[p.target.name])
                   .for_modality(plan.source.modality) for p in plan.variants}
        points = {(b.batch, b.seq_len, b.threads) for b in budgets.values()}
        if len(points) > 1:
            raise RecipeError("all targets of one recipe must share the latency operating point "
                              "(batch, seq_len, threads) so every speedup refers to the same baseline")
        return budgets

    def _run(self) -> Report:
        from edgeslim.models import load_encoder

        recipe, plan = self.recipe, self.plan  # planned before anything loaded: a wrong chain cost nothing
        budgets = self._budgets(plan)
        self.work.mkdir(parents=True, exist_ok=True)
        self.bundles.mkdir(parents=True, exist_ok=True)
        self.log(f"edgeslim {__version__}: recipe {recipe.name} ({self.recipe_path}) -> {self.out}")
        data = load_eval_data(recipe, plan.source.modality)
        # Real-length latency runs on the task's own items: the first task metric's when present.
        real_source, source_name = data.real_length_items
        real_texts = list(real_source[: recipe.benchmark.real_length_sentences])
        real_from = f"first {len(real_texts)} {data.modality.noun} of {source_name}"
        for note in data.skipped:
            self.log(f"  skipped: {note}")
        teacher = load_encoder(recipe.model)
        budget = next(iter(budgets.values()))
        measurer = Measurer(recipe, data, real_texts, real_from, self.log)
        try:
            return self._measure_all(recipe, plan, budgets, budget, data, teacher, measurer)
        finally:
            measurer.close()

    def _measure_all(self, recipe, plan, budgets, budget, data, teacher, measurer) -> Report:
        from edgeslim.targets.host import isa_summary, read_host_profile

        baseline = measurer.teacher(teacher, budget, latency_input(teacher, data, budget.seq_len))
        self.log(f"    p50 {baseline.result.latency_ms.p50:.2f} ms, {_task(baseline.result)}")

        builder = Builder(teacher, data, self.work, self.bundles, recipe, self.recipe_path, self.log)
        required = {v.name for spec in recipe.targets for v in spec.variants if v.name in spec.required}
        results = []
        for planned in plan.variants:
            build_started = time.perf_counter()
            built = builder.build(planned, budgets[planned.target.name])
            build_seconds = time.perf_counter() - build_started
            # Same text as the baseline's input, in this bundle's own token ids.
            bundle_input = latency_input(built.reader, data, budget.seq_len)
            result = measurer.bundle(built, planned, budgets[planned.target.name], bundle_input, baseline,
                                     planned.name in required)
            # The measured figures go into the bundle's one manifest, then it is published in one rename.
            (built.staging / MODEL_CARD).write_text(render_model_card(built.manifest, result.model_dump()),
                                                    encoding="utf-8")
            references_started = time.perf_counter()
            references = device_references(built, data)
            result = result.model_copy(update={"seconds": {
                "build": round(build_seconds, 1),
                "measure": round(result.seconds["measure"] + time.perf_counter() - references_started, 1),
                "interleaved": result.seconds["interleaved"]}})
            write_manifest(built.staging, {**built.manifest, **references,
                                           "benchmark": result.model_dump(exclude={"steps", "bundle", "seconds"})})
            built.manifest_path.unlink()
            result = result.model_copy(update={"bundle_id": bundle_identity(read_manifest(built.staging))})
            publish(built.staging, self.bundles / planned.name)
            results.append(result)
            seconds = result.seconds
            self.log(f"    built in {seconds['build']:.0f} s, measured in {seconds['measure']:.0f} s + "
                     f"{seconds['interleaved']:.0f} s of interleaved rounds")
            self.log(f"    p50 {result.latency_ms.p50:.2f} ms ({_speedup(result)}), {result.size_mb:.1f} MB, "
                     f"cos {result.accuracy.teacher_cosine_mean:.4f}, {_task(result)}, "
                     f"budget {'PASS' if result.budget.passed else 'FAIL'}")
            if result.waived:
                self.log(f"    required, but not held to the budget on this host: {result.waived}")

        targets = {planned.target.name: planned.target for planned in plan.variants}
        report = Report(
            edgeslim_version=__version__,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            recipe=recipe.model_dump(mode="json"),
            recipe_file=str(self.recipe_path),
            host={**read_host_profile().to_dict(), **isa_summary(), "python": platform.python_version(),
                  **_versions()},
            data=data.describe(),
            skipped=data.skipped,
            baseline=baseline.result,
            results=results,
            targets={name: target.describe() for name, target in targets.items()},
            run_seconds=round(time.perf_counter() - self._started, 1),
        )
        if self.searching:
            report.search = self._search_summary(report)
        write_atomic(self.out / "report.json", report.to_json())
        write_atomic(self.out / "report.md", render_markdown(report))
        return report

    def _search_summary(self, report: Report) -> dict:
        from edgeslim.benchmarks.pareto import COSTS, front, plot_fronts, quality

        results = report.results
        plots = plot_fronts(results, report.baseline, self.out, f"{self.recipe.name} on {results[0].target}")
        passing = [r for r in results if r.budget is not None and r.budget.passed]
        chosen = min(passing, key=lambda r: r.latency_ms.p50) if passing else None
        return {
            "candidates": len(results),
            "quality": quality(results[0])[1],
            "fronts": {axis: [r.name for r in front(results, cost)] for axis, (cost, _) in COSTS.items()},
            "chosen": chosen.name if chosen else None,
            "chosen_reason": "fastest p50 among the candidates that meet the target budget" if chosen
            else "no candidate meets the target budget",
            "plots": [p.name for p in plots],
        }


def _task(result) -> str:
    """The run's task metrics for the log line: the modality's metrics and each probe's kNN top-1."""
    acc = result.accuracy
    parts = [f"{m.short or m.label} {m.value}" for m in acc.metrics]
    for probe in acc.probes:
        drop = f" ({-probe.knn_top1_drop:+.2f} vs teacher)" if probe.knn_top1_drop is not None else ""
        parts.append(f"kNN top-1 ({probe.label}) {probe.knn_top1:.2f}{drop}")
    return ", ".join(parts) or "no task metric"


def _speedup(result) -> str:
    if result.speedup_vs_baseline is None:
        return "estimated"
    spread = result.speedup_spread
    return f"{result.speedup_vs_baseline:.2f}x, IQR {spread.q1:.2f}-{spread.q3:.2f} over {spread.rounds} rounds"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("torch", "transformers", "onnx", "onnxruntime", "openvino", "nncf", "litert-torch", "ai-edge-litert"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def default_out_dir(recipe: Recipe) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{recipe.name}"


def run_recipe(recipe: Recipe, recipe_path: Path, out_dir: Path | None = None, log=print,
               search: bool = False, resume: bool = False) -> Report:
    """Run the recipe's targets, or with search=True its search grid.

    resume=True continues an interrupted run in `out_dir`: finished distillations and their
    checkpoints come from the cache (EDGESLIM_CACHE), everything else is rebuilt."""
    if search:
        recipe = recipe.for_search()
    if not recipe.targets:
        raise RecipeError(f"recipe {recipe.name!r} has no targets; it has a search section: use `edgeslim search`")
    plan = plan_recipe(recipe)  # a wrong chain fails here, before any model loads; planned once per run
    require(plan.extras(), f"recipe {recipe.name!r}")
    out_dir = Path(out_dir) if out_dir else default_out_dir(recipe)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not resume:
            raise OutputError(f"output folder {out_dir} is not empty; choose another with --out, "
                                "or pass --resume to continue an interrupted run there")
        if (out_dir / "report.json").exists():
            raise OutputError(f"{out_dir} holds a finished run (report.json); nothing to resume")
    return Runner(recipe, plan, Path(recipe_path), out_dir, log, searching=search).run()
