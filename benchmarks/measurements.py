"""`edgeslim report add-measurement REPORT BENCH.json`: a measurement from the device replaces
the estimate of that bundle's row.

BENCH.json is what `edgeslim bench --json` wrote, on the device itself or through `--on
ssh://...`. The row is found by the bundle's identity (name + manifest digest): a measurement of
another build of the same variant is refused. It must be at the report's operating point (batch,
sequence length, threads). The row's `latency_ms` becomes the measurement (`kind: measured`,
where: the device), its peak RSS the device's, its budget verdict is checked again; the estimate
and the build host's RSS are kept in `device_measurement` with the measured / estimated ratio,
which the report and the compare page show. report.json (and report.md beside it) are rewritten
atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from edgeslim.benchmarks.budget import recheck
from edgeslim.benchmarks.compare import load_report
from edgeslim.benchmarks.report import BenchResult, DeviceMeasurement, Report, Result, render_markdown
from edgeslim.errors import BundleError, ReportError
from edgeslim.outputs import write_atomic

__all__ = ["add_measurement", "load_bench"]

MAX_BENCH_BYTES = 1 << 20
MEASURED_WHAT = "model forward + pooling on prepared input, on the device (edgeslim bench)"


def load_bench(path: Path) -> BenchResult:
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BENCH_BYTES:
            raise ReportError(f"{path}: over {MAX_BENCH_BYTES} bytes; not an edgeslim bench result")
        return BenchResult.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read bench result {path}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ReportError(f"{path} is not an `edgeslim bench --json` result: {'.'.join(map(str, first['loc']))}: "
                          f"{first['msg']}") from None


def _identity(result: Result, run_dir: Path) -> str | None:
    """The row's bundle identity: recorded in the report, else read from its bundle if still there."""
    if result.bundle_id:
        return result.bundle_id
    from edgeslim.runtime.bundle import read_manifest
    from edgeslim.runtime.encoder import bundle_identity

    for folder in (Path(result.bundle) if result.bundle else None, run_dir / "bundles" / result.name):
        if folder is not None and (folder / "manifest.json").is_file():
            try:
                return bundle_identity(read_manifest(folder))
            except BundleError:
                return None
    return None


def add_measurement(report_path: Path, bench_path: Path) -> tuple[Report, Result]:
    """Put the measurement into the report (written in place); the report and the updated row."""
    report_path = Path(report_path)
    report_file = report_path / "report.json" if report_path.is_dir() else report_path
    report = load_report(report_file)
    bench = load_bench(bench_path)
    identities = {index: _identity(r, report_file.parent) for index, r in enumerate(report.results)}
    matches = [index for index, identity in identities.items() if identity == bench.bundle_id]
    if not matches:
        known = ", ".join(f"{report.results[i].name}={v or 'unknown'}" for i, v in identities.items())
        raise ReportError(f"{bench_path} measured bundle {bench.bundle_id}; no row of {report_file} is that bundle "
                          f"(its rows: {known}). Bench the bundle this run built.")
    index = matches[0]
    row = report.results[index]
    if bench.latency_ms.kind != "measured":
        raise ReportError(f"{bench_path}: latency kind {bench.latency_ms.kind!r}; only a measurement replaces an estimate")
    if bench.target != row.target:
        raise ReportError(f"{bench_path}: bundle for target {bench.target}, the row is for {row.target}")
    estimate = row.device_measurement.estimate if row.device_measurement else row.latency_ms
    if estimate.kind != "estimated":
        raise ReportError(f"{row.name} ({row.target}) was measured on the build host, which is its device; only "
                          "estimated rows take a device measurement")
    point = ("batch", "seq_len", "threads")
    differs = [f"{key} {getattr(bench.latency_ms, key)} (report: {getattr(estimate, key)})" for key in point
               if getattr(bench.latency_ms, key) != getattr(estimate, key)]
    if differs:
        raise ReportError(f"{bench_path} was measured at another operating point: {', '.join(differs)}; run edgeslim "
                          f"bench with --batch {estimate.batch} --threads {estimate.threads}"
                          + (f" --seq-len {estimate.seq_len}" if estimate.seq_len else ""))
    measurement = DeviceMeasurement(
        device=bench.device, on=bench.on, measured_at=bench.created, estimate=estimate,
        measured_over_estimate=round(bench.latency_ms.p50 / estimate.p50, 3),
        build_host_peak_rss_mb=(row.device_measurement.build_host_peak_rss_mb if row.device_measurement
                                else row.peak_rss_mb),
        health=bench.health)
    latency = bench.latency_ms.model_copy(update={"what": MEASURED_WHAT})
    updated = row.model_copy(update={"latency_ms": latency, "peak_rss_mb": bench.peak_rss_mb, "latency_real_ms": [],
                                     "device_measurement": measurement, "bundle_id": bench.bundle_id})
    updated = updated.model_copy(update={"budget": recheck(updated)})
    report.results[index] = updated
    report = Report.model_validate(json.loads(report.to_json()))  # the whole report, checked as it will be read
    write_atomic(report_file, report.to_json())
    markdown = report_file.with_name("report.md")
    if markdown.exists():
        write_atomic(markdown, render_markdown(report))
    return report, updated
