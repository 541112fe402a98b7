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
from edgeslim.benchmarks.report import Report, Result, render_markdown
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


class Hopeless(Exception):
    """A candidate whose first, cheap measurement (size, accuracy) already fails a budget limit
    that no latency can make up for; `first_look` holds those figures."""

    def __init__(self, reason: str, first_look: dict):
        super().__init__(reason)
        self.reason, self.first_look = reason, first_look


class RunSession:
    """What one process of a run (or one worker of a search) sets up once and uses for every
    variant: the evaluation data, the teacher measured as the baseline, the builder (PyTorch-side
    prefixes cached across variants) and the measurer. `variant()` builds, measures and publishes
    one; `report()` assembles the run's report. Use as a context manager."""

    def __init__(self, recipe: Recipe, plan: Plan, recipe_path: Path, work: Path, log=print,
                 distill_dir: Path | None = None):
        from edgeslim.models import load_encoder

        self.recipe, self.plan, self.recipe_path, self.work, self.log = recipe, plan, recipe_path, work, log
        self.started = time.perf_counter()
        self.budgets = self._budgets(plan)  # planned before anything loaded: a wrong chain cost nothing
        self.budget = next(iter(self.budgets.values()))
        self.work.mkdir(parents=True, exist_ok=True)
        self.data = data = load_eval_data(recipe, plan.source.modality)
        # Real-length latency runs on the task's own items: the first task metric's when present.
        real_source, source_name = data.real_length_items
        real_texts = list(real_source[: recipe.benchmark.real_length_sentences])
        real_from = f"first {len(real_texts)} {data.modality.noun} of {source_name}"
        for note in data.skipped:
            log(f"  skipped: {note}")
        self.teacher = load_encoder(recipe.model)
        self.measurer = Measurer(recipe, data, real_texts, real_from, log)
        try:
            self.baseline = self.measurer.teacher(self.teacher, self.budget,
                                                  latency_input(self.teacher, data, self.budget.seq_len))
        except BaseException:
            self.measurer.close()
            raise
        log(f"    p50 {self.baseline.result.latency_ms.p50:.2f} ms, {_task(self.baseline.result)}")
        self.builder = Builder(self.teacher, data, work, recipe, recipe_path, log, distill_dir=distill_dir)
        self.required = {v.name for spec in recipe.targets for v in spec.variants if v.name in spec.required}

    def close(self) -> None:
        self.measurer.close()
        shutil.rmtree(self.work, ignore_errors=True)  # scratch only; bundles and reports are final

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

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

    def variant(self, planned, bundles: Path, prune_hopeless: bool = False) -> Result:
        """Build, measure and publish one planned variant as `bundles/<name>`. prune_hopeless:
        first a cheap measurement (size, accuracy); Hopeless, and nothing published, when it fails
        a budget limit that latency cannot change."""
        budget, data = self.budgets[planned.target.name], self.data
        build_started = time.perf_counter()
        built = self.builder.build(planned, budget, bundles)
        build_seconds = time.perf_counter() - build_started
        # Same text as the baseline's input, in this bundle's own token ids.
        bundle_input = latency_input(built.reader, data, budget.seq_len)
        first_look = None
        if prune_hopeless:
            first_look = self.measurer.first_look(built, budget, bundle_input, self.baseline)
            failed = [c for c in first_look.verdict.checks if c.passed is False]
            if failed:
                shutil.rmtree(built.staging, ignore_errors=True)
                reason = "; ".join(f"{c.name} {c.value} (limit {c.comparison} {c.limit})" for c in failed)
                raise Hopeless(reason, {"size_mb": first_look.size_mb,
                                        "accuracy": first_look.accuracy.model_dump(mode="json"),
                                        "build_seconds": round(build_seconds, 1)})
        result = self.measurer.bundle(built, planned, budget, bundle_input, self.baseline, planned.name in self.required,
                                      first_look=first_look)
        # The measured figures go into the bundle's one manifest, then it is published in one rename.
        (built.staging / MODEL_CARD).write_text(render_model_card(built.manifest, result.model_dump()), encoding="utf-8")
        references_started = time.perf_counter()
        references = device_references(built, data)
        result = result.model_copy(update={"seconds": {
            "build": round(build_seconds, 1),
            "measure": round(result.seconds["measure"] + time.perf_counter() - references_started, 1),
            "interleaved": result.seconds["interleaved"]}})
        write_manifest(built.staging, {**built.manifest, **references,
                                       "benchmark": result.model_dump(exclude={"steps", "bundle", "seconds"})})
        built.manifest_path.unlink()
        result = result.model_copy(update={"bundle_id": bundle_identity(read_manifest(built.staging)),
                                           "bundle": str(bundles / planned.name)})
        publish(built.staging, bundles / planned.name)
        seconds = result.seconds
        self.log(f"    built in {seconds['build']:.0f} s, measured in {seconds['measure']:.0f} s + "
                 f"{seconds['interleaved']:.0f} s of interleaved rounds")
        self.log(f"    p50 {result.latency_ms.p50:.2f} ms ({_speedup(result)}), {result.size_mb:.1f} MB, "
                 f"cos {result.accuracy.teacher_cosine_mean:.4f}, {_task(result)}, "
                 f"budget {'PASS' if result.budget.passed else 'FAIL'}")
        if result.waived:
            self.log(f"    required, but not held to the budget on this host: {result.waived}")
        return result

    def report(self, results: list[Result]) -> Report:
        from edgeslim.targets.host import isa_summary, read_host_profile

        targets = {planned.target.name: planned.target for planned in self.plan.variants}
        return Report(
            edgeslim_version=__version__,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            recipe=self.recipe.model_dump(mode="json"),
            recipe_file=str(self.recipe_path),
            host={**read_host_profile().to_dict(), **isa_summary(), "python": platform.python_version(),
                  **_versions()},
            data=self.data.describe(),
            skipped=self.data.skipped,
            baseline=self.baseline.result,
            results=results,
            targets={name: target.describe() for name, target in targets.items()},
            run_seconds=round(time.perf_counter() - self.started, 1),
        )


class Runner:
    """`edgeslim run`: every variant of the recipe's targets, in one process."""

    def __init__(self, recipe: Recipe, plan: Plan, recipe_path: Path, out_dir: Path, log=print):
        self.recipe, self.plan, self.recipe_path, self.out, self.log = recipe, plan, recipe_path, out_dir, log

    def run(self) -> Report:
        self.log(f"edgeslim {__version__}: recipe {self.recipe.name} ({self.recipe_path}) -> {self.out}")
        bundles = self.out / "bundles"
        bundles.mkdir(parents=True, exist_ok=True)
        with RunSession(self.recipe, self.plan, self.recipe_path, self.out / ".work", self.log) as session:
            report = session.report([session.variant(planned, bundles) for planned in self.plan.variants])
        write_report(report, self.out)
        return report


def write_report(report: Report, out: Path) -> None:
    write_atomic(out / "report.json", report.to_json())
    write_atomic(out / "report.md", render_markdown(report))


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
               resume: bool = False) -> Report:
    """Run the recipe's targets (`edgeslim search` runs a search grid: `edgeslim.study`).

    resume=True continues an interrupted run in `out_dir`: finished distillations and their
    checkpoints come from the cache (EDGESLIM_CACHE), everything else is rebuilt."""
    if not recipe.targets:
        raise RecipeError(f"recipe {recipe.name!r} has no targets; it has a search section: use `edgeslim search`")
    plan = plan_recipe(recipe)  # a wrong chain fails here, before any model loads; planned once per run
    require(plan.extras(), f"recipe {recipe.name!r}")
    out_dir = Path(out_dir) if out_dir else default_out_dir(recipe)
    check_out_dir(out_dir, resume)
    return Runner(recipe, plan, Path(recipe_path), out_dir, log).run()


def check_out_dir(out_dir: Path, resume: bool, resumable: str = "an interrupted run") -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not resume:
            raise OutputError(f"output folder {out_dir} is not empty; choose another with --out, "
                              f"or pass --resume to continue {resumable} there")
        if (out_dir / "report.json").exists():
            raise OutputError(f"{out_dir} holds a finished run (report.json); nothing to resume")
