"""Pareto fronts over measured results, and their plots."""

from __future__ import annotations

from pathlib import Path

from edgeslim.benchmarks.report import Result


def quality(result: Result) -> tuple[float, str]:
    """The modality's first task metric when measured (text: a Spearman), else cosine to the
    teacher (x100), with its label."""
    for metric in result.accuracy.metrics[:1]:
        if metric.value is not None:
            return metric.value, metric.label
    return 100 * result.accuracy.teacher_cosine_mean, "cosine to teacher x100"


def front(results: list[Result], cost) -> list[Result]:
    """Results no other result beats on both cost (lower is better) and quality (higher)."""
    points = sorted(results, key=lambda r: (cost(r), -quality(r)[0]))
    kept, best = [], float("-inf")
    for result in points:
        if quality(result)[0] > best:
            kept.append(result)
            best = quality(result)[0]
    return kept


COSTS = {
    "latency": (lambda r: r.latency_ms.p50, "p50 latency, ms"),
    "size": (lambda r: r.size_mb, "bundle size, MB"),
}


def plot_fronts(results: list[Result], baseline: Result, out_dir: Path, title: str) -> list[Path]:
    """One PNG and one SVG per cost axis. Points are numbered and named in a key beside the plot
    (students sit too close together for labels); the front is blue and joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    numbered = sorted(results, key=lambda r: (-quality(r)[0], r.name))
    number = {r.name: n for n, r in enumerate(numbered, start=1)}
    for axis, (cost, label) in COSTS.items():
        fig, ax = plt.subplots(figsize=(9.5, 5))
        on_front = front(results, cost)
        for result in results:
            x, y = cost(result), quality(result)[0]
            marker = "o" if result.latency_ms.kind == "measured" else "^"
            ax.scatter(x, y, marker=marker, s=40, color="tab:blue" if result in on_front else "tab:gray", zorder=3)
            ax.annotate(str(number[result.name]), (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
        ax.plot([cost(r) for r in on_front], [quality(r)[0] for r in on_front], color="tab:blue", lw=1)
        ax.scatter(cost(baseline), quality(baseline)[0], marker="*", s=120, color="tab:red", zorder=4)
        ax.annotate("teacher (PyTorch fp32)", (cost(baseline), quality(baseline)[0]), fontsize=7,
                    xytext=(4, -10), textcoords="offset points", color="tab:red")
        lat = baseline.latency_ms
        where = f" (batch {lat.batch}, {lat.seq_len} tokens, {lat.threads} thread(s))" if axis == "latency" else ""
        kinds = sorted({r.latency_ms.kind for r in results})
        ax.set_xlabel(f"{label}{where}; {' and '.join(kinds)}" + (" (triangles: estimated)" if len(kinds) > 1 else ""))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_ylabel(quality(results[0])[1])
        ax.set_title(f"{title}: {axis} vs accuracy, Pareto front in blue", fontsize=10)
        ax.grid(alpha=0.3)
        key = "\n".join(f"{n:>2} {'*' if r in on_front else ' '} {r.name}" for n, r in enumerate(numbered, start=1))
        fig.text(0.71, 0.5, key + "\n\n* on the front", fontsize=7, family="monospace", va="center", ha="left")
        fig.tight_layout(rect=(0, 0, 0.7, 1))
        for suffix in ("png", "svg"):
            path = out_dir / f"pareto-{axis}.{suffix}"
            fig.savefig(path, dpi=130)
            written.append(path)
        plt.close(fig)
    return written
