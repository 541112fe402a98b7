import dataclasses
import numpy as np
import onnx
import pytest

from edgeslim.calibration_data import load_corpus
from edgeslim.compress import (
    Int8DynamicConfig,
    Int8StaticConfig,
    OpenVinoConvertConfig,
    OpenVinoInt8Config,
    OpenVinoStaticShapesConfig,
    StepContext,
    apply_step,
)
from edgeslim.compress.export import export_onnx
from edgeslim.errors import ExportError, StepError


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    texts = load_corpus("wordnet-calibration").texts
    artifact, record = export_onnx(tiny_model, folder / "model.onnx", texts[:16])
    ctx = StepContext(workdir=folder, calibration_texts=texts, reader=tiny_model, log=lambda _: None)
    return artifact, record, ctx


def test_export_records_parity_and_keeps_module_names(exported):
    artifact, record, _ = exported
    assert record["parity_max_abs_diff"] < 1e-5 and record["parity_min_cosine"] > 0.99999
    names = [n.name for n in onnx.load(str(artifact.path)).graph.node if n.op_type == "MatMul"]
    assert "/layer.1/output/dense/MatMul" in names
    graph_inputs = [i.name for i in onnx.load(str(artifact.path)).graph.input]
    assert graph_inputs == ["input_ids", "attention_mask"]


def test_export_fails_loudly_on_a_parity_miss(tiny_model, tmp_path):
    with pytest.raises(ExportError, match="does not match PyTorch.*export was removed"):
        export_onnx(tiny_model, tmp_path / "m.onnx", ["a sentence", "another one here"], max_abs_diff=0.0)
    assert not (tmp_path / "m.onnx").exists()


def test_int8_dynamic_quantizes_matmuls(exported):
    artifact, _, ctx = exported
    out, record = apply_step(artifact, Int8DynamicConfig(), ctx)
    assert record["quantized_nodes"]["MatMulInteger"] > 0
    assert record["size_mb_after"] < record["size_mb_before"]
    assert record["config"]["per_channel"] is True


def test_int8_static_sensitivity_search_keeps_the_fewest_matmuls_needed(exported):
    artifact, _, ctx = exported
    # All-int8 reaches ~0.9999 on the tiny model; ask for more to force the search.
    strict = Int8StaticConfig(cosine_floor=0.99995, calibration_samples=32, sensitivity_samples=16)
    out, record = apply_step(artifact, strict, ctx)
    assert record["cosine_all_quantized"] < 0.99995 <= record["cosine_to_float_model"]
    kept = record["matmuls_kept_float"]
    assert 0 < len(kept) < record["matmuls"]
    assert record["most_sensitive"][0]["node"] == kept[0]  # kept in order of measured damage
    graph = onnx.load(str(out.path)).graph
    producer = {output: node.op_type for node in graph.node for output in node.output}
    for node in graph.node:
        if node.op_type == "MatMul":  # int8 MatMuls read dequantized inputs; float ones do not
            dequantized = [producer.get(i) == "DequantizeLinear" for i in node.input]
            assert dequantized == ([False, False] if node.name in kept else [True, True]) or (
                node.name in kept and not dequantized[0]), node.name


def test_int8_static_is_u8s8_qdq(exported):
    artifact, _, ctx = exported
    out, record = apply_step(artifact, Int8StaticConfig(calibration_samples=32, sensitivity_samples=16), ctx)
    graph = onnx.load(str(out.path)).graph
    q_types = {init.name: init.data_type for init in graph.initializer}
    zero_points = [n.input[2] for n in graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(q_types[z] == onnx.TensorProto.UINT8 for z in zero_points if z in q_types)
    assert record["matmuls_kept_float"] == [] and record["quantize_runs"] == 1


def test_too_little_calibration_data_is_a_step_error(exported):
    artifact, _, ctx = exported
    small = dataclasses.replace(ctx, calibration_texts=ctx.calibration_texts[:20])
    with pytest.raises(StepError, match="needs 192 calibration sentences"):
        apply_step(artifact, Int8StaticConfig(), small)


def test_openvino_steps_and_order_errors(exported):
    artifact, _, ctx = exported
    ov_fp32, record = apply_step(artifact, OpenVinoConvertConfig(), ctx)
    assert ov_fp32.xml_path.exists() and ov_fp32.xml_path.with_suffix(".bin").exists()
    ov_int8, record = apply_step(artifact, OpenVinoInt8Config(calibration_samples=16), ctx)
    assert record["fake_quantize_nodes"] > 0 and record["inference_precision"] == "f32"
    assert ov_int8.backend_options() == {}  # the target's own f32 hint stands
    # bf16 for the float parts: the bundle asks OpenVINO for it, and a static reshape keeps it.
    ov_bf16, record = apply_step(artifact, OpenVinoInt8Config(calibration_samples=16, inference_precision="bf16"), ctx)
    assert ov_bf16.backend_options() == {"config": {"INFERENCE_PRECISION_HINT": "bf16"}}
    static, _ = apply_step(ov_bf16, OpenVinoStaticShapesConfig(batch=1, seq_lengths=(16, 32)), ctx)
    assert static.inference_precision == "bf16" and static.static_shapes == ((1, 16), (1, 32))
    with pytest.raises(StepError, match="Put it before any OpenVINO step"):
        apply_step(ov_int8, Int8DynamicConfig(), ctx)
    with pytest.raises(StepError, match="converts an ONNX model"):
        apply_step(ov_int8, OpenVinoInt8Config(), ctx)


def test_additive_mask_is_finite(tiny_model):
    import torch

    from edgeslim.models import MASK_VALUE

    assert np.isfinite(MASK_VALUE) and MASK_VALUE <= -20
    ids, mask = tiny_model.tokenize(["a b c d e f", "a"])
    with torch.inference_mode():
        wrapped = tiny_model.exportable()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        plain = tiny_model.module(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    real = mask.astype(bool)
    assert np.abs(wrapped[real] - plain.last_hidden_state.numpy()[real]).max() < 1e-5
