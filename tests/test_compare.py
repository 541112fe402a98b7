"""`edgeslim compare`: reports of different runs side by side; the HTML page in a real browser."""

import shutil
import subprocess

import pytest

from edgeslim.benchmarks.compare import collect, compare, load_report, pareto_front, sections
from edgeslim.errors import ReportError


def test_compare_table_covers_every_point_of_every_report(tiny_run, ethos_run, tmp_path, capsys):
    from edgeslim.cli import main

    assert main(["compare", str(tiny_run["out"]), str(ethos_run["out"] / "report.json"),
                 "--html", str(tmp_path / "compare.html")]) == 0
    out = capsys.readouterr().out
    reports = [load_report(tiny_run["out"]), load_report(ethos_run["out"])]
    for report in reports:
        for r in [report.baseline, *report.results]:
            assert r.name in out
    assert "estimated" in out and "measured" in out
    page = (tmp_path / "compare.html").read_text()
    # two charts (latency, size) per task-metric section
    assert page.count("data:image/png;base64,") == 2 * len(sections(collect(reports)))
    # Self-contained: nothing is fetched from anywhere.
    assert "http://" not in page and "https://" not in page and "<link" not in page


def test_pareto_front_keeps_only_undominated_points(tiny_run, ethos_run):
    points = collect([load_report(tiny_run["out"]), load_report(ethos_run["out"])])
    for metric, members in sections(points).values():
        quality = metric.read
        front = pareto_front(members, lambda r: r.latency_ms.p50, quality)
        assert front
        for p in members:
            if p in front:
                continue
            assert any(f.result.latency_ms.p50 <= p.result.latency_ms.p50 and quality(f.result) >= quality(p.result)
                       for f in front)


def test_compare_names_a_file_that_is_not_a_report(tmp_path):
    bad = tmp_path / "report.json"
    bad.write_text('{"schema": "edgeslim.report/1"}')
    with pytest.raises(ReportError, match="not an edgeslim report"):
        compare([bad], tmp_path / "out.html")
    with pytest.raises(ReportError, match="cannot read report"):
        compare([tmp_path / "missing.json"])
    assert not (tmp_path / "out.html").exists()


@pytest.mark.browser
def test_compare_page_renders_in_headless_chromium(tiny_run, ethos_run, tmp_path):
    """Debian's chromium opens the page: both charts decode, the table has every row; a screenshot is kept."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is part of the test set-up (apt-get install chromium), see the README"
    page = tmp_path / "compare.html"
    header, rows = compare([tiny_run["out"], ethos_run["out"]], page)
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'data-charts-rendered="yes"' in dom
    assert f'data-table-rows="{len(rows)}"' in dom
    shot = tmp_path / "compare.png"
    subprocess.run([*flags, "--window-size=1400,2400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000
    # Not a blank page: the screenshot has many distinct colours (charts, table shading).
    from PIL import Image

    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50
    kept = tmp_path.parent / "compare-screenshot.png"
    shutil.copyfile(shot, kept)
    print(f"screenshot: {kept}")
