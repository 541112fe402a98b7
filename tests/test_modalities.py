"""Image bundles and the runtime's image preprocessing; ONNX and local-folder sources end to
end; old bundles; and a pipeline that knows no target, step or family names."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeslim.calibration_data import corpus_available
from edgeslim.errors import BundleError, InputError
from edgeslim.runtime.image import ImagePreprocessing, preprocess

ROOT = Path(__file__).resolve().parents[1]
needs_cifar = pytest.mark.skipif(not corpus_available("cifar10-heldout"),
                                 reason="CIFAR-10 not found: set EDGESLIM_DATA to the shared data folder")


def _images(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((37, 53), (64, 48), (224, 300), (31, 31))]


@pytest.mark.parametrize("processor, spec", [
    ("vit", {"resize": [32, 32], "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3}),
    ("bit", {"resize_shortest_edge": 40, "crop": [32, 32], "interpolation": "bicubic",
             "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}),
])
def test_image_preprocessing_matches_the_hugging_face_processor(processor, spec):
    from transformers import BitImageProcessor, ViTImageProcessor

    if processor == "vit":
        reference = ViTImageProcessor(size={"height": 32, "width": 32}, resample=2, image_mean=spec["mean"],
                                      image_std=spec["std"])
    else:
        reference = BitImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}, resample=3,
                                      image_mean=spec["mean"], image_std=spec["std"], do_convert_rgb=True)
    ours = preprocess(_images(), ImagePreprocessing.model_validate(spec))
    for image, row in zip(_images(), ours):
        theirs = reference(images=image, return_tensors="np")["pixel_values"][0]
        assert theirs.shape == row.shape
        assert float(np.abs(theirs - row).max()) < 1e-5


def test_preprocessing_accepts_paths_pil_and_arrays_alike(tmp_path):
    from PIL import Image

    spec = ImagePreprocessing(resize=[16, 16])
    array = _images()[0]
    Image.fromarray(array).save(tmp_path / "x.png")
    by_array, by_path, by_pil = preprocess([array, tmp_path / "x.png", Image.fromarray(array)], spec)
    assert np.array_equal(by_array, by_path) and np.array_equal(by_array, by_pil) and by_array.shape == (3, 16, 16)


@pytest.mark.parametrize("bad, message", [
    ([], "empty list"),
    (np.zeros((8, 8, 3), np.uint8), "takes a list of images"),
    ([np.zeros((8, 8, 3), np.float32)], "must be uint8"),
    ([np.zeros((8, 8), np.uint8)], "HxWxC"),
    (["missing.jpg"], "no such file"),
    ([42], "expected a file path, a PIL.Image"),
])
def test_bad_images_are_input_errors(bad, message):
    with pytest.raises(InputError, match=message):
        preprocess(bad, ImagePreprocessing(resize=[16, 16]))


def test_a_corrupt_image_file_is_an_input_error(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError, match="broken.jpg.*not a readable image"):
        preprocess([tmp_path / "broken.jpg"], ImagePreprocessing(resize=[16, 16]))


def test_preprocessing_spec_is_checked():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exactly one of resize"):
        ImagePreprocessing(resize=[4, 4], resize_shortest_edge=4)
    with pytest.raises(ValidationError, match="extra"):
        ImagePreprocessing(resize=[4, 4], colour="yes")


def _recipe(tmp_path: Path, model: str, text: bool, variants: str = "{name: ort-int8, backend: onnxruntime, "
                                                                      "steps: [{step: int8_dynamic}]}") -> Path:
    data = ("data: {calibration: wordnet-calibration, agreement: [wordnet-heldout], agreement_samples: 100, "
            "stsb_split: null, probe: null}" if text else
            "data: {calibration: cifar10-train, agreement: [cifar10-heldout], agreement_samples: 100, stsb_split: null,"
            " probe: {train: cifar10-train, test: cifar10-heldout, train_samples: 200, test_samples: 100}}")
    path = tmp_path / "recipe.yaml"
    path.write_text(f"name: r\nmodel: {model}\n{data}\n"
                    "benchmark: {warmup: 1, min_runs: 5, speedup_rounds: 3, speedup_runs_per_round: 5, real_length_batches: [], speedup_rounds: 3, "
                    "speedup_runs_per_round: 2}\n"
                    "targets:\n  - target: x86-cpu\n    budget: {seq_len: 32, p95_ms: 1000, min_speedup: null, max_size_mb: 20, "
                    f"max_peak_rss_mb: 4000, min_teacher_cosine: 0.9}}\n    variants:\n      - {variants}\n")
    return path


def _run(recipe: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-m", "edgeslim.cli", "run", str(recipe), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("family", ["distilbert", "xlm-roberta", "mpnet", "vit", "resnet"])
def test_a_saved_local_folder_runs_end_to_end(family, tmp_path):
    from edgeslim.models import get_family, load_encoder
    from edgeslim.models.sources import save_model_folder
    from edgeslim.recipe import ModelSpec
    from edgeslim.runtime import load

    text = get_family(family).modality == "text"
    if not text and not corpus_available("cifar10-heldout"):
        pytest.skip("CIFAR-10 not found: set EDGESLIM_DATA to the shared data folder")
    model = load_encoder(ModelSpec(source="tiny-random", family=family, max_seq_length=32))
    folder = save_model_folder(model, tmp_path / family)
    report = _run(_recipe(tmp_path, f"{{source: local, path: {folder}, max_seq_length: 32}}", text), tmp_path / "out")
    (result,) = report["results"]
    assert result["accuracy"]["teacher_cosine_mean"] > 0.9 and result["budget"]["passed"]
    assert result["speedup_spread"]["rounds"] == 3
    encoder = load(result["bundle"])
    assert encoder.manifest.format == "edgeslim.bundle/3" and encoder.manifest.modality == ("text" if text else "image")
    probes = report["baseline"]["accuracy"]["probes"]
    if text:
        assert probes == []  # the text recipe here turns the probe off
    else:
        (probe,) = probes
        assert probe["train"] == "cifar10-train" and probe["test_items"] == 100 and 0 <= probe["knn_top1"] <= 100
        assert probe["label"] == "class"


@needs_cifar
def test_an_onnx_source_runs_end_to_end(tmp_path):
    from edgeslim.compress.export import export_onnx
    from edgeslim.models import load_encoder
    from edgeslim.recipe import ModelSpec

    model = load_encoder(ModelSpec(source="tiny-random", family="resnet"))
    export_onnx(model, tmp_path / "encoder.onnx", _images()[:2])
    spec = ("{source: onnx, path: " + str(tmp_path / "encoder.onnx") + ", modality: image, pooling: mean, "
            "preprocessing: {resize: [32, 32], mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}}")
    report = _run(_recipe(tmp_path, spec, False), tmp_path / "out")
    assert report["baseline"]["backend"] == "ONNX Runtime fp32"
    assert report["results"][0]["accuracy"]["probes"][0]["knn_top1"] > 10  # above chance on 10 classes
    assert report["results"][0]["steps"][0]["step"] == "int8_dynamic"  # no export: the file is the model


def test_an_onnx_source_refuses_pytorch_surgery(tmp_path):
    from edgeslim.plan import PlanError, plan_recipe
    from edgeslim.recipe import load_recipe

    (tmp_path / "m.onnx").write_bytes(b"")
    path = _recipe(tmp_path, "{source: onnx, path: " + str(tmp_path / "m.onnx") + ", modality: text}", True,
                   "{name: d, backend: onnxruntime, steps: [{step: distill, keep_layers: [0]}]}")
    recipe, _ = load_recipe(path)
    with pytest.raises(PlanError, match="the teacher is an ONNX file"):
        plan_recipe(recipe)


def _rewrite(bundle: Path, change) -> None:
    from edgeslim.runtime.bundle import manifest_digest

    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_a_bundle1_text_bundle_still_loads_and_an_unknown_format_says_how_to_rebuild(tiny_run, tmp_path):
    import shutil

    from edgeslim.runtime import load

    bundle = tmp_path / "old"
    shutil.copytree(tiny_run["out"] / "bundles" / "ort-int8-dynamic", bundle)
    new = load(bundle).encode(["a sentence"])

    def as_bundle1(manifest):
        manifest["format"] = "edgeslim.bundle/1"
        del manifest["modality"]
        del manifest["tokenizer_file"]  # bundle/1 always had tokenizer.json
        del manifest["health_check"], manifest["drift"]  # bundle/3

    _rewrite(bundle, as_bundle1)
    old = load(bundle)
    assert old.manifest.modality == "text" and np.allclose(old.encode(["a sentence"]), new)
    _rewrite(bundle, lambda m: m.update(format="edgeslim.bundle/99"))
    with pytest.raises(BundleError, match="bundle/99.*Rebuild the bundle"):
        load(bundle)


def test_a_text_bundle_refuses_images_and_says_what_to_call(tiny_run):
    from edgeslim.runtime import load

    encoder = load(tiny_run["out"] / "bundles" / "ort-int8-dynamic")
    with pytest.raises(InputError, match="encode_images\\(\\) needs a image bundle.*use encode\\(texts\\)"):
        encoder.encode_images([np.zeros((8, 8, 3), np.uint8)])


NAME_FREE = ["edgeslim/pipeline.py", "edgeslim/build.py", "edgeslim/measure.py", "edgeslim/evaldata.py",
             "edgeslim/plan.py", "edgeslim/cli.py", "edgeslim/firmware.py", "edgeslim/aarch64.py", "edgeslim/bundle.py",
             "benchmarks/harness.py", "benchmarks/worker.py", "benchmarks/report.py", "benchmarks/budget.py",
             "benchmarks/compare.py", "benchmarks/pareto.py", "benchmarks/bench_bundle.py",
             *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "runtime").glob("*.py")
                     if p.name not in ("text.py", "image.py", "audio.py", "modalities.py"))]


def _registered_names() -> tuple[set[str], set[str]]:
    """(names that must not appear as a string anywhere in NAME_FREE: targets, steps, families,
    modalities; names that must not appear inside any string there: data sets and metrics)."""
    from edgeslim.calibration_data import CORPORA
    from edgeslim.compress.configs import STEPS
    from edgeslim.modalities import MODALITIES
    from edgeslim.models import FAMILIES
    from edgeslim.targets import TARGETS

    exact = set(TARGETS) | set(STEPS) | set(FAMILIES) | set(MODALITIES)
    metrics = {m.name for kind in MODALITIES.values() for m in kind.metrics}
    metrics |= {m.budget_key for kind in MODALITIES.values() for m in kind.metrics if m.budget_key}
    # A family of splits (stsb-train, stsb-test...) is named by its prefix too; a one-corpus prefix
    # is a plain word ("movie" of movie-reviews, "state" of state-union), not a data set's name.
    prefixes = [name.split("-")[0] for name in CORPORA]
    families = {prefix for prefix in prefixes if prefixes.count(prefix) > 1}
    data_sets = set(CORPORA) | families | {"STS-B", "Banking77", "CIFAR", "FSDD"}
    return exact, metrics | data_sets


def _names_in(source: str, exact: set[str], inside: set[str]) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in exact:
                found.append((node.lineno, repr(node.value)))
            found += [(node.lineno, f"{name!r} in a string") for name in inside
                      if name.lower() in node.value.lower()]
        if isinstance(node, ast.Compare) and any(isinstance(c, ast.Constant) and c.value in exact
                                                 for c in node.comparators):
            found.append((node.lineno, "a comparison with a registered name"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr":
            found.append((node.lineno, "hasattr()"))
    return found


def test_no_target_step_family_modality_data_set_or_metric_name_outside_the_registries():
    exact, inside = _registered_names()
    found = [f"{relative}:{line} {what}" for relative in NAME_FREE
             for line, what in _names_in((ROOT / relative).read_text(encoding="utf-8"), exact, inside)]
    assert not found, "names or probing outside the registries:\n" + "\n".join(found)
    # The check can fail: names planted in code of the same shape are found.
    planted = "cpu = {'x86-cpu': 1}\nif m == 'audio': pass\nlabel = f'STS-B {split}'\nx = hasattr(a, 'b')\n"
    assert len(_names_in(planted, exact, inside)) >= 4


def test_modality_comparisons_live_in_the_modality_modules_only():
    """`grep -rn 'modality ==' outside the modality modules prints nothing` (nor a comparison of
    a modality with a name written out)."""
    import re

    named = re.compile(r"modality\s*(==|!=)\s*[\"']|modality ==")
    allowed = {"edgeslim/modalities", "runtime/text.py", "runtime/image.py", "runtime/audio.py",
               "runtime/modality.py", "runtime/modalities.py"}
    hits = []
    for path in [*ROOT.glob("*/**/*.py"), *ROOT.glob("*.py")]:
        relative = str(path.relative_to(ROOT))
        if relative.startswith((".venv", "tests/", "build/")) or any(relative.startswith(a) for a in allowed):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if named.search(line):
                hits.append(f"{relative}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)


def test_an_onnx_teacher_distils_into_a_pytorch_student_of_a_chosen_family(tmp_path):
    """source: onnx has no PyTorch model to cut; a `student` of a family learns from ONNX
    Runtime's fp32 embeddings, then goes through the export-side steps like any other."""
    from edgeslim.calibration_data import load_corpus
    from edgeslim.compress.export import export_onnx
    from edgeslim.models import load_encoder
    from edgeslim.plan import plan_recipe
    from edgeslim.recipe import ModelSpec, load_recipe

    teacher = load_encoder(ModelSpec(source="tiny-random", family="electra", max_seq_length=32))
    export_onnx(teacher, tmp_path / "teacher.onnx", load_corpus("wordnet").texts[:8])
    teacher.tokenizer.save(str(tmp_path / "tokenizer.json"))
    variant = ("{name: student, backend: onnxruntime, steps: [{step: distill, student: {source: tiny-random, "
               "family: distilbert}, keep_layers: [0], sentences: 128, batch_size: 16, epochs: 1, max_seq_length: 32},"
               " {step: int8_dynamic}]}")
    path = _recipe(tmp_path, "{source: onnx, path: " + str(tmp_path / "teacher.onnx") + ", modality: text, "
                   "max_seq_length: 32}", True, variant)
    recipe, _ = load_recipe(path)
    assert plan_recipe(recipe).variants[0].chain() == ["distill", "export_onnx", "int8_dynamic"]
    report = _run(path, tmp_path / "out")
    distilled = report["results"][0]["steps"][0]
    assert distilled["student"] == "tiny-random-distilbert" and distilled["layers"] == 1
    assert report["baseline"]["backend"] == "ONNX Runtime fp32"


def _other_exporter_graph(tmp_path, outputs: str) -> Path:
    """A text encoder exported the way other tools do: int64 pass-throughs of the inputs first,
    then the token states (`states`), or a pooled embedding (`pooled`), or two float states
    (`ambiguous`); tokenizer.json beside it."""
    import torch

    from edgeslim.models import load_encoder
    from edgeslim.recipe import ModelSpec

    model = load_encoder(ModelSpec(source="tiny-random", family="bert", max_seq_length=32))
    encoder = model.exportable()

    class OtherExporter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            states = self.encoder(input_ids, attention_mask)
            mask = attention_mask.unsqueeze(-1).float()
            pooled = (states * mask).sum(1) / mask.sum(1)
            extra = {"states": (states,), "pooled": (pooled,), "ambiguous": (states, states * 2)}[outputs]
            return (input_ids + 0, attention_mask + 0, *extra)

    folder = tmp_path / outputs
    folder.mkdir()
    names = ["input_ids_out", "attention_mask_out"] + {"states": ["token_embeddings"], "pooled": ["sentence_embedding"],
                                                       "ambiguous": ["token_embeddings", "scaled"]}[outputs]
    ids, mask = model.tokenize(["an example sentence", "short"])
    with torch.inference_mode():
        torch.onnx.export(OtherExporter().eval(), (torch.from_numpy(ids), torch.from_numpy(mask)), str(folder / "m.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=names, opset_version=17,
                          dynamo=False, dynamic_axes={n: {0: "batch", 1: "sequence"}
                                                      for n in ["input_ids", "attention_mask", *names[:2]]}
                          | {n: {0: "batch"} | ({} if outputs == "pooled" else {1: "sequence"}) for n in names[2:]})
    model.tokenizer.save(str(folder / "tokenizer.json"))
    return folder / "m.onnx"


@pytest.mark.parametrize("outputs", ["states", "pooled"])
def test_an_onnx_file_from_another_exporter_takes_its_float_output(outputs, tmp_path):
    """Int64 pass-throughs first: the one float (batch, positions, dim) output is the token
    states, or the one (batch, dim) output is an already pooled embedding; a bundle made from
    the file embeds like the teacher."""
    from edgeslim.models import load_encoder
    from edgeslim.recipe import ModelSpec

    path = _other_exporter_graph(tmp_path, outputs)
    teacher = load_encoder(ModelSpec(source="onnx", path=path, modality="text", max_seq_length=32))
    assert teacher.output_name == {"states": "token_embeddings", "pooled": "sentence_embedding"}[outputs]
    assert teacher.pooled_output == (outputs == "pooled")
    vectors = teacher.embed(["a sentence", "another, longer sentence"])
    assert vectors.shape == (2, teacher.hidden_size) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    report = _run(_recipe(tmp_path, "{source: onnx, path: " + str(path) + ", modality: text, max_seq_length: 32}",
                          True), tmp_path / "out")
    assert report["results"][0]["accuracy"]["teacher_cosine_mean"] > 0.95


def test_an_ambiguous_onnx_graph_is_refused_with_its_outputs_listed(tmp_path):
    from edgeslim.errors import RecipeError
    from edgeslim.models import load_encoder
    from edgeslim.recipe import ModelSpec

    path = _other_exporter_graph(tmp_path, "ambiguous")
    with pytest.raises(RecipeError, match=r"several float \(batch, positions, dim\) outputs; name the one to use with "
                                          r"model.output.*input_ids_out int64.*token_embeddings float32.*scaled float32"):
        load_encoder(ModelSpec(source="onnx", path=path, modality="text", max_seq_length=32))
    with pytest.raises(RecipeError, match="model.output 'nope' is not an output of the graph"):
        load_encoder(ModelSpec(source="onnx", path=path, modality="text", output="nope"))
    with pytest.raises(RecipeError, match="model.output 'input_ids_out' must be a float"):
        load_encoder(ModelSpec(source="onnx", path=path, modality="text", output="input_ids_out"))
    chosen = load_encoder(ModelSpec(source="onnx", path=path, modality="text", output="scaled", max_seq_length=32))
    assert chosen.output_name == "scaled" and chosen.path != path  # trimmed to the one output, in the cache
    import onnx

    assert [o.name for o in onnx.load(str(chosen.path), load_external_data=False).graph.output] == ["scaled"]
