import json
import tarfile

import pytest

from edgeslim.benchmarks.report import REPORT_SCHEMA, Report
from edgeslim.cli import EXIT_BUDGET, main
from edgeslim.errors import EdgeslimError, StepError
from edgeslim.pipeline import load_eval_data, run_recipe
from edgeslim.recipe import load_recipe
from edgeslim.runtime import load, read_manifest

from conftest import TINY_RECIPE, write_recipe

VARIANTS = ["ort-fp32", "ort-int8-dynamic", "ort-int8-static", "ov-int8", "student-int8", "small-vocab-student"]


def test_run_exits_zero_when_required_bundles_pass(tiny_run):
    assert tiny_run["exit_code"] == 0


def test_report_json_validates_against_the_schema(tiny_run):
    raw = json.loads((tiny_run["out"] / "report.json").read_text())
    assert raw["schema"] == REPORT_SCHEMA
    report = Report.model_validate(raw)
    assert [r.name for r in report.results] == VARIANTS
    assert report.baseline.backend == "PyTorch fp32" and report.baseline.speedup_vs_baseline is None
    for result in [report.baseline, *report.results]:
        latency = result.latency_ms
        assert latency.kind == "measured" and "this host" in latency.where
        assert (latency.batch, latency.seq_len, latency.threads) == (1, 64, 1)
        assert latency.runs >= 20 and latency.p50 <= latency.p90 <= latency.p95 <= latency.p99
        assert result.peak_rss_mb > 0 and result.size_mb > 0
        assert result.accuracy.eval_set == "wordnet-heldout" and result.accuracy.eval_sentences == 200
        assert result.accuracy.disjoint_from_calibration
        assert result.accuracy.metrics == []  # the tiny recipe turns STS-B off
    for result in report.results:
        assert result.budget is not None and {c.name for c in result.budget.checks} >= {"p95_ms", "size_mb"}
        # The speedup comes from interleaved rounds, not from the two separate timings.
        spread = result.speedup_spread
        assert spread.rounds == 3 and spread.q1 <= spread.median <= spread.q3
        assert result.speedup_vs_baseline == spread.median > 0
        assert spread.teacher_p50_ms > 0 and spread.bundle_p50_ms > 0
    probe = report.baseline.accuracy.probe
    if probe is not None:  # Banking77 present: the probe runs on every model
        assert probe.train == "banking77-train" and probe.test_items == 300 and probe.test_disjoint_from_calibration
        assert 0 <= probe.knn_top1 <= 100 and all(r.accuracy.probe is not None for r in report.results)
    assert report.results[1].required and not report.results[0].required
    # Where the run's time went: every variant's build, measure and interleaved seconds.
    assert report.run_seconds > 0 and report.baseline.seconds["measure"] > 0
    for result in report.results:
        assert set(result.seconds) == {"build", "measure", "interleaved"} and result.seconds["measure"] > 0
    assert "## Where the run's" in (tiny_run["out"] / "report.md").read_text()
    markdown = (tiny_run["out"] / "report.md").read_text()
    assert "| ort-int8-dynamic | x86-cpu | onnxruntime |" in markdown


def test_int8_bundles_stay_close_to_the_teacher(tiny_run):
    report = Report.model_validate_json((tiny_run["out"] / "report.json").read_text())
    for result in report.results:
        assert result.accuracy.teacher_cosine_mean >= 0.99, result.name


def test_bundles_are_complete_and_archived(tiny_run):
    bundles = tiny_run["out"] / "bundles"
    assert sorted(p.name for p in bundles.iterdir() if p.is_dir()) == sorted(VARIANTS)
    assert not list(bundles.glob(".staging-*")) and not (tiny_run["out"] / ".work").exists()
    for name in VARIANTS:
        manifest = read_manifest(bundles / name)
        assert set(manifest.files) | {"manifest.json"} == {p.name for p in (bundles / name).iterdir()}
        (export,) = [s for s in manifest.steps if s["step"] == "export_onnx"]
        assert export["parity_max_abs_diff"] < 1e-4
        assert manifest.benchmark["latency_ms"]["kind"] == "measured"
        assert manifest.calibration["corpus"] == "wordnet-calibration"
        assert "MODEL_CARD.md" in manifest.files
        with tarfile.open(bundles / f"{name}.tar.gz") as tar:
            assert sorted(tar.getnames())[0] == name
            assert f"{name}/manifest.json" in tar.getnames()
    static = read_manifest(bundles / "ort-int8-static").steps[-1]
    assert static["step"] == "int8_static" and static["cosine_to_float_model"] >= 0.99


def test_budget_miss_of_a_required_bundle_exits_3(tmp_path, capsys):
    recipe = TINY_RECIPE.replace("max_size_mb: 5", "max_size_mb: 0.001").replace(
        "      - {name: ort-fp32, backend: onnxruntime}\n", "").split("      - {name: ort-int8-static")[0]
    path = write_recipe(tmp_path, recipe)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == EXIT_BUDGET
    captured = capsys.readouterr()
    assert "ort-int8-dynamic (x86-cpu)" in captured.err
    assert "FAIL (required)" in captured.out
    report = Report.model_validate_json((tmp_path / "out" / "report.json").read_text())
    (size_check,) = [c for c in report.results[0].budget.checks if c.name == "size_mb"]
    assert size_check.passed is False and size_check.limit == 0.001


def test_a_required_openvino_int8_miss_is_waived_without_an_int8_dot_product(tmp_path, capsys, monkeypatch):
    """ONEDNN_MAX_CPU_ISA=AVX2 gives OpenVINO the kernels of a CPU without VNNI (an AMD Zen 3):
    its int8 is no faster than float there, so the run does not fail on it, and says why."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    recipe = (TINY_RECIPE.split("    variants:")[0].replace("required: [ort-int8-dynamic]", "required: [ov-int8]")
              .replace("max_size_mb: 5", "max_size_mb: 0.001")
              + "    variants:\n      - {name: ov-int8, backend: openvino, steps: [{step: openvino_int8, calibration_samples: 16}]}\n")
    path = write_recipe(tmp_path, recipe)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "FAIL (required, waived on this host)" in out
    assert "required: ov-int8 (x86-cpu) FAIL: " in out and "size_mb" in out and "MISSED" in out
    assert "jit_gemm" in out
    report = Report.model_validate_json((tmp_path / "out" / "report.json").read_text())
    (result,) = report.results
    assert result.required and not result.budget.passed and "no int8 dot product" in result.waived
    assert report.host["onednn_isa_cap"] == "AVX2" and report.host["int8_dot_product"] is False
    assert "waived on this host" in (tmp_path / "out" / "report.md").read_text()


def test_a_failing_step_leaves_no_partial_bundle_and_no_report(tmp_path):
    recipe_text = TINY_RECIPE.split("      - {name: ort-int8-dynamic")[0] + (
        "      - {name: ort-int8-dynamic, backend: onnxruntime, steps: [{step: int8_dynamic}]}\n"
        "      - {name: hopeless, backend: onnxruntime, steps: [{step: int8_static, cosine_floor: 1.0, "
        "calibration_samples: 16, sensitivity_samples: 8}]}\n"
    )
    recipe, path = load_recipe(write_recipe(tmp_path, recipe_text))
    out = tmp_path / "out"
    with pytest.raises(StepError, match="cannot reach cosine 1.0"):
        run_recipe(recipe, path, out, log=lambda _: None)
    assert sorted(p.name for p in (out / "bundles").iterdir()) == [
        "ort-fp32", "ort-fp32.tar.gz", "ort-int8-dynamic", "ort-int8-dynamic.tar.gz"]
    assert not (out / "report.json").exists() and not (out / ".work").exists()
    load(out / "bundles" / "ort-fp32")  # what was finished is intact


def test_non_empty_output_folder_is_refused(tmp_path):
    (tmp_path / "something").write_text("x")
    recipe, path = load_recipe(write_recipe(tmp_path, TINY_RECIPE))
    with pytest.raises(EdgeslimError, match="not empty"):
        run_recipe(recipe, path, tmp_path)


def test_without_shared_data_evaluations_fall_back_and_say_how_to_enable(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESLIM_DATA", str(tmp_path))
    recipe, _ = load_recipe("default")
    data = load_eval_data(recipe, "text")
    assert data.agreement.name == "wordnet-heldout" and data.metrics == []
    assert len(data.skipped) == 3 and all("EDGESLIM_DATA" in note for note in data.skipped)
    assert data.probe is None and any("banking77" in note for note in data.skipped)
    assert not set(data.agreement_texts) & set(data.calibration.texts)


def test_verify_and_targets_commands(tiny_run, tmp_path, capsys):
    bundle = tiny_run["out"] / "bundles" / "ov-int8"
    assert main(["verify", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "checksums ok" in out and "x86-cpu / openvino" in out and "norm 1.0000" in out
    assert main(["verify", str(tmp_path)]) == 2
    assert "BundleError" in capsys.readouterr().err
    assert main(["targets"]) == 0
    assert "x86-cpu" in capsys.readouterr().out


def test_distilled_variant_records_its_student_and_data_disjointness(tiny_run):
    manifest = read_manifest(tiny_run["out"] / "bundles" / "student-int8")
    distilled, exported, quantized = manifest.steps
    assert [distilled["step"], exported["step"], quantized["step"]] == ["distill", "export_onnx", "int8_dynamic"]
    assert distilled["layers"] == 1 and distilled["steps"] == 400 // 16
    assert distilled["disjoint_from_evaluation"] and distilled["dropped_overlapping_evaluation"] > 0
    assert exported["parity_max_abs_diff"] < 1e-4  # parity against the student, not the teacher
    report = Report.model_validate_json((tiny_run["out"] / "report.json").read_text())
    student = [r for r in report.results if r.name == "student-int8"][0]
    assert student.accuracy.teacher_cosine_mean < 1.0


SEARCH_RECIPE = """
name: tiny-search
model: {source: tiny-random, family: bert, max_seq_length: 64}
data: {calibration: wordnet-calibration, agreement: [wordnet-heldout], agreement_samples: 100, stsb_split: null, probe: null}
benchmark: {warmup: 2, min_runs: 10, speedup_rounds: 3, speedup_runs_per_round: 5}
search:
  layers: [all, [1]]
  prune: [none, {heads: 0.5, ffn: 0.5}]
  quantization: [fp32, int8_dynamic]
  distill: {corpus: [wordnet], sentences: 200, batch_size: 16}
  budget: {seq_len: 64, p95_ms: 1000, max_size_mb: 0.15, min_teacher_cosine: 0.5}
"""


def test_search_measures_every_candidate_and_publishes_the_front(tmp_path, capsys):
    path = write_recipe(tmp_path, SEARCH_RECIPE)
    assert main(["run", str(path), "--out", str(tmp_path / "x")]) == 2  # no targets: run says use search
    assert "use `edgeslim search`" in capsys.readouterr().err
    out, published = tmp_path / "out", tmp_path / "published"
    assert main(["search", str(path), "--out", str(out), "--publish", str(published)]) == 0
    report = Report.model_validate_json((out / "report.json").read_text())
    search = report.search
    # Every candidate is settled: measured, or pruned after its first look because its size
    # already missed the budget (0.15 MB), a miss no latency can make up for.
    grid = {"teacher-fp32", "teacher-int8-dynamic", "teacher-h50f50-fp32", "teacher-h50f50-int8-dynamic",
            "l1-fp32", "l1-int8-dynamic", "l1-h50f50-fp32", "l1-h50f50-int8-dynamic"}
    names = {r.name for r in report.results}
    assert names | set(search["pruned"]) == grid and not names & set(search["pruned"]) and search["pruned"]
    for name, reason in search["pruned"].items():
        size = float(reason.split("size_mb ")[1].split(" ")[0])
        assert size > 0.15 and "(limit <= 0.15)" in reason, (name, reason)
    assert all(r.size_mb <= 0.15 for r in report.results)
    assert all(r.latency_ms.kind == "measured" for r in report.results)
    assert search["candidates"] == 8 and search["quality"] == "cosine to teacher x100"
    assert search["study"]["trials"] == {"COMPLETE": len(names), "PRUNED": len(search["pruned"])}
    pruned = read_manifest(out / "bundles" / "l1-h50f50-int8-dynamic").steps
    assert [s["step"] for s in pruned] == ["distill", "prune", "export_onnx", "int8_dynamic"]
    assert pruned[1]["layers_after"] == [{"heads": 2, "ffn": 32}] and pruned[1]["heal"]["steps"] > 0
    objectives = {"study": lambda r: (r.latency_ms.p50, r.size_mb), "latency": lambda r: (r.latency_ms.p50,),
                  "size": lambda r: (r.size_mb,)}
    for axis, costs in objectives.items():
        on_front = [r for r in report.results if r.name in search["fronts"][axis]]
        assert on_front
        for point in on_front:  # nothing beats a front point on every axis
            assert not any(all(a <= b for a, b in zip(costs(o), costs(point))) and
                           o.accuracy.teacher_cosine_mean > point.accuracy.teacher_cosine_mean and o is not point
                           and costs(o) != costs(point) for o in report.results)
    assert search["chosen"] in names
    assert sorted(p.name for p in published.iterdir()) == sorted(
        ["report.json", "report.md", "trials.json", "pareto-latency.png", "pareto-latency.svg", "pareto-size.png",
         "pareto-size.svg"])
    text = (published / "report.md").read_text()
    assert "## Search" in text and "Optuna study `tiny-search`" in text and "pruned after its first look" in text


def test_vocab_pruned_bundle_ships_its_own_tokenizer(tiny_run):
    import onnx
    from tokenizers import Tokenizer

    bundle = tiny_run["out"] / "bundles" / "small-vocab-student"
    steps = [s["step"] for s in read_manifest(bundle).steps]
    assert steps == ["vocab_prune", "distill", "export_onnx", "int8_dynamic"]
    vocab = Tokenizer.from_file(str(bundle / "tokenizer.json")).get_vocab_size()
    assert vocab <= 200
    graph = onnx.load(str(bundle / "model.onnx")).graph
    tables = [i.dims[0] for i in graph.initializer if len(i.dims) == 2 and i.dims[1] == 32 and i.dims[0] > 100]
    assert vocab in tables
    vectors = load(bundle).encode(["The ornithorhynchus paddled past a xylophonist.", "plain words"])
    assert vectors.shape == (2, 32)
