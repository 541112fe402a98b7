"""One contract, every registered model family (scikit-learn's check_estimator style): a tiny
random model of the family is exported (parity-checked), quantized to int8, bundled for x86 and
run by the runtime; its declared surgery runs, and what it declares absent is refused."""

from __future__ import annotations

import numpy as np
import pytest

from edgeslim.bundle import write_manifest
from edgeslim.calibration_data import load_corpus
from edgeslim.compress import Int8DynamicConfig, StepContext, apply_step
from edgeslim.compress.configs import DistillConfig, PruneConfig
from edgeslim.compress.distill import make_student
from edgeslim.compress.export import export_onnx
from edgeslim.errors import RecipeError, StepError
from edgeslim.modalities import MODALITIES, get_modality
from edgeslim.models import FAMILIES, SURGERY_PARTS, get_family, load_encoder, register_family
from edgeslim.models.bert import BertFamily
from edgeslim.recipe import ModelSpec
from edgeslim.runtime import load
from edgeslim.targets import get_target
from edgeslim.targets.base import ExportContext

ODD_TEXTS = ["Grüße aus Köln, ça va?", "数据 and emoji 🙂 mixed", "a", "x " * 200]


def sample_images(n: int, seed: int) -> list[np.ndarray]:
    """Smooth random RGB images of varying sizes (gradients plus blobs), as uint8 HxWx3."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        h, w = rng.integers(24, 64, size=2)
        y, x = np.mgrid[0:h, 0:w] / max(h, w)
        channels = [np.sin(rng.uniform(1, 6) * x + rng.uniform(1, 6) * y + rng.uniform(0, 3)) for _ in range(3)]
        images.append(((np.stack(channels, -1) + 1) * 127.5).astype(np.uint8))
    return images


def odd_images() -> list:
    """A 1x1 pixel, a grayscale array, a very wide image, an RGBA one."""
    from PIL import Image

    return [np.full((1, 1, 3), 200, np.uint8), np.zeros((40, 30, 1), np.uint8),
            np.full((8, 300, 3), 90, np.uint8), Image.new("RGBA", (33, 17), (10, 20, 30, 128))]


def sample_clips(n: int, seed: int, rate: int = 8000) -> list[np.ndarray]:
    """Tones that glide, with noise, of varying length (0.3-0.9 s), as float32 samples."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n):
        t = np.arange(int(rng.uniform(0.3, 0.9) * rate)) / rate
        f0, f1 = rng.uniform(150, 900, size=2)
        tone = np.sin(2 * np.pi * (f0 + (f1 - f0) * t / t[-1] / 2) * t) * rng.uniform(0.1, 0.6)
        clips.append((tone + rng.normal(0, 0.01, len(t))).clip(-1, 1).astype(np.float32))
    return clips


def odd_clips() -> list:
    """Ten samples, an int16 array, three seconds of silence, a clip at full scale."""
    return [np.full(10, 0.5, np.float32), (np.arange(4000) % 200 * 100).astype(np.int16),
            np.zeros(24000, np.float32), np.sign(np.sin(np.arange(6000) / 7.0)).astype(np.float32)]


def family_items(modality: str) -> tuple[list, list, list]:
    """(calibration, held-out, odd) items of a modality, made or shipped: no shared data needed."""
    if modality == "text":
        return (list(load_corpus("wordnet-calibration").texts), list(load_corpus("wordnet-heldout").texts[:32]),
                ODD_TEXTS)
    if modality == "image":
        return sample_images(16, seed=1), sample_images(32, seed=2), odd_images()
    return sample_clips(16, seed=1), sample_clips(32, seed=2), odd_clips()


def check_family(family_name: str, tmp_path) -> dict:
    """The contract: returns what it measured, for the caller to print."""
    family = get_family(family_name)
    assert family.name == family_name and family.modality in MODALITIES
    assert set(family.surgery.parts) <= set(SURGERY_PARTS)
    pooling = "mean" if MODALITIES[family.modality].runtime.reads_tokenizer else family.poolings[0]
    model = load_encoder(ModelSpec(source="tiny-random", family=family_name, max_seq_length=64, pooling=pooling))
    calibration, held_out, odd = family_items(family.modality)
    onnx_model, export_record = export_onnx(model, tmp_path / "model.onnx", calibration[:16])
    assert export_record["parity_min_cosine"] >= 0.99999
    ctx = StepContext(tmp_path, calibration, model, log=lambda _: None)
    int8, _ = apply_step(onnx_model, Int8DynamicConfig(), ctx)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    reads = get_modality(family.modality).bundle_inputs(model, bundle)
    target = get_target("x86-cpu")
    files = target.export(int8, "onnxruntime", ExportContext(bundle, model.max_seq_length, model.hidden_size))
    write_manifest(bundle, {
        "name": f"tiny-{family_name}", "target": target.name, "backend": "onnxruntime",
        "backend_options": target.backend_options["onnxruntime"], "model_file": files.model_file,
        "modality": family.modality, **reads, "inputs": [spec.to_manifest() for spec in family.inputs(model.module)],
        "outputs": [family.output(model.hidden_size).to_manifest()], "embedding_dim": model.hidden_size,
        "pooling": model.pooling, "normalize": model.normalize})
    encoder = load(bundle)
    encode = getattr(encoder, encoder.modality_plugin.entry)  # encode / encode_images / encode_audio
    cosine = (encode(held_out) * model.embed_items(held_out)).sum(1)
    assert cosine.min() > 0.9, f"{family_name}: int8 bundle vs teacher cosine {cosine.min():.4f}"
    odd_vectors = encode(odd)
    assert odd_vectors.shape == (len(odd), model.hidden_size) and np.isfinite(odd_vectors).all()
    # Declared surgery runs; what is declared absent is refused with the family's reason.
    fewest = family.fewest_blocks(model.module)
    student = make_student(model, fewest) if "layers" in family.surgery.parts else None
    if student is not None:
        assert len(family.blocks(student)) == len(fewest) < len(family.blocks(model.module))
        assert np.isfinite(model.replace(module=student).embed_items(held_out[:2])).all()
    for part in ("heads", "ffn"):
        cfg = PruneConfig(**{part: 0.5}, heal=None)
        if part in family.surgery.parts:
            from edgeslim.compress.prune import prune_model

            pruned, record = prune_model(model, cfg)
            assert record["parameters_after"] < record["parameters_before"]
        else:
            from edgeslim.compress.prune import prune_model

            with pytest.raises(StepError, match=f"family {family_name!r} does not support"):
                prune_model(model, cfg)
    return {"cosine_min": float(cosine.min())}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_family_contract(name, tmp_path):
    measured = check_family(name, tmp_path)
    print(f"{name}: int8 bundle vs teacher, min cosine {measured['cosine_min']:.4f}")


def test_unknown_family_lists_the_supported_ones():
    with pytest.raises(RecipeError, match="supported families: .*distilbert.*mpnet"):
        get_family("gpt-17")


class ToyBertFamily(BertFamily):
    """A new family is one class and one registration: here a 3-layer BERT variant."""

    name = "toy-bert"
    model_types = ("toy-bert",)

    def tiny_random(self, max_seq_length: int):
        import torch
        from transformers import BertConfig, BertModel

        from edgeslim.models._hf_text import wordpiece_tokenizer

        tokenizer = wordpiece_tokenizer()
        torch.manual_seed(1)
        config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=16, num_hidden_layers=3,
                            num_attention_heads=2, intermediate_size=32, max_position_embeddings=128)
        return BertModel(config, add_pooling_layer=False).eval(), tokenizer


def test_a_registered_toy_family_passes_the_contract(tmp_path):
    register_family(ToyBertFamily())
    try:
        check_family("toy-bert", tmp_path)
        from edgeslim.plan import plan_recipe
        from edgeslim.recipe import parse_recipe

        recipe = parse_recipe("name: toy\nmodel: {source: tiny-random, family: toy-bert}\ntargets:\n"
                              "  - target: x86-cpu\n    variants:\n"
                              "      - {name: a, backend: onnxruntime, steps: [{step: distill, keep_layers: [0, 2]},"
                              " {step: int8_dynamic}]}\n", tmp_path / "toy.yaml")
        assert plan_recipe(recipe).variants[0].chain() == ["distill", "export_onnx", "int8_dynamic"]
    finally:
        FAMILIES.pop("toy-bert")


def test_distillation_keeps_layers_of_a_non_bert_family():
    model = load_encoder(ModelSpec(source="tiny-random", family="modernbert", max_seq_length=64))
    student = make_student(model, (0, 2))
    assert len(student.layers) == 2 and student.config.layer_types == [model.module.config.layer_types[i] for i in (0, 2)]
    assert DistillConfig(keep_layers=(0, 2)).parts_needed() == {"layers"}
