"""report.json schema (`edgeslim.report/2`) and the Markdown rendering of a report.

The pydantic models below are the schema: `Report.model_validate_json(text)` validates a
report, and `Report.model_json_schema()` gives the JSON Schema. A report is self-describing:
each task metric carries its name and label, each probe its data and label set, so nothing here
knows a modality, a data set or a metric by name. Reports of `edgeslim.report/1` (one probe and
the text metric as fixed fields) still load: they are read into the same lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

REPORT_SCHEMA = "edgeslim.report/2"
READABLE_SCHEMAS = ("edgeslim.report/1", REPORT_SCHEMA)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# A time a run took: finite and above zero (a NaN, 0 or negative p50 would pass for a speed-up).
Milliseconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Timing(_Model):
    """Percentiles of one timed loop (warm-up first), and where and how it ran."""

    p50: Milliseconds
    p90: Milliseconds
    p95: Milliseconds
    p99: Milliseconds
    mean: Milliseconds | None = None
    batch: int
    threads: int
    runs: int
    warmup: int | None = None
    seconds: float | None = None
    kind: Literal["measured", "estimated"]
    where: str  # the machine measured on, or the model an estimate comes from
    background_cpu_cores: float | None = None
    load_avg_1m: float | None = None


class Latency(_Timing):
    seq_len: int | None  # inputs of varying length (text): tokens per row; else None (the model's input size)
    what: str | None = None  # what one timed run covers


class RealLengthLatency(_Timing):
    """Latency on real sentences (no padding to a fixed length), per batch size."""

    batches: int  # distinct batches cycled through
    tokens_per_sentence_mean: float
    sentences_from: str


class ProbeAccuracy(_Model):
    """A labelled task scored on the embeddings: kNN top-1 and a linear probe, train -> test."""

    train: str
    test: str
    label: str = "label"  # which label set of the corpora (intent, class, digit, speaker...)
    train_items: int
    test_items: int
    knn_k: int
    knn_top1: float  # x100
    linear_probe_top1: float  # x100; ridge regression on one-hot labels, closed form
    test_disjoint_from_calibration: bool
    # The teacher's kNN top-1 minus this model's, in points (same probe, same run); None for the teacher.
    knn_top1_drop: float | None = None


class TaskMetric(_Model):
    """One task metric of the run's modality (its name and label come from the modality), as scored here."""

    name: str
    label: str
    short: str = ""  # the table's column header
    value: float | None  # null: could not be measured
    higher_is_better: bool = True
    data: str = ""


class Accuracy(_Model):
    teacher_cosine_mean: float
    teacher_cosine_min: float
    eval_set: str
    eval_sentences: int  # items of eval_set (sentences, images, clips)
    disjoint_from_calibration: bool
    overlap_with_calibration: int
    metrics: list[TaskMetric] = Field(default_factory=list)
    probes: list[ProbeAccuracy] = Field(default_factory=list)  # the first is the one budgets bound

    @model_validator(mode="before")
    @classmethod
    def _from_report1(cls, data):
        """edgeslim.report/1 kept one probe and the modalities' metrics in fixed fields."""
        if isinstance(data, dict) and "metrics" not in data and "probes" not in data:
            from edgeslim.modalities import MODALITIES

            data = dict(data)
            probe = data.pop("probe", None)
            data["probes"] = [probe] if probe is not None else []
            for modality in MODALITIES.values():
                data = modality.upgrade_report1(data)
        return data

    @property
    def probe(self) -> ProbeAccuracy | None:
        return self.probes[0] if self.probes else None

    def metric(self, name: str) -> float | None:
        return next((m.value for m in self.metrics if m.name == name), None)


class SpeedupSpread(_Model):
    """Teacher p50 / bundle p50 from interleaved rounds (teacher, bundle, teacher, bundle...)
    on one pinned core: the median ratio and its interquartile range over the rounds."""

    median: float
    q1: float
    q3: float
    rounds: int
    runs_per_round: int
    teacher_p50_ms: float
    bundle_p50_ms: float
    cpu: int | None = None  # the core both ran on


class BudgetCheck(_Model):
    name: str
    limit: float
    value: float | None
    passed: bool | None  # null: could not be measured here
    comparison: Literal["<=", ">="]


class BudgetVerdict(_Model):
    passed: bool
    checks: list[BudgetCheck]
    unverified: list[str] = Field(default_factory=list)


class DeviceMeasurement(_Model):
    """A measurement from the device (`edgeslim bench --on`, then `edgeslim report
    add-measurement`) that replaced the build's estimate in `latency_ms`; the estimate is kept."""

    device: dict  # the device's identity: machine, arch, cores, ISA, kernel, OS, Python, packages
    on: str | None = None  # the ssh URL it was benched through; None for a JSON written on the device
    measured_at: str
    estimate: Latency  # what `latency_ms` held before: the target's estimate
    measured_over_estimate: float  # measured p50 / estimated p50: how far off the estimate model was
    build_host_peak_rss_mb: float  # the build host's figure that the device's peak RSS replaced
    health: dict | None = None  # the bundle's health check on the device (cosine to the build's reference)


class BenchResult(_Model):
    """What `edgeslim bench --json` writes (runtime/bench.py), here or through `--on`."""

    bundle: str
    bundle_id: str
    signed_by: str | None = None
    target: str
    created: str
    latency_ms: Latency
    operating_point: str
    providers: list[str]
    peak_rss_mb: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    device: dict
    health: dict | None = None
    on: str | None = None  # the device URL, for `bench --on`
    slot: str | None = None  # the deployed slot benched, if it was one


class Result(_Model):
    name: str
    target: str
    backend: str
    bundle: str | None
    size_mb: float
    latency_ms: Latency
    latency_real_ms: list[RealLengthLatency] = Field(default_factory=list)
    peak_rss_mb: float
    accuracy: Accuracy
    # baseline p50 / this p50, same run, same input, same threads; None for estimated latency
    # (an estimate for another device divided by a host measurement would mix the two).
    speedup_vs_baseline: float | None
    speedup_spread: SpeedupSpread | None = None
    budget: BudgetVerdict | None = None
    required: bool = False
    # Why this required variant's verdict does not decide the run on this host (Target.waiver).
    waived: str | None = None
    providers: list[str] = Field(default_factory=list)
    steps: list[dict] = Field(default_factory=list)
    # The device's own estimator's figures (Vela: cycles, SRAM/DRAM/flash, CPU fallbacks).
    device_estimate: dict | None = None
    bundle_id: str | None = None  # name@digest of the published bundle (not in its own manifest)
    device_measurement: DeviceMeasurement | None = None
    # Wall seconds this run spent on it: build (steps + export), measure (latency, accuracy,
    # references), interleaved (the same-run speedup rounds). Where a run's time goes.
    seconds: dict[str, float] | None = None


class Report(_Model):
    schema_: Literal["edgeslim.report/1", "edgeslim.report/2"] = Field(REPORT_SCHEMA, alias="schema")
    edgeslim_version: str
    created: str
    recipe: dict
    recipe_file: str
    host: dict
    data: dict
    skipped: list[str] = Field(default_factory=list)  # evaluations not run, and how to enable them
    baseline: Result
    results: list[Result]
    search: dict | None = None  # fronts, chosen bundle and plots of `edgeslim search`
    # Per target of the run: its device profile, latency kind and the variant its profile favours.
    targets: dict[str, dict] = Field(default_factory=dict)
    run_seconds: float | None = None  # the whole run, wall clock

    @field_validator("host", "recipe")
    @classmethod
    def _named(cls, value: dict) -> dict:
        if "name" in value and not isinstance(value["name"], str):
            raise ValueError(f"name must be a string, got {type(value['name']).__name__}")
        return value

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


@dataclass(frozen=True)
class TaskAxis:
    """The accuracy axis runs are compared on: what it reads from a result and the budget check
    it matches."""

    key: str
    label: str
    read: Callable[["Result"], float]
    budget_check: str


def task_axis(results: list[Result]) -> TaskAxis:
    """The run's own task metric: its modality's first metric when every result has it (text:
    a sentence-similarity Spearman); else kNN top-1 of its first probe; else cosine to the teacher (x100)."""
    first = results[0].accuracy.metrics[:1]
    if first and all(r.accuracy.metric(first[0].name) is not None for r in results):
        name = first[0].name
        return TaskAxis(name, first[0].label, lambda r: r.accuracy.metric(name), name)
    if all(r.accuracy.probe is not None for r in results):
        probe = results[0].accuracy.probe
        return TaskAxis(f"knn:{probe.test}:{probe.label}", f"kNN top-1 (k={probe.knn_k}, {probe.label}) on "
                        f"{probe.test}, %", lambda r: r.accuracy.probe.knn_top1, "knn_top1_drop")
    return TaskAxis("cosine", "cosine to teacher x100", lambda r: 100 * r.accuracy.teacher_cosine_mean,
                    "teacher_cosine_mean")


def _fmt(value, digits=2, suffix="") -> str:
    if value is None:
        return "n/a"
    if digits == 2 and 0 < abs(value) < 0.01:  # a few microseconds: keep two significant digits
        return f"{value:.2g}{suffix}"
    return f"{value:.{digits}f}{suffix}"


def _speedup_text(result: Result) -> str:
    if result.speedup_vs_baseline is None:
        return "-"
    spread = result.speedup_spread
    return f"{result.speedup_vs_baseline:.2f}x" + (f" (IQR {spread.q1:.2f}-{spread.q3:.2f})" if spread else "")


def verdict_text(result: Result) -> str:
    if result.budget is None:
        return "-"
    text = "PASS" if result.budget.passed else "FAIL"
    if result.budget.passed and result.budget.unverified:
        text += "*"
    if not result.required:
        return text
    return text + (" (required, waived on this host)" if result.waived else " (required)")


def check_text(check: BudgetCheck) -> str:
    """One budget check as `name value <= limit`."""
    return f"{check.name} {_fmt(check.value, 3)} {check.comparison} {check.limit:g}"


def verdict_reason(result: Result) -> str:
    """One line that says why a bundle passed or failed: each check with its value and limit."""
    if result.budget is None:
        return f"{result.name}: no budget"
    checks = "; ".join(
        check_text(c) + ("" if c.passed else (" not measured" if c.passed is None else " MISSED"))
        for c in result.budget.checks)
    verdict = "PASS" if result.budget.passed else "FAIL"
    waived = f" [waived on this host: {result.waived}]" if result.waived else ""
    return f"{result.name} ({result.target}) {verdict}: {checks}{waived}"


def required_missed(report: Report) -> list[Result]:
    """The required results that missed their budget and decide the run's exit status."""
    return [r for r in report.results if r.required and not r.waived and not r.budget.passed]


def _columns(report: Report) -> list[tuple[str, object]]:
    """The accuracy columns this report has: each task metric, then kNN / linear-probe top-1 of
    each probe (labelled by the probe's label set when there are several)."""
    results = [report.baseline, *report.results]
    columns, seen = [], []
    for r in results:
        for m in r.accuracy.metrics:
            if m.name not in seen:
                seen.append(m.name)
                columns.append((m.short or m.label, lambda r, name=m.name: _fmt(r.accuracy.metric(name))))
    probes = max((len(r.accuracy.probes) for r in results), default=0)
    for n in range(probes):
        first = next(r.accuracy.probes[n] for r in results if len(r.accuracy.probes) > n)
        suffix = f" ({first.label})" if probes > 1 else ""

        def read(r, n=n, field="knn_top1"):
            return _fmt(getattr(r.accuracy.probes[n], field), 1) if len(r.accuracy.probes) > n else "n/a"

        columns += [(f"kNN top-1{suffix}", read), (f"probe top-1{suffix}",
                                                   lambda r, n=n: read(r, n, "linear_probe_top1"))]
    return columns


def table_header(report: Report) -> list[str]:
    return ["variant", "target", "backend", "p50 ms", "p95 ms", "latency", "size MB", "RSS MB", "cos teacher",
            *[name for name, _ in _columns(report)], "speedup", "verdict"]


def table_rows(report: Report) -> list[list[str]]:
    rows = []
    columns = _columns(report)
    for r in [report.baseline, *report.results]:
        rows.append([
            r.name, r.target, r.backend, _fmt(r.latency_ms.p50), _fmt(r.latency_ms.p95), r.latency_ms.kind,
            _fmt(r.size_mb, 1), _fmt(r.peak_rss_mb, 0), _fmt(r.accuracy.teacher_cosine_mean, 4),
            *[read(r) for _, read in columns],
            _speedup_text(r), verdict_text(r),
        ])
    return rows


def _int8_note(host: dict) -> str:
    if "int8_dot_product" not in host:  # reports written before the field existed
        return ""
    cap = f", oneDNN capped at {host['onednn_isa_cap']} (ONEDNN_MAX_CPU_ISA)" if host.get("onednn_isa_cap") else ""
    return f"; int8 dot product for oneDNN/OpenVINO: {'yes' if host['int8_dot_product'] else 'no'}{cap}"


def render_markdown(report: Report) -> str:
    b = report.baseline.latency_ms
    lines = [
        f"# edgeslim report: {report.recipe.get('name')}",
        "",
        f"Created {report.created} by edgeslim {report.edgeslim_version} from `{report.recipe_file}`.",
        f"Host: {report.host.get('name')}, {report.host.get('cores')} cores, ISA {', '.join(report.host.get('isa_features', []))}"
        + _int8_note(report.host) + ".",
        "",
        f"Latency: batch {b.batch}, {f'{b.seq_len} tokens' if b.seq_len else 'one input of the model size each'}, "
        f"{b.threads} thread(s), "
        f"warm-up then >= {b.runs} runs; "
        f"{b.what or ''}. Each model runs in its own process; peak RSS is that process's.",
        "",
        "| " + " | ".join(table_header(report)) + " |",
        "|" + "---|" * len(table_header(report)),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    lines += ["", "`*` passed every check that could run; some could not (see below).", ""]
    if report.targets:
        lines += ["## Targets", ""]
        for name, t in report.targets.items():
            profile = t["profile"]
            default = f" Default variant: {t['default_variant']}." if t.get("default_variant") else ""
            lines.append(f"- **{name}**: {profile['name']} ({profile['source']} profile), latency {t['latency_kind']}. "
                         f"{profile.get('notes', '')}.{default}")
        lines.append("")
    lines += ["## Data", ""]
    for key, value in report.data.items():
        lines.append(f"- {key}: {value}")
    if report.skipped:
        lines += ["", "## Skipped evaluations", ""] + [f"- {s}" for s in report.skipped]
    lines += ["", "## Budget checks", ""]
    for r in report.results:
        if r.budget is None:
            continue
        checks = "; ".join(f"{check_text(c)}: {'ok' if c.passed else ('n/a' if c.passed is None else 'MISS')}"
                           for c in r.budget.checks)
        lines.append(f"- **{r.name}** ({r.target}): {checks}")
        if r.waived:
            lines.append(f"  - required, but waived on this host: {r.waived}")
    if report.search:
        search = report.search
        study = search.get("study")
        if study is None:  # a report of the grid search before it became an Optuna study
            lines += ["", "## Search", "", f"{search['candidates']} candidates, every one built and measured. "
                      f"Accuracy axis: {search['quality']}.", ""]
        else:
            states = ", ".join(f"{n} {state.lower()}" for state, n in study["trials"].items())
            sampler = study["sampler"]
            sampler_text = sampler["kind"] + (f" ({sampler['trials']} distinct candidates, seed {sampler['seed']})"
                                              if sampler.get("trials") else "")
            lines += ["", "## Search", "",
                      f"Optuna study `{study['name']}` ({study['storage']}), sampler {sampler_text}: "
                      f"{search['candidates']} candidates, {len(report.results)} measured; trials: {states}. "
                      f"{study['built']} candidates built, {study['from_store']} trials read the store. "
                      f"Workers: {', '.join(study['workers'])}. Wall time {study['wall_seconds']:.0f} s. "
                      f"Accuracy axis: {search['quality']}.", ""]
            lines.append(f"- Pareto front of the study (accuracy up; p50 latency and size down): "
                         f"{', '.join(search['fronts']['study'])}")
        for axis, names in search["fronts"].items():
            if axis != "study":
                lines.append(f"- Pareto front, {axis} vs accuracy: {', '.join(names)}")
        lines.append(f"- chosen: **{search['chosen']}** ({search['chosen_reason']})")
        for name, reason in (search.get("pruned") or {}).items():
            lines.append(f"- pruned after its first look: {name}: {reason}")
        for name, reason in (search.get("failed") or {}).items():
            lines.append(f"- failed: {name}: {reason}")
        lines += [""] + [f"![{p}]({p})" for p in search["plots"] if p.endswith(".png")]
    lines += ["", "## Latency detail (ms)", "", "| variant | p50 | p90 | p95 | p99 | runs | background load (cores) |",
              "|---|---|---|---|---|---|---|"]
    for r in [report.baseline, *report.results]:
        lat = r.latency_ms
        if lat.kind == "estimated":
            lines.append(f"| {r.name} | {_fmt(lat.p50)} | - | - | - | {lat.where} | - |")  # where says "estimated: ..."
            continue
        lines.append(f"| {r.name} | {lat.p50:.2f} | {lat.p90:.2f} | {lat.p95:.2f} | {lat.p99:.2f} | {lat.runs} | "
                     f"{_fmt(lat.background_cpu_cores)} |")
    timed = [r for r in [report.baseline, *report.results] if r.seconds]
    if report.run_seconds is not None and timed:
        lines += ["", f"## Where the run's {report.run_seconds:.0f} s went", "",
                  "| variant | build s | measure s | interleaved rounds s |", "|---|---|---|---|"]
        for r in timed:
            sec = r.seconds
            lines.append(f"| {r.name} | {_fmt(sec.get('build'), 0)} | {_fmt(sec.get('measure'), 0)} | "
                         f"{_fmt(sec.get('interleaved'), 0)} |")
        lines += ["", "The rest is loading the evaluation data and the teacher, and writing the bundles."]
    on_device = [r for r in report.results if r.device_measurement]
    if on_device:
        lines += ["", "## Measured on devices (replacing the estimates)", "",
                  "| variant | device | measured p50 ms | p95 ms | runs | estimated p50 ms | measured / estimated | "
                  "health check |", "|---|---|---|---|---|---|---|---|"]
        for r in on_device:
            m, lat = r.device_measurement, r.latency_ms
            device = m.device
            health = (m.health or {})
            health_text = ("ok" if health.get("ok") else "FAILED") + (
                f", min cos {min(health['cosines']):.4f}" if health.get("cosines") else "") if health else "-"
            lines.append(f"| {r.name} | {device.get('machine')}, {device.get('cores')} cores, "
                         f"{device.get('kernel')} | {lat.p50:.2f} | {lat.p95:.2f} | {lat.runs} | {_fmt(m.estimate.p50)} | "
                         f"{m.measured_over_estimate:.2f}x | {health_text} |")
        lines += ["", "The estimate each measurement replaced is kept in the report (`device_measurement.estimate`); "
                  "the ratio is how far the roofline or compiler estimate was from the device."]
    npu = [r for r in report.results if r.device_estimate]
    if npu:
        lines += ["", "## NPU compiler estimates", "",
                  "| variant | accelerator | cycles | NPU clock MHz | SRAM KiB | DRAM KiB | flash KiB | CPU operators |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in npu:
            d = r.device_estimate
            flash = d.get("on_chip_flash_used_kib", 0) + d.get("off_chip_flash_used_kib", 0)
            lines.append(f"| {r.name} | {d['accelerator']} ({d['system_config']}, {d['memory_mode']}) | "
                         f"{d['cycles_total']:,} | {d['npu_clock_mhz']:.0f} | {d['sram_used_kib']:.0f} | "
                         f"{d['dram_used_kib']:.0f} | {flash:.0f} | {d['cpu_operators']} |")
        for r in npu:
            for line in r.device_estimate["cpu_operator_list"]:
                lines.append(f"- {r.name} runs on the CPU: {line[:200]}")
    real = [(r.name, x) for r in [report.baseline, *report.results] for x in r.latency_real_ms]
    if real:
        lines += ["", f"## Latency on real sentence lengths ({real[0][1].sentences_from}, no fixed-length padding)", "",
                  "| variant | batch | tokens/sentence | p50 ms | p95 ms | p99 ms | per sentence p50 ms |",
                  "|---|---|---|---|---|---|---|"]
        for name, x in real:
            lines.append(f"| {name} | {x.batch} | {x.tokens_per_sentence_mean:.1f} | {x.p50:.2f} | {x.p95:.2f} | "
                         f"{x.p99:.2f} | {x.p50 / x.batch:.3f} |")
    return "\n".join(lines) + "\n"
