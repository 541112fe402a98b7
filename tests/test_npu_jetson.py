"""Intel NPU (static-shape OpenVINO IR) and NVIDIA Jetson (TensorRT-ready ONNX) targets, tiny model."""

import json

import numpy as np
import pytest

from edgeslim.targets.base import ExportContext

from edgeslim.errors import BackendError, ExportError, StepError
from edgeslim.runtime import load


def _manifest(run, name):
    return json.loads((run["out"] / "bundles" / name / "manifest.json").read_text())


def test_run_labels_latency_estimated_and_measures_accuracy(npu_jetson_run):
    assert npu_jetson_run["exit_code"] == 0
    results = {r["name"]: r for r in npu_jetson_run["report"]["results"]}
    assert set(results) == {"npu-int8", "trt-fp16", "trt-int8-qdq"}
    for r in results.values():
        assert r["latency_ms"]["kind"] == "estimated" and r["latency_ms"]["runs"] == 0
        assert r["accuracy"]["teacher_cosine_mean"] > 0.95
    assert "Intel Core Ultra NPU" in results["npu-int8"]["latency_ms"]["where"]
    assert "int8 peak" in results["npu-int8"]["latency_ms"]["where"]
    assert "Jetson Orin Nano" in results["trt-fp16"]["latency_ms"]["where"]
    assert "fp16 peak" in results["trt-fp16"]["latency_ms"]["where"]


def test_intel_npu_bundle_lists_its_static_shapes_checked_on_the_cpu_plugin(npu_jetson_run):
    options = _manifest(npu_jetson_run, "npu-int8")["backend_options"]
    assert options["static_shapes"] == [[1, 16], [1, 32], [1, 64]]
    assert options["compile_checked"][:3] == ["CPU [1, 16]", "CPU [1, 32]", "CPU [1, 64]"]
    assert options["device"] == ["NPU", "CPU"]
    import openvino as ov

    model = ov.Core().read_model(str(npu_jetson_run["out"] / "bundles" / "npu-int8" / "model.xml"))
    assert all(port.get_partial_shape().is_static for port in model.inputs)
    assert any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def test_static_shape_runtime_pads_to_the_smallest_listed_shape(npu_jetson_run):
    encoder = load(npu_jetson_run["out"] / "bundles" / "npu-int8")
    assert encoder.providers[0] == "CPU"  # no NPU on this machine: the preference list falls through
    texts = ["short", "a somewhat longer sentence that needs more than a handful of tokens to encode"]
    together = encoder.encode(texts)
    alone = np.stack([encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    used = sorted(encoder.backend._pools)
    assert (1, 16) in used and (1, 64) in used  # compiled at load (largest) and on demand (smallest)


def test_openvino_device_preference_names_what_is_available(npu_jetson_run):
    with pytest.raises(BackendError, match=r"none of the bundle's OpenVINO devices \['NPU'\].*available"):
        load(npu_jetson_run["out"] / "bundles" / "npu-int8", threads=1, backend_options={"device": ["NPU"]})


def test_static_shapes_step_rejects_lengths_over_the_model(tiny_model, tmp_path):
    from edgeslim.compress import OpenVinoModel, OpenVinoStaticShapesConfig, StepContext, apply_step

    ctx = StepContext(tmp_path, (), tiny_model, log=lambda _: None)
    with pytest.raises(StepError, match=r"seq_lengths \[128\] exceed the model's max_seq_length 64"):
        apply_step(OpenVinoModel(tmp_path / "m.xml"), OpenVinoStaticShapesConfig(seq_lengths=(32, 128)), ctx)


def test_jetson_bundles_are_linted_with_profiles_and_a_device_script(npu_jetson_run):
    for name, precision, flags in (("trt-fp16", "fp16", "--fp16"), ("trt-int8-qdq", "int8", "--int8")):
        options = _manifest(npu_jetson_run, name)["backend_options"]
        assert options["tensorrt_precision"].startswith(precision)
        assert options["lint"]["errors"] == 0 and options["lint"]["nodes_passing"] > 0
        assert options["shape_profiles"]["input_ids"] == {"min": [1, 1], "opt": [1, 64], "max": [8, 64]}
        assert options["providers"] == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
        assert "not installed" in options["tensorrt_on_this_machine"]
        script = (npu_jetson_run["out"] / "bundles" / name / "jetson" / "build_and_bench.sh").read_text()
        assert "trtexec" in script and flags in script and "--maxShapes=input_ids:8x64" in script
        assert "edgeslim bench" in script
    qdq = _manifest(npu_jetson_run, "trt-int8-qdq")["backend_options"]["graph"]
    assert qdq["quantize_linear_nodes"] > 0 and qdq["constants_folded"] is False


def test_jetson_runtime_takes_the_first_available_provider(npu_jetson_run):
    encoder = load(npu_jetson_run["out"] / "bundles" / "trt-fp16")
    assert encoder.providers == ["CPUExecutionProvider"]
    with pytest.raises(BackendError, match="TensorrtExecutionProvider.*not available here; available"):
        load(npu_jetson_run["out"] / "bundles" / "trt-fp16", threads=1,
             backend_options={"providers": ["TensorrtExecutionProvider"], "providers_policy": "all"})


def test_jetson_refuses_asymmetric_int8(tiny_model, tmp_path):
    from edgeslim.calibration_data import load_corpus
    from edgeslim.compress import Int8StaticConfig, StepContext, apply_step
    from edgeslim.compress.export import export_onnx
    from edgeslim.targets import get_target

    texts = load_corpus("wordnet-calibration").texts
    onnx_model, _ = export_onnx(tiny_model, tmp_path / "model.onnx", texts[:8])
    ctx = StepContext(tmp_path, texts, tiny_model, log=lambda _: None)
    uint8, _ = apply_step(onnx_model, Int8StaticConfig(calibration_samples=16, sensitivity_samples=16,
                                                       cosine_floor=0.5), ctx)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    with pytest.raises(ExportError, match="symmetric int8 Q/DQ only"):
        get_target("jetson-orin-nano").export(uint8, "onnxruntime", ExportContext(bundle, 64, 32))


def test_bench_measures_a_bundle_with_the_runtime_only(npu_jetson_run, tmp_path, capsys):
    from edgeslim.cli import main

    out = tmp_path / "bench.json"
    bundle = npu_jetson_run["out"] / "bundles" / "trt-int8-qdq"
    assert main(["bench", str(bundle), "--runs", "100", "--seconds", "0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    lat = result["latency_ms"]
    assert lat["kind"] == "measured" and lat["runs"] >= 100 and lat["warmup"] == 10
    assert (lat["batch"], lat["seq_len"], lat["threads"]) == (1, 64, 1)
    assert lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"]
    assert "measured on" in capsys.readouterr().out


def test_intel_npu_estimate_counts_the_ir_weights_in_the_bin(npu_jetson_run):
    result = next(r for r in npu_jetson_run["report"]["results"] if r["name"] == "npu-int8")
    bundle = npu_jetson_run["out"] / "bundles" / "npu-int8"
    weights_mb = ((bundle / "model.xml").stat().st_size + (bundle / "model.bin").stat().st_size) / 1e6
    assert f"{weights_mb:.1f} MB weights" in result["latency_ms"]["where"]
