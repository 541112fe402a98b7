import json

import numpy as np
import pytest

from conftest import encode_in_fresh_process
from edgeslim.errors import BackendError, BundleError, InputError
from edgeslim.runtime import MANIFEST_NAME, load, read_manifest


def test_runtime_imports_no_heavy_framework(tiny_bundle):
    out = encode_in_fresh_process(tiny_bundle)
    assert out.strip().endswith("[]"), out
    assert "(1, 32)" in out


def test_encode_matches_the_teacher_and_is_normalised(tiny_bundle, tiny_model):
    texts = ["the cat sat on the mat", "a completely different sentence about trains", "short"]
    vectors = load(tiny_bundle).encode(texts, batch_size=2)
    assert vectors.dtype == np.float32 and vectors.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    teacher = tiny_model.embed(texts)
    assert (vectors * teacher).sum(1).min() > 0.99  # int8 dynamic bundle vs fp32 teacher


def test_batching_and_order_do_not_change_results(tiny_run):
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(9)]
    fp32 = load(tiny_run["out"] / "bundles" / "ort-fp32")
    one_by_one = np.concatenate([fp32.encode([t]) for t in texts])
    np.testing.assert_allclose(fp32.encode(texts, batch_size=4), one_by_one, atol=1e-5)
    # Dynamic int8 picks activation scales per call over the whole batch, so batch mates
    # move results slightly; they must stay the same embeddings.
    dynamic = load(tiny_run["out"] / "bundles" / "ort-int8-dynamic")
    one_by_one = np.concatenate([dynamic.encode([t]) for t in texts])
    assert (dynamic.encode(texts, batch_size=4) * one_by_one).sum(1).min() > 0.999


def _flip_one_byte(path, offset_fraction=0.5):
    data = bytearray(path.read_bytes())
    index = int(len(data) * offset_fraction)
    data[index] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipping_one_byte_of_any_file_is_refused(tiny_bundle, tmp_path):
    import shutil

    names = sorted(p.name for p in tiny_bundle.iterdir())
    assert MANIFEST_NAME in names and "model.onnx" in names and "tokenizer.json" in names
    for name in names:
        for fraction in (0.1, 0.5, 0.9):
            copy = tmp_path / f"{name}-{fraction}"
            shutil.copytree(tiny_bundle, copy)
            _flip_one_byte(copy / name, fraction)
            with pytest.raises(BundleError) as info:
                load(copy)
            message = str(info.value)
            assert name in message or "not valid JSON" in message, message


def test_missing_file_and_foreign_format_are_refused(tiny_bundle):
    (tiny_bundle / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer.json is listed in the manifest but missing"):
        load(tiny_bundle)
    with pytest.raises(BundleError, match="not a bundle folder"):
        load(tiny_bundle / "nowhere")


def test_unsupported_format_version_is_refused(tiny_bundle):
    from edgeslim.runtime.bundle import manifest_digest

    manifest = json.loads((tiny_bundle / MANIFEST_NAME).read_text())
    manifest["format"] = "edgeslim.bundle/99"
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (tiny_bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="edgeslim.bundle/99.*supported: edgeslim.bundle/1"):
        read_manifest(tiny_bundle)


@pytest.mark.parametrize(
    "texts, match",
    [
        ("just a string", "not a single str"),
        ([], "empty list"),
        (["ok", 3, None], r"non-str items.*\(1, 'int'\), \(2, 'NoneType'\)"),
        (["ok", "", "   "], r"indices \[1, 2\]"),
        ({"a": 1}, "got dict"),
    ],
)
def test_bad_inputs_raise_input_errors(tiny_bundle, texts, match):
    with pytest.raises(InputError, match=match):
        load(tiny_bundle).encode(texts)


def test_bad_batch_size_and_token_shapes(tiny_bundle):
    encoder = load(tiny_bundle)
    with pytest.raises(InputError, match="batch_size"):
        encoder.encode(["ok"], batch_size=0)
    with pytest.raises(InputError, match="must both be"):
        encoder.embed_tokens(np.zeros((1, 4), np.int64), np.ones((1, 5), np.int64))
    with pytest.raises(InputError, match="exceeds the bundle's max_seq_length 64"):
        encoder.embed_tokens(np.zeros((1, 65), np.int64), np.ones((1, 65), np.int64))


def test_overlong_texts_are_truncated_and_counted_or_refused(tiny_bundle):
    long_text = "word " * 500
    encoder = load(tiny_bundle)
    assert encoder.manifest.truncation == "truncate"
    encoder.encode([long_text, "short one", long_text])
    assert encoder.truncated_total == 2
    with pytest.raises(InputError, match=r"indices \[0\] exceed max_seq_length=64"):
        load(tiny_bundle, on_overlong="error").encode([long_text])
    with pytest.raises(InputError, match="allowed: truncate, error"):
        load(tiny_bundle, on_overlong="ignore")


def test_unavailable_provider_lists_available_ones(tiny_bundle):
    with pytest.raises(BackendError, match="available:.*CPUExecutionProvider"):
        load(tiny_bundle, backend_options={"providers": ["TensorrtExecutionProvider"]})


def test_openvino_text_bundle_runs_at_sequence_buckets_with_the_dynamic_models_embeddings(tiny_run):
    bundle = tiny_run["out"] / "bundles" / "ov-int8"
    bucketed = load(bundle)
    assert bucketed.manifest.backend_options["sequence_buckets"] == [16, 32, 64]  # max_seq_length 64
    assert "sequence buckets [16, 32, 64]" in bucketed.providers
    dynamic = load(bundle, backend_options={"sequence_buckets": None})
    assert not any("bucket" in p for p in dynamic.providers)
    # one text per bucket, one truncated to the longest; batched and alone
    texts = ["hi", "a somewhat longer sentence with several words", "word " * 25, "x " * 100]
    together = bucketed.encode(texts)
    np.testing.assert_allclose(together, dynamic.encode(texts), atol=2e-5)
    for text, row in zip(texts, together):
        np.testing.assert_allclose(bucketed.encode([text])[0], row, atol=2e-5)


@pytest.mark.parametrize("buckets, message", [([32, 16], "distinct lengths in rising order"),
                                              ([16, 16], "distinct lengths in rising order"),
                                              ([], "distinct lengths in rising order"),
                                              ([0, 16], "greater than or equal to 1")])
def test_bad_sequence_buckets_are_refused_with_what_is_allowed(tiny_run, buckets, message):
    with pytest.raises(BundleError, match=message):
        load(tiny_run["out"] / "bundles" / "ov-int8", backend_options={"sequence_buckets": buckets})


def test_sequence_buckets_need_no_static_shapes_and_f32(tiny_run, npu_jetson_run):
    with pytest.raises(BundleError, match="exclude each other"):
        load(npu_jetson_run["out"] / "bundles" / "npu-int8", backend_options={"sequence_buckets": [16]})
    bundle = tiny_run["out"] / "bundles" / "ov-int8"
    for config in ({"INFERENCE_PRECISION_HINT": "bf16"}, {"PERFORMANCE_HINT": "LATENCY"}):  # the latter: CPU default
        with pytest.raises(BundleError, match="sequence_buckets need INFERENCE_PRECISION_HINT f32"):
            load(bundle, backend_options={"config": config})
    bf16 = load(bundle, backend_options={"config": {"INFERENCE_PRECISION_HINT": "bf16"}, "sequence_buckets": None})
    assert not any("bucket" in p for p in bf16.providers)


def test_openvino_bundle_loads_with_f32_precision(tiny_run):
    encoder = load(tiny_run["out"] / "bundles" / "ov-int8")
    assert encoder.manifest.backend_options["config"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert str(encoder.backend.compiled.get_property("INFERENCE_PRECISION_HINT")) in ("f32", "<Type: 'float32'>")
    assert encoder.encode(["hello there"]).shape == (1, 32)
