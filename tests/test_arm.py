"""Raspberry Pi targets: LiteRT export and runtime, estimated latency, on the tiny model."""

import json

import numpy as np
import pytest

from edgeslim.calibration_data import load_corpus
from edgeslim.compress import TorchModel, LiteRtConvertConfig, LiteRtInt8DynamicConfig, StepContext, apply_step
from edgeslim.runtime import load
from edgeslim.targets import get_target
from edgeslim.targets.roofline import estimate_latency
from conftest import compile_firmware_check, encode_in_fresh_process, needs_sshd

def test_arm_run_labels_latency_estimated_and_measures_accuracy(arm_run):
    assert arm_run["exit_code"] == 0
    results = {r["name"]: r for r in arm_run["report"]["results"]}
    assert set(results) == {"litert-fp32", "litert-int8-dynamic", "ort-fp32"}
    for r in results.values():
        assert r["target"] == "rpi5"
        assert r["latency_ms"]["kind"] == "estimated" and "roofline on Raspberry Pi 5" in r["latency_ms"]["where"]
        assert r["speedup_vs_baseline"] is None and r["latency_real_ms"] == []
        assert r["latency_ms"]["p50"] > 0
    # The baseline stays measured on the host: the two kinds are never mixed in one figure.
    assert arm_run["report"]["baseline"]["latency_ms"]["kind"] == "measured"
    assert results["litert-fp32"]["accuracy"]["teacher_cosine_mean"] > 0.9999
    assert results["litert-int8-dynamic"]["accuracy"]["teacher_cosine_mean"] > 0.95
    assert results["litert-int8-dynamic"]["size_mb"] < results["litert-fp32"]["size_mb"]
    # int8 peak is higher on the A76 (sdot), so the int8 estimate is lower.
    assert results["litert-int8-dynamic"]["latency_ms"]["p50"] < results["litert-fp32"]["latency_ms"]["p50"]
    markdown = (arm_run["out"] / "report.md").read_text()
    assert "estimated" in markdown
    # The report says what the profile favours and why (sdot on the A76).
    assert arm_run["report"]["targets"]["rpi5"]["default_variant"] == "litert-int8-dynamic"
    assert "## Targets" in markdown and "sdot" in markdown


def test_litert_bundle_pads_to_its_static_length_without_changing_results(arm_run):
    bundle = arm_run["out"] / "bundles" / "litert-fp32"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["backend"] == "litert" and manifest["model_file"] == "model.tflite"
    encoder = load(bundle)
    texts = ["a short one", "a noticeably longer sentence with several more words in it"]
    together = encoder.encode(texts)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_litert_rejects_sequences_longer_than_the_graph(arm_run):
    from edgeslim.errors import InputError

    encoder = load(arm_run["out"] / "bundles" / "litert-fp32")
    ids = np.ones((1, 65), np.int64)
    with pytest.raises(InputError, match="exceeds the bundle's max_seq_length 64"):
        encoder.embed_tokens(ids, ids)


def test_litert_steps_produce_int8_weights(tiny_model, tmp_path):
    texts = load_corpus("wordnet-calibration").texts
    ctx = StepContext(tmp_path, texts, tiny_model, log=lambda _: None)
    fp32, record = apply_step(TorchModel(tiny_model), LiteRtConvertConfig(parity_samples=4), ctx)
    assert record["parity_min_cosine"] > 0.9999 and record["input_dtype"] == "int32"
    int8, record = apply_step(fp32, LiteRtInt8DynamicConfig(), ctx)
    assert record["size_mb_after"] < record["size_mb_before"]


def test_roofline_is_compute_bound_for_minilm_shapes_and_scales_with_threads():
    rpi5 = get_target("rpi5").profile()
    macs = 1.43e9  # all-MiniLM-L6-v2 at 128 tokens
    one = estimate_latency(rpi5, macs, 23_000_000, int8=True, threads=1)
    four = estimate_latency(rpi5, macs, 23_000_000, int8=True, threads=4)
    assert one.bound == "compute" and one.ms == pytest.approx(1000 * macs / (rpi5.peak_int8_macs_per_s / 4), rel=1e-3)
    assert four.ms < one.ms
    rpi4 = get_target("rpi4").profile()
    assert estimate_latency(rpi4, macs, 23_000_000, True, 1).ms > one.ms  # no sdot, lower clock


def test_mac_count_matches_the_closed_form(tiny_model):
    cfg = tiny_model.module.config
    s, h, f, layers = 16, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    expected = layers * (s * (4 * h * h + 2 * h * f) + 2 * s * s * h)
    assert tiny_model.family.macs(tiny_model.module, s) == expected


def test_litert_runtime_imports_no_heavy_framework(arm_run):
    out = encode_in_fresh_process(arm_run["out"] / "bundles" / "litert-int8-dynamic")
    assert out.strip().endswith("[]"), out
    assert "LiteRT" in out


@pytest.mark.aarch64
@pytest.mark.parametrize("variant", ["litert-int8-dynamic", "ort-fp32"])
def test_bundle_runs_on_an_arm64_userland_without_torch(arm_run, variant, capsys):
    """The real thing: Debian arm64 python3.11 under qemu-user, aarch64 wheels, no torch."""
    from edgeslim.cli import main

    code = main(["verify", str(arm_run["out"] / "bundles" / variant), "--arch", "aarch64", "--sentences", "8"])
    out = capsys.readouterr().out
    print(out)
    assert "ran on aarch64" in out and "importable there: none" in out
    assert code == 0 and "PASS" in out


def test_firmware_export_compiles_and_checks_itself(arm_run, tmp_path, capsys):
    import subprocess

    from edgeslim.cli import main

    bundle = arm_run["out"] / "bundles" / "litert-int8-dynamic"
    out = tmp_path / "fw"
    assert main(["export-firmware", str(bundle), "--out", str(out)]) == 0
    symbol = "litert_int8_dynamic"
    header = (out / f"{symbol}.h").read_text()
    assert "INPUT0_DIMS {1, 64}" in header and "ARENA_BYTES_ESTIMATE" in header and "tokenizer.json" in header
    exe = compile_firmware_check(out, symbol)
    ok = subprocess.run([str(exe), str(bundle / "model.tflite")], capture_output=True, text=True)
    assert ok.returncode == 0 and "identical to the .tflite" in ok.stdout, ok.stdout
    # A flipped byte in the array is caught at start-up.
    source = (out / f"{symbol}.c").read_text()
    first = source.index("0x", source.index("{"))
    flipped = source[:first] + ("0x01" if source[first:first + 4] != "0x01" else "0x02") + source[first + 4:]
    (out / f"{symbol}.c").write_text(flipped)
    exe = compile_firmware_check(out, symbol, werror=False)
    bad = subprocess.run([str(exe)], capture_output=True, text=True)
    assert bad.returncode == 1 and "FAIL: sha256" in bad.stdout


def test_firmware_export_refuses_a_non_litert_bundle(arm_run, tmp_path):
    from edgeslim.errors import BundleError
    from edgeslim.firmware import export_firmware

    with pytest.raises(BundleError, match="takes a LiteRT bundle"):
        export_firmware(arm_run["out"] / "bundles" / "ort-fp32", tmp_path / "fw")
    assert not (tmp_path / "fw").exists()


def test_report_host_is_this_machine_not_the_target(arm_run):
    assert arm_run["report"]["host"]["source"] == "host"
    assert "Raspberry" not in arm_run["report"]["host"]["name"]


def test_litert_bundle_is_refused_with_only_tflite_runtime_installed(arm_run, monkeypatch):
    """tflite-runtime cannot run these graphs correctly: the runtime says so instead of trying."""
    import importlib.util

    from edgeslim.errors import BackendError
    from edgeslim.runtime.backends import open_backend
    from edgeslim.runtime.bundle import BundleReader

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ai_edge_litert" else (object() if name == "tflite_runtime"
                                                                                 else real(name, *a)))
    bundle = arm_run["out"] / "bundles" / "litert-fp32"
    with pytest.raises(BackendError, match="tflite-runtime is installed but is not used"):
        open_backend("litert", BundleReader(bundle), 1)


@needs_sshd
def test_bench_on_a_device_replaces_the_estimate_in_the_report_and_on_the_compare_page(arm_run, sshd, tmp_path,
                                                                                      capsys):
    """Deploy the Pi bundle to a device over real sshd, `bench --on` it there (its runtime, its
    slot), and `report add-measurement`: the row becomes measured, the estimate stays beside it with
    the ratio, in report.json, report.md and the compare page; a bundle not deployed is benched from
    an upload that is removed after; a measurement of another bundle or operating point is refused."""
    import shutil
    import sys

    from edgeslim.benchmarks.report import Report
    from edgeslim.cli import main
    from edgeslim.errors import ReportError
    from edgeslim.benchmarks.measurements import add_measurement

    run = tmp_path / "run"
    shutil.copytree(arm_run["out"], run)
    bundle = run / "bundles" / "litert-int8-dynamic"
    before = {r["name"]: r for r in json.loads((run / "report.json").read_text())["results"]}
    estimate = before["litert-int8-dynamic"]["latency_ms"]
    assert estimate["kind"] == "estimated"
    root = tmp_path / "device"
    root.mkdir()
    url = f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}{root}"
    device = ["--identity", str(sshd["identity"]), "--known-hosts", str(sshd["known_hosts"]),
              "--remote-python", sys.executable]
    assert main(["deploy", str(bundle), url, *device]) == 0
    capsys.readouterr()
    bench_json = tmp_path / "bench.json"
    assert main(["bench", str(bundle), "--on", url, *device, "--runs", "100", "--seconds", "0",
                 "--json", str(bench_json)]) == 0
    out = capsys.readouterr().out
    print(out)
    measured = json.loads(bench_json.read_text())
    assert measured["slot"] == measured["bundle_id"] and measured["on"] == url
    assert f"--on {url}" in measured["latency_ms"]["where"] and measured["latency_ms"]["runs"] >= 100
    assert measured["device"]["cores"] >= 1 and measured["device"]["kernel"] and "ai-edge-litert" in measured[
        "device"]["packages"]
    assert measured["health"]["ok"] and min(measured["health"]["cosines"]) > 0.999
    assert "health check: ok" in out and "device: " in out

    assert main(["report", "add-measurement", str(run), str(bench_json)]) == 0
    out = capsys.readouterr().out
    assert "latency now measured on" in out and "measured / estimated" in out
    report = Report.model_validate_json((run / "report.json").read_text())
    row = next(r for r in report.results if r.name == "litert-int8-dynamic")
    assert row.latency_ms.kind == "measured" and row.latency_ms.p50 == measured["latency_ms"]["p50"]
    assert row.device_measurement.estimate.kind == "estimated" and row.device_measurement.estimate.p50 == estimate["p50"]
    ratio = row.device_measurement.measured_over_estimate
    assert ratio == round(measured["latency_ms"]["p50"] / estimate["p50"], 3)
    rss = next(c for c in row.budget.checks if c.name == "peak_rss_mb")  # checked again with the device's figure
    assert rss.value == measured["peak_rss_mb"] == row.peak_rss_mb
    assert row.device_measurement.build_host_peak_rss_mb == before["litert-int8-dynamic"]["peak_rss_mb"]
    assert f"{ratio:.2f}x" in (run / "report.md").read_text()
    html = tmp_path / "compare.html"
    assert main(["compare", str(run), "--html", str(html)]) == 0
    page = html.read_text()
    assert f"measured / estimated {ratio:.2f}x" in page and f"<td>{ratio:.2f}x</td>" in page
    capsys.readouterr()

    # Not deployed: benched from an upload, which the device removes.
    other = run / "bundles" / "litert-fp32"
    other_json = tmp_path / "other.json"
    assert main(["bench", str(other), "--on", url, *device, "--runs", "100", "--seconds", "0",
                 "--json", str(other_json)]) == 0
    assert json.loads(other_json.read_text())["slot"] is None
    assert not list(root.glob(".incoming-*"))
    assert main(["bench", str(other), *device]) == 2  # ssh options without --on: refused, not ignored
    assert "apply with --on ssh://" in capsys.readouterr().err
    with pytest.raises(ReportError, match="another operating point: threads 2"):
        wrong = json.loads(other_json.read_text())
        wrong["latency_ms"]["threads"] = 2
        (tmp_path / "wrong.json").write_text(json.dumps(wrong))
        add_measurement(run, tmp_path / "wrong.json")
    foreign = json.loads(other_json.read_text())
    foreign["bundle_id"] = "litert-fp32@0123456789abcdef"
    (tmp_path / "foreign.json").write_text(json.dumps(foreign))
    with pytest.raises(ReportError, match="no row of .* is that bundle"):
        add_measurement(run, tmp_path / "foreign.json")
    assert Report.model_validate_json((run / "report.json").read_text()) == report  # refusals changed nothing
