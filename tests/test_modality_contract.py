"""The modality contract, run over every registered modality and a toy one registered here
(scikit-learn `check_estimator` style): both halves present and consistent, input prepared the
same whatever the batching, bad input refused with a typed error that names what is allowed,
held-out items the runtime accepts, wording for cards and firmware, budget keys that exist."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, Field

from edgeslim.budget import Budget
from edgeslim.errors import InputError
from edgeslim.modalities import MODALITIES, Modality, check_modality, register_modality
from edgeslim.runtime.modalities import MODALITIES as RUNTIME_MODALITIES
from edgeslim.runtime.modality import RuntimeModality


class _StubModel:
    """What `embed_items` needs of a model: a preprocessor, input names, and embed_inputs (here
    the first 4 numbers of each prepared row: enough to see order and batching)."""

    def __init__(self, preprocessor, input_names):
        self.preprocessor, self.input_names = preprocessor, input_names
        self.max_seq_length, self.truncated = 64, 0

    def note_truncated(self, count):
        self.truncated += count

    def embed_inputs(self, feeds):
        first = feeds[self.input_names[0]]
        rows = first.reshape(len(first), -1).astype(np.float32)
        width = 4
        out = np.zeros((len(first), width), np.float32)
        out[:, : min(width, rows.shape[1])] = rows[:, :width]
        return out


def _preprocessor(name: str):
    """A preprocessor of each built-in modality, as a bundle would carry it."""
    if name == "text":
        from edgeslim.models import get_family

        _, tokenizer = get_family("bert").tiny_random(64)
        from edgeslim.runtime.text import configured

        return configured(tokenizer, 64), ["input_ids", "attention_mask"]
    if name == "image":
        from edgeslim.runtime.image import ImagePreprocessing

        return ImagePreprocessing(resize=[8, 8]), ["pixel_values"]
    if name == "audio":
        from edgeslim.runtime.audio import AudioFrontend

        return AudioFrontend(clip_samples=2048, n_fft=256, hop_length=128, n_mels=16), ["input_features"]
    return TOY.runtime.preprocessing({"length": 6}), ["values"]


def check_modality_contract(modality: Modality, tmp_path: Path) -> None:
    assert check_modality(modality) == [], check_modality(modality)
    runtime = modality.runtime
    assert RUNTIME_MODALITIES[modality.name] is runtime and MODALITIES[modality.name] is modality
    preprocessor, names = _preprocessor(modality.name)
    model = _StubModel(preprocessor, names)

    # Raw input -> model input: one item, then several in different batchings, same rows.
    items, described = modality.verify_items(5, tmp_path)
    assert len(items) == 5 and isinstance(described, str) and described
    items = items[:4] + [runtime.sample_item(preprocessor)]
    feeds, mask = runtime.model_inputs(preprocessor, items[:1], names)
    assert set(feeds) == set(names) and all(a.shape[0] == 1 for a in feeds.values())
    assert mask is None or mask.shape[0] == 1
    whole = runtime.embed_items(model, items, batch_size=8)
    assert whole.shape == (5, 4)
    np.testing.assert_array_equal(runtime.embed_items(model, items, batch_size=2), whole)
    np.testing.assert_array_equal(runtime.embed_items(model, items[::-1], batch_size=3), whole[::-1])

    # Bad input: typed, and the message says what the entry takes.
    for bad in ((), "not a list", 42):
        with pytest.raises(InputError, match=runtime.entry):
            runtime.embed_items(model, bad)
    with pytest.raises(InputError, match="batch_size"):
        runtime.embed_items(model, items, batch_size=0)

    # The manifest's preprocessing schema refuses unknown keys (the toy and the built-ins alike).
    if runtime.preprocessing_model is not None:
        with pytest.raises(ValueError, match="preprocessing"):
            runtime.preprocessing({"not_a_key": 1})

    # Metrics: a budget key that the one budget schema has, data keys the recipe's data section has.
    from edgeslim.recipe import DataSpec

    for metric in modality.metrics:
        if metric.budget_key is not None and modality.name in ("text", "image", "audio"):
            assert metric.budget_key in Budget.model_fields, metric
        assert all(key in DataSpec.model_fields for key in metric.data_keys), metric
    assert all(c for c in modality.corpora()) and isinstance(modality.corpora(), list)
    assert isinstance(modality.noun, str) and modality.count(3).startswith("3 ")


class VectorPreprocessing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    length: int = Field(6, ge=1)
    scale: float = 1.0


class VectorRuntime(RuntimeModality):
    """A toy modality: fixed-length float vectors, scaled."""

    name = "toy-vector"
    entry = "encode_vectors"
    argument = "vectors"
    noun = "vectors"
    preprocessing_model: ClassVar = VectorPreprocessing

    def model_inputs(self, spec, items, input_names, pad_to=None):
        items = self.check_items(items)
        rows = []
        for i, item in enumerate(items):
            array = np.asarray(item, np.float32)
            if array.shape != (spec.length,):
                raise InputError(f"vector {i} has shape {array.shape}; encode_vectors() takes ({spec.length},) vectors")
            rows.append(array * spec.scale)
        return {input_names[0]: np.stack(rows)[:, None, None, :]}, None

    def sample_item(self, spec):
        return np.linspace(0, 1, spec.length, dtype=np.float32)


class VectorModality(Modality):
    name = "toy-vector"
    runtime = VectorRuntime()

    def verify_items(self, count, scratch):
        rng = np.random.default_rng(0)
        return [rng.standard_normal(6).astype(np.float32) for _ in range(count)], "random vectors"

    def distillation_batches(self, teacher, student, items, cfg, log):
        from edgeslim.modalities.image import tensor_batches

        return tensor_batches(teacher, student, items, cfg, log, lambda x, generator: x)

    def card_input(self, manifest):
        return "Input: float vectors."

    def card_limits(self, manifest):
        return "Toy."

    def firmware_lines(self, manifest, symbol, inputs, outputs):
        return [f"/* {symbol}: feed the vector as float32 */"]


TOY = VectorModality()


@pytest.fixture
def toy_registered():
    register_modality(TOY)
    yield TOY
    MODALITIES.pop(TOY.name)
    RUNTIME_MODALITIES.pop(TOY.name)


@pytest.mark.parametrize("name", sorted(MODALITIES))
def test_every_registered_modality_passes_the_contract(name, tmp_path):
    check_modality_contract(MODALITIES[name], tmp_path)


def test_a_toy_modality_registers_and_passes_the_contract(toy_registered, tmp_path):
    check_modality_contract(toy_registered, tmp_path)
    # A recipe may now name it, and the manifest schema takes bundles of it.
    from edgeslim.recipe import ModelSpec

    spec = ModelSpec(source="onnx", path="m.onnx", modality="toy-vector", preprocessing={"length": 6})
    assert spec.modality == "toy-vector"


def test_an_incomplete_modality_is_refused_with_what_it_lacks():
    class Half(Modality):
        name = "half"
        runtime = VectorRuntime()

    from edgeslim.errors import RecipeError

    with pytest.raises(RecipeError, match="verify_items.*not written"):
        register_modality(Half())
    assert "half" not in MODALITIES


def test_an_unknown_modality_lists_the_registered_ones():
    from edgeslim.errors import RecipeError
    from edgeslim.modalities import get_modality
    from edgeslim.recipe import ModelSpec

    with pytest.raises(RecipeError, match="registered modalities: text, image, audio"):
        get_modality("smell")
    with pytest.raises(ValueError, match="unknown modality 'smell'"):
        ModelSpec(source="onnx", path="m.onnx", modality="smell")
