"""Arm Ethos-U targets: integer encoder body, CPU prelude, Vela compile and estimates, on the tiny model."""

import json
import subprocess

import numpy as np
import pytest

from edgeslim.targets.base import ExportContext

from edgeslim.runtime import load
from conftest import compile_firmware_check, encode_in_fresh_process

def test_ethos_run_reports_vela_estimates_memory_and_no_cpu_fallback(ethos_run):
    assert ethos_run["exit_code"] == 0
    results = {r["name"]: r for r in ethos_run["report"]["results"]}
    for name, accelerator in (("npu-int16-mixed", "Ethos_U65_256"), ("u85-int8", "Ethos_U85_256")):
        r = results[name]
        latency, npu = r["latency_ms"], r["device_estimate"]
        assert latency["kind"] == "estimated" and latency["where"].startswith("estimated: Vela")
        assert npu["accelerator"] == accelerator and npu["cycles_total"] > 0
        assert latency["p50"] == pytest.approx(1000 * npu["cycles_total"] / (npu["npu_clock_mhz"] * 1e6), abs=1e-3)
        assert npu["cpu_operators"] == 0 and npu["cpu_operator_list"] == []
        assert npu["sram_used_kib"] > 0
        assert r["speedup_vs_baseline"] is None and r["latency_real_ms"] == []
    assert results["npu-int16-mixed"]["accuracy"]["teacher_cosine_mean"] >= 0.97
    markdown = (ethos_run["out"] / "report.md").read_text()
    assert "## NPU compiler estimates" in markdown and "Ethos_U65_256" in markdown


def test_ethos_bundle_holds_host_graph_vela_graph_and_prelude(ethos_run):
    bundle = ethos_run["out"] / "bundles" / "npu-int16-mixed"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["backend"] == "litert-body"
    for name in ("model.tflite", "model_vela.tflite", "prelude.npz", "vela_summary.csv", "tokenizer.json"):
        assert name in manifest["files"]
    step = manifest["steps"][-1]
    assert step["step"] == "npu_body_quantize" and step["activation_bits"]["*"] == 16
    assert "export_onnx" not in [s["step"] for s in manifest["steps"]]  # LiteRT traces PyTorch itself


def test_prelude_matches_the_models_embedding_block(tiny_model):
    import torch

    from edgeslim.compress.npu_body import _prelude_tables
    from edgeslim.runtime.prelude import embed_tokens

    encoder = tiny_model.exportable().model
    tables = _prelude_tables(encoder, "float32")
    ids, mask = tiny_model.tokenize(["the prelude runs on the cpu", "short"])
    hidden, additive = embed_tokens(tables, ids, mask)
    with torch.no_grad():
        ids_t = torch.from_numpy(ids)
        expected = encoder.embeddings(input_ids=ids_t, token_type_ids=torch.zeros_like(ids_t)).numpy()
    np.testing.assert_allclose(hidden, expected, atol=1e-5)
    assert additive.shape == (2, 1, 1, ids.shape[1]) and additive[1, 0, 0, -1] < 0 == additive[0, 0, 0, 0]


def test_npu_rewrites_keep_the_float_body(tiny_model):
    import torch

    from edgeslim.compress.npu_body import _npu_body

    rewritten, original = _npu_body(tiny_model.exportable().model)
    hidden = torch.randn(2, 16, tiny_model.hidden_size)
    mask = torch.zeros(2, 1, 1, 16)
    with torch.no_grad():
        np.testing.assert_allclose(rewritten(hidden, mask).numpy(), original(hidden, mask).numpy(), atol=2e-3)


def test_ethos_runtime_imports_no_heavy_framework(ethos_run):
    out = encode_in_fresh_process(ethos_run["out"] / "bundles" / "npu-int16-mixed")
    assert out.strip().endswith("[]"), out
    assert "int16 activations" in out


def test_ethos_bundle_encodes_batches_like_single_rows(ethos_run):
    encoder = load(ethos_run["out"] / "bundles" / "npu-int16-mixed")
    texts = ["a short one", "a noticeably longer sentence with several more words in it"]
    together = encoder.encode(texts)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_ethos_target_refuses_a_model_that_is_not_an_integer_body(tmp_path):
    from edgeslim.compress import OnnxModel
    from edgeslim.errors import TargetError
    from edgeslim.targets import get_target

    with pytest.raises(TargetError, match="add one of npu_body_quantize"):
        get_target("ethos-u55-128").export(OnnxModel(tmp_path / "model.onnx"), "litert-body", ExportContext(tmp_path, 64, 32))
    with pytest.raises(TargetError, match="allowed: litert-body"):
        get_target("ethos-u55-128").export(OnnxModel(tmp_path / "model.onnx"), "onnxruntime", ExportContext(tmp_path, 64, 32))


def test_ethos_firmware_export_flashes_the_vela_graph(ethos_run, tmp_path):
    from edgeslim.cli import main

    bundle = ethos_run["out"] / "bundles" / "npu-int16-mixed"
    out = tmp_path / "fw"
    assert main(["export-firmware", str(bundle), "--out", str(out)]) == 0
    header = (out / "npu_int16_mixed.h").read_text()
    assert "Ethos_U65_256" in header and "NPU_SRAM_KIB" in header and "prelude.npz" in header
    assert "INPUT0_DIMS {1, 64, " in header
    exe = compile_firmware_check(out, "npu_int16_mixed")
    ok = subprocess.run([str(exe), str(bundle / "model_vela.tflite")], capture_output=True, text=True)
    assert ok.returncode == 0 and "identical to the .tflite" in ok.stdout, ok.stdout
