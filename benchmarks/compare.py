"""`edgeslim compare REPORT... [--html OUT]`: results of any number of runs side by side.

Reports may come from different recipes, targets, machines and modalities. Each run is scored
by its own task metric (its modality's first metric, e.g. a Spearman for text; else kNN
top-1 on its first probe, e.g. images and audio; else cosine to the teacher), and runs sharing a
metric share charts: a text run and an image run sit on one
page, each in its own section. Every point keeps its latency kind: measured points are filled
circles, estimated ones hollow triangles, and the page says that the two are different kinds of
figure. The Pareto front (lower latency or size, higher accuracy) is drawn per section; budgets
are drawn per target as dashed limits.
The HTML page is one file: charts are embedded PNGs, no scripts or fonts from the network.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edgeslim.benchmarks.report import Report, Result, TaskAxis, _fmt, task_axis
from edgeslim.errors import ReportError
from edgeslim.outputs import write_atomic


TaskMetric = TaskAxis  # a run's accuracy axis (benchmarks/report.py)


def task_metric(report: Report) -> TaskAxis:
    """The run's own task metric (see `task_axis`)."""
    return task_axis([report.baseline, *report.results])


@dataclass(frozen=True)
class Point:
    run: str  # which report it came from
    result: Result
    is_teacher: bool
    metric: TaskMetric | None = None

    @property
    def label(self) -> str:
        return f"{self.result.name} [{self.run.split(':')[0]}]"


MAX_REPORT_BYTES = 64 << 20


def load_report(path: Path) -> Report:
    path = Path(path)
    file = path / "report.json" if path.is_dir() else path
    try:
        if file.stat().st_size > MAX_REPORT_BYTES:
            raise ReportError(f"{file} is over {MAX_REPORT_BYTES >> 20} MB; not an edgeslim report")
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ReportError(f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start}); not an edgeslim report") \
            from None
    except OSError as exc:
        raise ReportError(f"cannot read report {file}: {exc.strerror or exc}; pass a report.json or a run folder "
                          "holding one") from None
    try:
        return Report.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ReportError(f"{file} is not an edgeslim report (edgeslim.report/1 or /2): {where}: {first['msg']}") from None


def run_label(report: Report, index: int) -> str:
    return f"{index + 1}:{report.recipe.get('name', '?')}@{report.host.get('name', '?')[:24]}"


def collect(reports: list[Report]) -> list[Point]:
    points = []
    for index, report in enumerate(reports):
        label, metric = run_label(report, index), task_metric(report)
        points.append(Point(label, report.baseline, True, metric))
        points += [Point(label, r, False, metric) for r in report.results]
    return points


def sections(points: list[Point]) -> dict[str, tuple[TaskMetric, list[Point]]]:
    """Points grouped by task metric, in the order the runs came."""
    grouped: dict[str, tuple[TaskMetric, list[Point]]] = {}
    for p in points:
        grouped.setdefault(p.metric.key, (p.metric, []))[1].append(p)
    return grouped


COST_AXES = {
    "latency": (lambda r: r.latency_ms.p50, "p50 latency, ms (log scale)", "p95_ms"),
    "size": (lambda r: r.size_mb, "bundle size, MB (log scale)", "size_mb"),
}


def pareto_front(points: list[Point], cost, quality) -> list[Point]:
    """Points no other point beats on both cost (lower) and quality (higher)."""
    kept, best = [], float("-inf")
    for p in sorted(points, key=lambda p: (cost(p.result), -quality(p.result))):
        if quality(p.result) > best:
            kept.append(p)
            best = quality(p.result)
    return kept


def table(points: list[Point], fronts: dict[str, list[Point]]) -> tuple[list[str], list[list[str]]]:
    """One row per point; `task metric` is the run's own (`task_axis`)."""
    header = ["run", "variant", "target", "backend", "p50 ms", "latency", "measured/estimated", "size MB",
              "cos teacher", "task metric", "value", "budget", "front"]
    rows = []
    for p in points:
        r = p.result
        budget = "-" if r.budget is None else ("PASS" if r.budget.passed else "FAIL")
        on = [axis for axis, f in fronts.items() if p in f]
        ratio = f"{r.device_measurement.measured_over_estimate:.2f}x" if r.device_measurement else "-"
        rows.append([p.run, r.name, r.target, r.backend, _fmt(r.latency_ms.p50), r.latency_ms.kind, ratio,
                     f"{r.size_mb:.1f}", f"{r.accuracy.teacher_cosine_mean:.4f}", p.metric.label,
                     f"{p.metric.read(r):.2f}", budget, ",".join(on) or "-"])
    return header, rows


def all_fronts(points: list[Point]) -> dict[str, list[Point]]:
    """Per cost axis, the union of each section's Pareto front."""
    fronts = {axis: [] for axis in COST_AXES}
    for metric, members in sections(points).values():
        for axis, (cost, _, _) in COST_AXES.items():
            fronts[axis] += pareto_front(members, cost, metric.read)
    return fronts


def _chart(points: list[Point], axis: str, quality, quality_label: str, quality_check: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    # Names come from reports: "$...$" in a variant name is text, never mathtext to parse.
    with matplotlib.rc_context({"text.parse_math": False}):
        return _draw_chart(points, axis, quality, quality_label, quality_check)


def _draw_chart(points: list[Point], axis: str, quality, quality_label: str, quality_check: str) -> bytes:
    import matplotlib.pyplot as plt

    cost, cost_label, cost_check = COST_AXES[axis]
    targets = sorted({p.result.target for p in points})
    colours = {t: plt.get_cmap("tab10")(i % 10) for i, t in enumerate(targets)}
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for p in points:
        r, colour = p.result, colours[p.result.target]
        x, y = cost(r), quality(r)
        if r.latency_ms.kind == "measured" or axis == "size":
            ax.scatter(x, y, marker="*" if p.is_teacher else "o", s=110 if p.is_teacher else 45, color=colour, zorder=3)
        else:
            ax.scatter(x, y, marker="^", s=55, facecolors="none", edgecolors=colour, linewidths=1.5, zorder=3)
        ax.annotate(p.label, (x, y), fontsize=6.5, xytext=(4, 3), textcoords="offset points")
    front = pareto_front(points, lambda r: cost(r), quality)
    ax.plot([cost(p.result) for p in front], [quality(p.result) for p in front], color="black", lw=1.2,
            ls="-", zorder=2, label="Pareto front (all points)")
    # Budgets: each target's limit on this axis and on accuracy, dashed in the target's colour.
    drawn = set()
    for p in points:
        if p.result.budget is None:
            continue
        for c in p.result.budget.checks:
            key = (p.result.target, c.name, c.limit)
            if key in drawn:
                continue
            drawn.add(key)
            colour = colours[p.result.target]
            if c.name == cost_check:
                ax.axvline(c.limit, color=colour, ls="--", lw=0.9, alpha=0.8)
                ax.annotate(f"{p.result.target} budget", (c.limit, ax.get_ylim()[0]), rotation=90, fontsize=6,
                            color=colour, xytext=(2, 4), textcoords="offset points")
            elif c.name == quality_check and quality_check != "knn_top1_drop":  # a drop is not a level
                limit = c.limit * (100 if quality_check == "teacher_cosine_mean" else 1)
                ax.axhline(limit, color=colour, ls="--", lw=0.9, alpha=0.8)
    for t in targets:
        ax.scatter([], [], marker="s", color=colours[t], label=f"target {t}")
    ax.scatter([], [], marker="o", color="gray", label="measured")
    ax.scatter([], [], marker="^", facecolors="none", edgecolors="gray", label="estimated (not measured)")
    ax.scatter([], [], marker="*", color="gray", s=90, label="teacher (PyTorch fp32, measured)")
    ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel(quality_label)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_title(f"{axis} vs accuracy; dashed: budgets per target")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def render_html(reports: list[Report], sources: list[str]) -> str:
    points = collect(reports)
    header, rows = table(points, all_fronts(points))
    esc = html.escape
    chart_html = []
    for number, (metric, members) in enumerate(sections(points).values()):
        runs_here = ", ".join(dict.fromkeys(p.run for p in members))
        chart_html.append(f"<h2>{esc(metric.label)}: {esc(runs_here)}</h2>")
        for axis in COST_AXES:
            png = base64.b64encode(_chart(members, axis, metric.read, metric.label, metric.budget_check)).decode()
            chart_html.append(f'<h3>Accuracy vs {axis}</h3><img id="chart-{axis}-{number}" alt="{esc(metric.label)} '
                              f'vs {axis} chart" src="data:image/png;base64,{png}">')
    quality_label = "; ".join(metric.label for metric, _ in sections(points).values())
    runs = "".join(f"<li><b>{esc(run_label(r, i))}</b>: {esc(sources[i])}, created {esc(r.created)}, host "
                   f"{esc(str(r.host.get('name')))}, edgeslim {esc(r.edgeslim_version)}</li>"
                   for i, r in enumerate(reports))
    kinds = sorted({p.result.latency_ms.kind for p in points})
    body_rows = "".join(
        f"<tr class=\"{esc(row[5])}\">" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    estimated = [p for p in points if p.result.latency_ms.kind == "estimated"]
    where = "".join(f"<li>{esc(p.label)}: {esc(p.result.latency_ms.where or '')}</li>" for p in estimated)
    on_device = [p for p in points if p.result.device_measurement]
    devices = "".join(
        f"<li>{esc(p.label)}: {esc(p.result.latency_ms.where)}; p50 {p.result.latency_ms.p50:.3g} ms measured, "
        f"{p.result.device_measurement.estimate.p50:.3g} ms estimated ({esc(p.result.device_measurement.estimate.where)}): "
        f"<b>measured / estimated {p.result.device_measurement.measured_over_estimate:.2f}x</b></li>" for p in on_device)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgeslim compare</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #bbb; padding: 3px 7px; text-align: left; }}
th {{ background: #eee; }}
tr.estimated td {{ font-style: italic; background: #fff8e6; }}
img {{ max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }}
</style></head>
<body>
<h1>edgeslim compare: {len(reports)} report(s), {len(points)} points</h1>
<ul>{runs}</ul>
<p>Latency kinds present: {esc(', '.join(kinds))}. <b>Measured</b> figures were timed on the machine named
in their run; <b>estimated</b> ones (italic rows, hollow triangles) come from a model of the device and
are not measurements. Each run is scored by its own task metric ({esc(quality_label)}); runs that share
one share a section, and each section's Pareto front is drawn over its own points.</p>
{''.join(chart_html)}
<h2>All results</h2>
<table id="results"><thead><tr>{''.join(f'<th>{esc(h)}</th>' for h in header)}</tr></thead>
<tbody>{body_rows}</tbody></table>
<h2>How the estimated figures were made</h2>
<ul>{where or '<li>none</li>'}</ul>
<h2>Measured on devices, replacing an estimate</h2>
<ul id="device-measurements">{devices or '<li>none</li>'}</ul>
<script>
// Marks the page once both charts have decoded, so a headless browser can check they render.
window.addEventListener("load", function () {{
  var ok = Array.from(document.images).every(function (i) {{ return i.complete && i.naturalWidth > 0; }});
  document.body.setAttribute("data-charts-rendered", ok ? "yes" : "no");
  document.body.setAttribute("data-table-rows", document.querySelectorAll("#results tbody tr").length);
}});
</script>
</body></html>
"""


def compare(paths: list[Path], html_out: Path | None = None, force: bool = False) -> tuple[list[str], list[list[str]]]:
    """Table of all points; with html_out, also the self-contained page (written atomically; an
    existing file is replaced only with force)."""
    if not paths:
        raise ReportError("compare needs at least one report (report.json or a run folder)")
    reports = [load_report(p) for p in paths]
    points = collect(reports)
    if html_out is not None:
        write_atomic(Path(html_out), render_html(reports, [str(p) for p in paths]), force=force)
    return table(points, all_fronts(points))
