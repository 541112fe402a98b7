"""What the red-team probe still found (issue 20's list), each closed with a typed error and a
test: an alias bomb, huge or non-finite numbers in recipes, reports that crashed `compare`, and a
--json path under a regular file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeslim.benchmarks.compare import compare, load_report
from edgeslim.cli import main
from edgeslim.errors import OutputError, RecipeError, ReportError
from edgeslim.recipe import load_recipe, parse_recipe


def _default_recipe_text() -> str:
    return load_recipe("default")[1].read_text()


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path, capsys):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]" for i in range(8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\n")  # 10**9 values in 9 short lines
    # refused from the composed node graph, before anything is expanded (it used to hang here)
    assert main(["recipe", "check", str(bomb)]) == 2
    assert "aliases expand to more than 100,000 values" in capsys.readouterr().err
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("a: &a [*a]\n")
    with pytest.raises(RecipeError):
        load_recipe(recursive)


def test_anchors_that_share_steps_still_work():
    for name in ("default", "image", "audio"):
        load_recipe(name)  # the packaged recipes use anchors for their shared steps


@pytest.mark.parametrize("edit, match", [
    (("min_runs: 100", "min_runs: " + "9" * 400), "min_runs: a number beyond"),
    (("min_runs: 100", "min_runs: 20000000"), "less than or equal to 10000000"),
    (("min_runs: 100", "min_runs: 100\n  min_seconds: .inf"), "min_seconds.*finite"),
])
def test_recipes_refuse_huge_and_infinite_numbers(edit, match):
    text = _default_recipe_text()
    assert edit[0] in text
    with pytest.raises(RecipeError, match=match):
        parse_recipe(text.replace(*edit), Path("probe.yaml"))


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_budgets_refuse_infinite_and_nan_limits(value):
    text = _default_recipe_text().replace("  - target: x86-cpu\n", f"  - target: x86-cpu\n    budget: {{p95_ms: {value}}}\n", 1)
    with pytest.raises(RecipeError, match="p95_ms.*finite"):
        parse_recipe(text, Path("probe.yaml"))


@pytest.fixture
def report_document(tiny_run) -> dict:
    return json.loads((tiny_run["out"] / "report.json").read_text())


def _write(tmp_path, document) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("host_name", [7, None])
def test_compare_refuses_a_report_whose_host_name_is_not_text(report_document, tmp_path, host_name):
    report_document["host"]["name"] = host_name
    with pytest.raises(ReportError, match="host: .*name must be a string"):
        load_report(_write(tmp_path, report_document))


@pytest.mark.parametrize("p50", [float("nan"), 0.0, -1.0])
def test_compare_refuses_a_p50_that_is_not_a_positive_time(report_document, tmp_path, p50):
    report_document["results"][0]["latency_ms"]["p50"] = p50
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report_document))  # json writes NaN as NaN, as a careless tool would
    with pytest.raises(ReportError, match="results.0.latency_ms.p50"):
        load_report(path)


def test_compare_draws_a_variant_name_that_looks_like_mathtext(report_document, tmp_path):
    report_document["results"][0]["name"] = r"$\undefinedmacro$"
    path = _write(tmp_path, report_document)
    header, rows = compare([path], tmp_path / "page.html")
    assert any(r"$\undefinedmacro$" in row for row in rows)
    assert "undefinedmacro" in (tmp_path / "page.html").read_text()


def test_bench_json_under_a_regular_file_is_an_output_error(tiny_bundle, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["bench", str(tiny_bundle), "--runs", "1", "--seconds", "0", "--json", str(blocker / "bench.json")]) == 2
    assert "a-file is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(OutputError, match="is a file, not a folder"):
        from edgeslim.outputs import write_atomic

        write_atomic(blocker / "deeper" / "x.json", "{}")
