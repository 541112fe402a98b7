"""Property tests (Hypothesis): every example either gives a correct result or a typed error.

Over `encode` inputs, manifest fields, recipe documents and CLI arguments. Counts per property
are printed at the end of the run (conftest.PROPERTY_COUNTS); the real tier runs >= 10,000."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgeslim.errors import BundleError, InputError, RecipeError
from edgeslim.runtime import MANIFEST_NAME, load, read_manifest
from edgeslim.runtime.bundle import manifest_digest

from conftest import PROPERTY_COUNTS

pytestmark = pytest.mark.property

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def fp32_encoder(tiny_run):
    return load(tiny_run["out"] / "bundles" / "ort-fp32", threads=1)


# encode ---------------------------------------------------------------------------------------

texts_strategy = st.one_of(
    st.lists(st.text(max_size=60), max_size=6),
    st.lists(st.one_of(st.text(max_size=20), st.integers(), st.none(), st.binary(max_size=8)), max_size=4),
    st.text(max_size=20),
    st.none(), st.integers(), st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)


@given(texts=texts_strategy, batch_size=st.one_of(st.integers(-2, 40), st.none(), st.floats(0, 4)))
def test_encode_gives_a_correct_result_or_an_input_error(fp32_encoder, texts, batch_size):
    PROPERTY_COUNTS["encode"] += 1
    try:
        vectors = fp32_encoder.encode(texts, batch_size=batch_size)
    except InputError:
        return
    assert vectors.shape == (len(texts), fp32_encoder.dim) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # an fp32 bundle is batch-invariant: each row is what the text gives alone
    alone = fp32_encoder.encode([texts[0]])
    np.testing.assert_allclose(vectors[:1], alone, atol=2e-5)


@given(ids=st.lists(st.lists(st.integers(-5, 40000), min_size=0, max_size=8), min_size=0, max_size=3),
       mask_value=st.sampled_from([0, 1, 2]), dtype=st.sampled_from(["int64", "int32", "float32", "uint8"]))
def test_embed_tokens_gives_a_result_or_an_input_error(fp32_encoder, ids, mask_value, dtype):
    PROPERTY_COUNTS["embed_tokens"] += 1
    width = max((len(row) for row in ids), default=0)
    padded = np.array([row + [0] * (width - len(row)) for row in ids], dtype=np.int64).reshape(len(ids), width)
    array = padded.astype(dtype)
    mask = np.full(array.shape, mask_value, dtype=np.int64)
    try:
        vectors = fp32_encoder.embed_tokens(array, mask)
    except InputError:
        return
    assert vectors.shape == (len(ids), fp32_encoder.dim) and np.isfinite(vectors).all()


# manifest fields ------------------------------------------------------------------------------

def _mutate(document, path: list, value, delete: bool):
    target = document
    for key in path[:-1]:
        target = target[key]
    if delete:
        del target[path[-1]]
    else:
        target[path[-1]] = value


def _paths(document, prefix=()):
    """Every key path into a JSON document."""
    if isinstance(document, dict):
        for key, child in document.items():
            yield (*prefix, key)
            yield from _paths(child, (*prefix, key))
    elif isinstance(document, list):
        for index, child in enumerate(document):
            yield (*prefix, index)
            yield from _paths(child, (*prefix, index))


@pytest.fixture(scope="module")
def manifest_case(tiny_run, tmp_path_factory):
    source = tiny_run["out"] / "bundles" / "ov-int8"
    bundle = tmp_path_factory.mktemp("manifest-property") / "bundle"
    shutil.copytree(source, bundle)
    document = json.loads((source / MANIFEST_NAME).read_text())
    paths = [p for p in _paths(document) if p[0] not in ("manifest_sha256",)]
    return bundle, document, paths


@given(data=st.data())
def test_any_manifest_field_gives_a_manifest_or_a_bundle_error(manifest_case, data):
    bundle, original, paths = manifest_case
    document = copy.deepcopy(original)
    path = list(data.draw(st.sampled_from(paths)))
    delete = data.draw(st.booleans())
    value = data.draw(json_values)
    if data.draw(st.booleans()) and isinstance(document.get(path[0]), dict):  # or an unknown key
        path = [path[0], data.draw(st.text(min_size=1, max_size=10))]
        delete = False
    try:
        _mutate(document, path, value, delete)
    except (KeyError, IndexError, TypeError):
        assume(False)
    PROPERTY_COUNTS["manifest"] += 1
    document["manifest_sha256"] = manifest_digest(document)
    (bundle / MANIFEST_NAME).write_text(json.dumps(document))
    try:
        manifest = read_manifest(bundle)
    except BundleError:
        return
    # what parses is well-formed: files relative and hashed, the model among them
    assert manifest.model_file in manifest.files and manifest.tokenizer_file in manifest.files
    assert all(not name.startswith("/") and ".." not in name.split("/") for name in manifest.files)
    assert isinstance(manifest.normalize, bool) and manifest.max_seq_length >= 1


# recipe documents -----------------------------------------------------------------------------

RECIPE_KEYS = ["name", "model", "data", "benchmark", "targets", "search", "source", "variants", "target",
               "backend", "steps", "step", "budget", "required", "p95_ms", "max_seq_length", "keep_layers"]
recipe_documents = st.recursive(
    st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats(allow_nan=False) | st.text(max_size=12)
    | st.sampled_from(["x86-cpu", "rpi5", "onnxruntime", "int8_dynamic", "tiny-random-bert", "mean"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(RECIPE_KEYS) | st.text(max_size=6), children, max_size=5),
    max_leaves=16,
)


@given(document=recipe_documents, raw=st.text(max_size=80), as_text=st.booleans())
def test_any_recipe_document_gives_a_recipe_or_a_recipe_error(tmp_path_factory, document, raw, as_text):
    from edgeslim.recipe import Recipe, parse_recipe

    PROPERTY_COUNTS["recipe"] += 1
    text = raw if as_text else yaml.safe_dump(document)
    try:
        recipe = parse_recipe(text, tmp_path_factory.getbasetemp() / "property.yaml")
    except RecipeError:
        return
    assert isinstance(recipe, Recipe) and recipe.name


# CLI arguments --------------------------------------------------------------------------------

@settings(max_examples=max(20, settings.default.max_examples // 2))
@given(batch=st.integers(-3, 3), runs=st.integers(-2, 3), warmup=st.integers(-2, 2),
       seconds=st.sampled_from(["-1", "0", "0.001", "nan", "x", "1e9"]), seq=st.integers(-1, 80),
       threads=st.integers(-1, 2))
def test_bench_arguments_give_a_measurement_or_exit_2(tiny_run, tmp_path_factory, capsys, batch, runs, warmup,
                                                      seconds, seq, threads):
    from edgeslim.cli import main

    PROPERTY_COUNTS["cli"] += 1
    bundle = tiny_run["out"] / "bundles" / "ort-fp32"
    argv = ["bench", str(bundle), "--batch", str(batch), "--runs", str(runs), "--warmup", str(warmup),
            "--seconds", seconds, "--seq-len", str(seq), "--threads", str(threads)]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: a value that is not a number
        code = exc.code
    out = capsys.readouterr()
    valid = batch >= 1 and runs >= 1 and warmup >= 0 and seconds in ("0", "0.001") and 1 <= seq <= 64 \
        and threads >= 1
    if valid:
        assert code == 0, out.err
        assert f"batch {batch}, {seq} tokens, {threads} thread(s)" in out.out
    else:
        assert code == 2, (argv, code, out.err)
        assert "Traceback" not in out.err


@given(name=st.text(max_size=30))
def test_bundle_file_names_are_relative_or_refused(name):
    from pydantic import TypeAdapter, ValidationError

    from edgeslim.runtime.manifest import Manifest

    PROPERTY_COUNTS["file_name"] += 1
    field = Manifest.model_fields["files"]
    try:
        TypeAdapter(field.annotation).validate_python({name: "0" * 64})
    except ValidationError:
        return
    assert not name.startswith("/") and ".." not in name.split("/") and "\x00" not in name and name

