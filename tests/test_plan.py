"""The plan: every variant's chain is checked against what steps, families and targets
declare, at `recipe check` time, before any model loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeslim.compress.configs import STEPS
from edgeslim.modalities import MODALITIES
from edgeslim.plan import PlanError, plan_recipe
from edgeslim.recipe import parse_recipe


def _recipe(tmp_path, family: str, target: str, backend: str, steps: str):
    from edgeslim.models import get_family

    image = get_family(family).modality == "image"
    data = ("data: {calibration: cifar10-train, agreement: [cifar10-heldout], stsb_split: null, probe: null}\n"
            if image else "")
    text = (f"name: p\nmodel: {{source: tiny-random, family: {family}}}\n{data}targets:\n  - target: {target}\n"
            f"    variants:\n      - {{name: v, backend: {backend}, steps: [{steps}]}}\n")
    return parse_recipe(text, tmp_path / "p.yaml")


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    """A plan never loads a model: loading one here fails the test."""
    import edgeslim.models.sources as sources

    def refuse(*_):
        raise AssertionError("the plan loaded a model")

    monkeypatch.setattr(sources, "load_encoder", refuse)


@pytest.mark.parametrize("family, target, backend, steps, chain", [
    ("bert", "x86-cpu", "onnxruntime", "{step: int8_dynamic}", ["export_onnx", "int8_dynamic"]),
    ("bert", "x86-cpu", "onnxruntime", "", ["export_onnx"]),
    ("bert", "x86-cpu", "openvino", "{step: distill, keep_layers: [0]}, {step: openvino_int8}",
     ["distill", "export_onnx", "openvino_int8"]),
    ("bert", "rpi5", "litert", "{step: litert_convert}, {step: litert_int8_dynamic}",
     ["litert_convert", "litert_int8_dynamic"]),
    ("bert", "x86-cpu", "static", "{step: static_embeddings}", ["static_embeddings"]),
    ("bert", "ethos-u55-128", "litert-body", "{step: npu_body_quantize}", ["npu_body_quantize"]),
    ("distilbert", "x86-cpu", "onnxruntime", "{step: prune, heads: 0.5, heal: null}, {step: int8_dynamic}",
     ["prune", "export_onnx", "int8_dynamic"]),
    ("resnet", "x86-cpu", "onnxruntime", "{step: prune, ffn: 0.5, heal: null}, {step: int8_dynamic}",
     ["prune", "export_onnx", "int8_dynamic"]),
])
def test_valid_chains_get_the_export_inserted(tmp_path, family, target, backend, steps, chain):
    assert plan_recipe(_recipe(tmp_path, family, target, backend, steps)).variants[0].chain() == chain


@pytest.mark.parametrize("family, target, backend, steps, message", [
    # litert backend without a LiteRT conversion
    ("bert", "rpi5", "litert", "{step: int8_dynamic}", r"runs litert or litert-int8 models, but the steps end with "
                                                       r"a onnx model; add one of: litert_convert$"),
    # a PyTorch step after an export-side one
    ("bert", "x86-cpu", "onnxruntime", "{step: int8_dynamic}, {step: distill}",
     r"step distill needs a torch model, but after int8_dynamic is a onnx model"),
    # OpenVINO step on an OpenVINO model that wants ONNX
    ("bert", "x86-cpu", "openvino", "{step: openvino_convert}, {step: int8_dynamic}",
     r"step int8_dynamic needs a onnx model, but after openvino_convert is a openvino model"),
    # surgery the family does not have
    ("mpnet", "x86-cpu", "onnxruntime", "{step: prune, heads: 0.5}", r"family 'mpnet' does not support remove whole "
                                                                      r"attention heads"),
    ("xlm-roberta", "x86-cpu", "onnxruntime", "{step: vocab_prune}", r"does not support shrink the token table"),
    ("distilbert", "ethos-u55-128", "litert-body", "{step: npu_body_quantize}", r"does not support split into a CPU "
                                                                                 r"prelude"),
    ("modernbert", "x86-cpu", "onnxruntime", "{step: prune, ffn: 0.5, heal: null}", r"gated FFN"),
    ("bert", "x86-cpu", "litert", "", r"target x86-cpu has no backend 'litert'"),
    # a step of the wrong modality, and a healing distillation on an image model
    ("vit", "x86-cpu", "onnxruntime", "{step: vocab_prune}", r"cannot run on the image teacher: it works on text"),
    ("resnet", "x86-cpu", "onnxruntime", "{step: prune, ffn: 0.5}",
     r"learns from prune.heal.corpus wordnet-calibration \(text\), but the teacher is a image model; image "
     r"corpora: cifar10-heldout, cifar10-train"),
    ("mobilenet_v2", "x86-cpu", "onnxruntime", "{step: distill, keep_layers: [0], corpus: [cifar10-train]}",
     r"dropping the inverted-residual blocks"),
    ("resnet", "x86-cpu", "onnxruntime", "{step: prune, heads: 0.5, heal: null}", r"a CNN has no attention heads"),
])
def test_impossible_chains_are_refused_before_any_model_loads(tmp_path, family, target, backend, steps, message):
    try:
        recipe = _recipe(tmp_path, family, target, backend, steps)
    except Exception as exc:  # the backend check also lives in the recipe schema
        assert "has no backend" in str(exc) and "has no backend" in message
        return
    with pytest.raises(PlanError, match=message):
        plan_recipe(recipe)


def test_recipe_check_refuses_an_impossible_chain(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nmodel: {source: tiny-random, family: bert}\ntargets:\n  - target: rpi5\n"
                    "    variants:\n      - {name: v, backend: litert, steps: [{step: int8_dynamic}]}\n")
    proc = subprocess.run([sys.executable, "-m", "edgeslim.cli", "recipe", "check", str(path)], capture_output=True,
                          text=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "add one of: litert_convert" in proc.stderr and "torch" not in proc.stderr.split("litert_convert")[0][-10:]


def test_every_step_declares_a_chain_the_registry_can_plan():
    kinds = {"torch", "onnx", "openvino", "litert", "litert-int8", "npu-body", "static"}
    for name, cls in STEPS.items():
        assert cls.consumes in kinds and cls.produces in kinds, name
        assert cls.handler.count(":") == 1, name
        assert cls.modalities is None or set(cls.modalities) <= set(MODALITIES), name
