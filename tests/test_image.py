"""The image path end to end: the SSL teacher script, distillation and pruning on unlabeled
images, every target (x86, Raspberry Pi 5 LiteRT full int8, Ethos-U55 via Vela, Intel NPU,
Jetson), the firmware export of the U55 bundle compiled with gcc, and text and image runs side
by side in `edgeslim compare`. Fast tier: a tiny random ResNet; real tier: a CI-sized SimCLR
teacher trained by the benchmark script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import compile_firmware_check, drift_scores, run_recipe_cli
from edgeslim.calibration_data import corpus_available

pytestmark = pytest.mark.skipif(not corpus_available("cifar10-heldout"),
                                reason="CIFAR-10 not found: set EDGESLIM_DATA to the shared data folder")

STUDENT = """
          - &distill {step: distill, keep_layers: [0, 2, 4, 6], corpus: [cifar10-train], sentences: 256,
                      batch_size: 64, epochs: 1, learning_rate: 0.001}
          - &prune {step: prune, ffn: 0.25, heal: {corpus: [cifar10-train], sentences: 256, batch_size: 64, epochs: 1}}
"""

IMAGE_RECIPE = f"""
name: tiny-image
model: {{source: tiny-random, family: resnet}}
data: {{calibration: cifar10-train, agreement: [cifar10-heldout], agreement_samples: 100, stsb_split: null,
        probe: {{train: cifar10-train, test: cifar10-heldout, train_samples: 300, test_samples: 100}}}}
benchmark: {{warmup: 2, min_runs: 10, speedup_rounds: 3, speedup_runs_per_round: 5, real_length_batches: []}}
targets:
  - target: x86-cpu
    required: [ort-int8]
    budget: {{p95_ms: 1000, min_speedup: null, max_size_mb: 5, min_teacher_cosine: 0.1}}
    variants:
      - name: ort-int8
        backend: onnxruntime
        steps:{STUDENT}
          - {{step: int8_static, op_types: [Conv, Add, Gemm, MatMul], calibration_samples: 32, sensitivity_samples: 16,
             cosine_floor: 0.9}}
      - {{name: ov-int8, backend: openvino, steps: [*distill, *prune, {{step: openvino_int8, calibration_samples: 32}}]}}
  - target: rpi5
    budget: {{min_teacher_cosine: 0.1}}
    variants:
      - name: litert-int8
        backend: litert
        steps: [*distill, *prune, {{step: litert_convert}}, {{step: litert_int8_full, calibration_samples: 32}}]
  - target: ethos-u55-128
    budget: {{min_teacher_cosine: 0.1, max_npu_sram_kib: 384, max_cpu_operators: 0}}
    variants:
      - name: u55-int8
        backend: litert
        steps: [*distill, *prune, {{step: litert_convert}}, {{step: litert_int8_full, calibration_samples: 32}}]
  - target: intel-npu
    budget: {{min_teacher_cosine: 0.1}}
    variants:
      - name: npu-int8
        backend: openvino
        steps: [*distill, *prune, {{step: openvino_int8, target_device: NPU, calibration_samples: 32}},
                {{step: openvino_static_shapes, batch: 1}}]
  - target: jetson-orin-nano
    budget: {{min_teacher_cosine: 0.1}}
    variants:
      - {{name: trt-fp16, backend: onnxruntime, steps: [*distill, *prune, {{step: onnx_fp16}}]}}
"""


@pytest.fixture(scope="session")
def image_run(tmp_path_factory):
    """A tiny random ResNet (CIFAR stem) through every image target, once per session."""
    return run_recipe_cli(tmp_path_factory, "image-run", IMAGE_RECIPE)


def test_sequence_buckets_on_an_image_bundle_are_refused_naming_its_inputs(image_run):
    from edgeslim.errors import BackendError
    from edgeslim.runtime import load

    bundle = image_run["out"] / "bundles" / "ov-int8"
    assert "sequence_buckets" not in json.loads((bundle / "manifest.json").read_text())["backend_options"]
    with pytest.raises(BackendError, match=r"sequence_buckets apply to \(batch, sequence\) inputs; .* ranks \[4\]"):
        load(bundle, backend_options={"sequence_buckets": [16]})


def _results(run) -> dict:
    return {r["name"]: r for r in run["report"]["results"]}


def test_every_image_target_builds_and_is_measured(image_run):
    results = _results(image_run)
    assert set(results) == {"ort-int8", "ov-int8", "litert-int8", "u55-int8", "npu-int8", "trt-fp16"}
    assert image_run["exit_code"] in (0, 3)
    teacher = image_run["report"]["baseline"]
    assert teacher["accuracy"]["probes"][0]["test_items"] == 100 and teacher["accuracy"]["metrics"] == []
    for name, r in results.items():
        probe = r["accuracy"]["probes"][0]
        # the teacher's kNN minus the bundle's, same probe, same run
        assert probe["knn_top1_drop"] == pytest.approx(teacher["accuracy"]["probes"][0]["knn_top1"] - probe["knn_top1"],
                                                       abs=0.011), name
        assert r["accuracy"]["teacher_cosine_mean"] > 0, name
        checks = {c["name"] for c in r["budget"]["checks"]}
        assert "stsb_spearman" not in checks, f"{name}: STS-B is not a check an image model takes"
    # One student (4 steps of distillation on a random teacher: far from it), every bundle as close:
    cosines = [r["accuracy"]["teacher_cosine_mean"] for r in results.values()]
    assert max(cosines) - min(cosines) < 0.05, cosines
    assert results["ort-int8"]["latency_ms"]["kind"] == "measured" and results["ort-int8"]["speedup_vs_baseline"] > 0
    for name in ("litert-int8", "u55-int8", "npu-int8", "trt-fp16"):
        assert results[name]["latency_ms"]["kind"] == "estimated", name


def test_the_student_is_distilled_and_pruned_on_unlabeled_images_disjoint_from_the_probe_test(image_run):
    steps = _results(image_run)["ort-int8"]["steps"]
    distill, prune = steps[0], steps[1]
    assert distill["modality"] == "image" and distill["images"] == 256 and distill["layers"] == 4
    assert distill["dropped_overlapping_evaluation"] == 0  # cifar10-train and -heldout are disjoint by hash
    assert distill["shared_with_probe_train"] > 0  # the SSL split: probe-train images may be trained on
    assert prune["parameters_after"] < prune["parameters_before"] and prune["heal"]["modality"] == "image"


def test_the_u55_bundle_runs_whole_on_the_npu_within_its_sram(image_run):
    u55 = _results(image_run)["u55-int8"]
    estimate = u55["device_estimate"]
    assert estimate["cpu_operators"] == 0 and estimate["cpu_operator_list"] == []
    assert 0 < estimate["sram_used_kib"] <= 384 and estimate["fits_sram"]
    checks = {c["name"]: c for c in u55["budget"]["checks"]}
    assert checks["cpu_operators"]["passed"] and checks["npu_sram_kib"]["passed"]
    bundle = Path(u55["bundle"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["modality"] == "image" and manifest["preprocessing"]["layout"] == "NHWC"
    assert manifest["inputs"][0]["shape"] == ["batch", 32, 32, 3]
    assert manifest["backend_options"]["npu"]["device_model"] == "model_vela.tflite"
    full_int8 = u55["steps"][-1]
    assert full_int8["input"]["dtype"] == full_int8["output"]["dtype"] == "int8"
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(bundle / "model.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8


def test_the_integer_bundles_agree_with_the_float_student(image_run):
    """LiteRT full int8 (rpi5, U55) and OpenVINO static int8 against the student's fp16 ONNX export."""
    from edgeslim.calibration_data import load_corpus
    from edgeslim.runtime import load

    results = _results(image_run)
    images = list(load_corpus("cifar10-heldout").texts[:24])
    reference = load(results["trt-fp16"]["bundle"]).encode_images(images)
    for name in ("u55-int8", "litert-int8", "npu-int8", "ort-int8"):
        vectors = load(results[name]["bundle"]).encode_images(images)
        cosine = (vectors * reference).sum(1)
        assert cosine.mean() > 0.9, f"{name}: mean cosine {cosine.mean():.4f} to the float student"


def test_the_u55_firmware_export_compiles_and_its_preprocessing_matches_the_runtime(image_run, tmp_path):
    from edgeslim.cli import main
    from edgeslim.runtime import load
    from edgeslim.runtime.image import preprocess
    from edgeslim.runtime.prelude import quantize

    bundle = Path(_results(image_run)["u55-int8"]["bundle"])
    out = tmp_path / "fw"
    assert main(["export-firmware", str(bundle), "--out", str(out)]) == 0
    symbol = "u55_int8"
    header = (out / f"{symbol}.h").read_text()
    for define in ("IMAGE_HEIGHT 32u", "IMAGE_LAYOUT \"NHWC\"", "NPU_SRAM_KIB", "CPU_OPERATORS 0u", "INPUT0_SCALE",
                   "INPUT0_ZERO_POINT", "ARENA_BYTES_ESTIMATE", "EMBEDDING_DIM"):
        assert define in header, define
    exe = compile_firmware_check(out, symbol)
    check = subprocess.run([str(exe), str(bundle / "model_vela.tflite")], capture_output=True, text=True)
    assert check.returncode == 0 and "identical to the .tflite" in check.stdout, check.stdout + check.stderr
    # A C program that preprocesses a raw RGB image with nothing but the header's macros.
    (out / "pre.c").write_text(f"""
#include <math.h>
#include <stdio.h>
#include "{symbol}.h"
int main(void) {{
    static const float mean[3] = {symbol.upper()}_MEAN, stdv[3] = {symbol.upper()}_STD;
    unsigned char rgb[{symbol.upper()}_IMAGE_HEIGHT * {symbol.upper()}_IMAGE_WIDTH * 3];
    size_t i, n = fread(rgb, 1, sizeof rgb, stdin);
    if (n != sizeof rgb) return 2;
    for (i = 0; i < n; i++) {{
        float x = ((float)rgb[i] * {symbol.upper()}_RESCALE - mean[i % 3]) / stdv[i % 3];
        long q = lroundf(x / {symbol.upper()}_INPUT0_SCALE) + {symbol.upper()}_INPUT0_ZERO_POINT;
        printf("%ld\\n", q < -128 ? -128 : (q > 127 ? 127 : q));
    }}
    return 0;
}}
""")
    cc = shutil.which("gcc") or shutil.which("cc")
    subprocess.run([cc, "-O2", "-Wall", "-Werror", "pre.c", "-o", "pre", "-lm"], check=True, cwd=out)
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    c_values = np.array(subprocess.run([str(out / "pre")], input=rgb.tobytes(), capture_output=True,
                                       check=True).stdout.split(), dtype=np.int64)
    encoder = load(bundle)
    pixels = preprocess([rgb], encoder.manifest.frontend)  # NHWC, as the manifest says
    detail = encoder.backend._input_detail
    py_values = quantize(pixels, detail).reshape(-1).astype(np.int64)
    assert np.abs(c_values - py_values).max() <= 1  # float vs double rounding at a .5 boundary at most


@pytest.mark.aarch64
def test_the_rpi5_image_bundle_passes_verify_on_aarch64(image_run, capsys):
    from edgeslim.cli import main

    code = main(["verify", _results(image_run)["litert-int8"]["bundle"], "--arch", "aarch64", "--sentences", "8"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "held-out CIFAR-10 images" in out and "ran on aarch64" in out


def test_bench_measures_an_image_bundle_on_the_runtime_alone(image_run, capsys):
    from edgeslim.cli import main
    from edgeslim.errors import InputError
    from edgeslim.benchmarks.bench_bundle import bench_bundle

    bundle = _results(image_run)["u55-int8"]["bundle"]
    assert main(["bench", bundle, "--runs", "20", "--warmup", "2"]) == 0
    assert "batch 1, one image per row" in capsys.readouterr().out
    result = bench_bundle(Path(_results(image_run)["ort-int8"]["bundle"]), batch=4, min_runs=10, warmup=1)
    assert result["latency_ms"]["batch"] == 4 and result["latency_ms"]["seq_len"] is None
    with pytest.raises(InputError, match="--seq-len applies to bundles of varying input length"):
        bench_bundle(Path(bundle), seq_len=32)


def test_compare_puts_text_and_image_runs_side_by_side(tiny_run, image_run, tmp_path):
    from edgeslim.benchmarks.compare import collect, compare, load_report, sections

    page = tmp_path / "compare.html"
    header, rows = compare([tiny_run["out"], image_run["out"]], page)
    groups = sections(collect([load_report(tiny_run["out"]), load_report(image_run["out"])]))
    assert len(groups) == 2 and any(key.startswith("knn:cifar10-heldout") for key in groups)
    html = page.read_text()
    assert html.count("data:image/png;base64,") == 4 and "kNN top-1 (k=20, class) on cifar10-heldout" in html
    metric_column = header.index("task metric")
    assert {row[metric_column] for row in rows} == {m.label for m, _ in groups.values()}


def test_an_image_distillation_resumes_from_its_checkpoint(tmp_path):
    from edgeslim.calibration_data import load_corpus
    from edgeslim.compress.configs import DistillConfig
    from edgeslim.compress.distill import distill
    from edgeslim.models import load_encoder
    from edgeslim.recipe import ModelSpec

    teacher = load_encoder(ModelSpec(source="tiny-random", family="resnet"))
    images = list(load_corpus("cifar10-train").texts[:64])
    cfg = DistillConfig(keep_layers=(0, 2, 4, 6), corpus=("cifar10-train",), sentences=64, batch_size=16,
                        epochs=1, checkpoint_every=2)
    first, record = distill(teacher, cfg, images, tmp_path, log=lambda _: None, progress=False)
    again, resumed = distill(teacher, cfg, images, tmp_path, log=lambda _: None, progress=False)
    assert record["resumed_from_step"] is None and resumed["resumed_from_step"] == record["steps"] == 4
    assert first.weights_sha256 == again.weights_sha256 and record["layers"] == 4


def test_keep_layers_must_keep_each_resnet_stage_first_block():
    from edgeslim.compress.distill import make_student
    from edgeslim.errors import RecipeError
    from edgeslim.models import load_encoder
    from edgeslim.recipe import ModelSpec

    teacher = load_encoder(ModelSpec(source="tiny-random", family="resnet"))
    with pytest.raises(RecipeError, match=r"must keep block 2 \(the first of stage layer2.*first blocks are \[0, 2, 4, 6\]"):
        make_student(teacher, (0, 1, 4, 6))


def _teacher_script(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeslim.benchmarks.teachers.simclr", "--no-progress",
                           "--width", "4", "--layers", "1", "1", "1", "1", "--limit-images", "128",
                           "--batch-size", "32", "--epochs", "2", "--eval-every", "0", "--threads", "1", *args],
                          capture_output=True, text=True, timeout=600)


def test_the_teacher_script_is_deterministic_and_resumes_exactly(tmp_path):
    """Stopped after 3 of 8 steps and resumed, it writes the same weights as an unbroken run."""
    from safetensors.numpy import load_file

    unbroken = _teacher_script("--out", str(tmp_path / "a"))
    assert unbroken.returncode == 0, unbroken.stderr[-2000:]
    stopped = _teacher_script("--out", str(tmp_path / "b"), "--stop-after", "3")
    assert stopped.returncode == 3 and "run the same command again" in stopped.stdout
    assert not (tmp_path / "b" / "model.safetensors").exists()  # no half-written model folder
    resumed = _teacher_script("--out", str(tmp_path / "b"))
    assert resumed.returncode == 0 and "resuming from step 3/8" in resumed.stderr
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    sheet = json.loads((tmp_path / "a" / "datasheet.json").read_text())
    assert sheet["training_data"]["labels_used"] is False and sheet["training_data"]["images"] == 128
    assert set(sheet["quality"]["figures"]) == {"ssl", "random_init", "raw_pixels"}
    assert sheet["quality"]["probe_test"]["split"] == "cifar10-heldout"
    # The folder loads as the kit's `source: local`.
    from edgeslim.models import load_encoder
    from edgeslim.recipe import ModelSpec

    teacher = load_encoder(ModelSpec(source="local", path=tmp_path / "a"))
    assert teacher.family.name == "resnet" and teacher.hidden_size == 32
    assert "SimCLR (this model)" in (tmp_path / "a" / "DATASHEET.md").read_text()


@pytest.mark.real
def test_the_packaged_image_recipe_on_a_ci_sized_ssl_teacher(tmp_path_factory):
    """The real image tier within CI's budget: a SimCLR teacher trained here for a few epochs
    (the 45-minute one is the benchmark), then the packaged recipe's chains, shortened."""
    from edgeslim.recipe import load_recipe

    folder = tmp_path_factory.mktemp("ci-teacher")
    trained = subprocess.run([sys.executable, "-m", "edgeslim.benchmarks.teachers.simclr", "--no-progress",
                              "--out", str(folder), "--epochs", "2", "--limit-images", "1024", "--eval-every", "0"],
                             capture_output=True, text=True, timeout=1800)
    assert trained.returncode == 0, trained.stderr[-2000:]
    print(trained.stdout)
    recipe, recipe_path = load_recipe("image")
    assert recipe.model.path.name == "simclr-cifar10" and recipe_path.name == "image.yaml"
    text = (recipe_path.read_text().replace("~/.cache/edgeslim/teachers/simclr-cifar10", str(folder))
            .replace("epochs: 12", "epochs: 2").replace("epochs: 6", "epochs: 1")
            .replace("sentences: 8000", "sentences: 1024")
            .replace("train_samples: 8000, test_samples: 2000", "train_samples: 1000, test_samples: 500")
            .replace("agreement_samples: 2000", "agreement_samples: 500")
            .replace("min_runs: 200", "min_runs: 50"))
    run = run_recipe_cli(tmp_path_factory, "image-real", text)
    results = _results(run)
    assert set(results) == {"ort-int8", "ov-int8", "litert-int8", "u55-int8", "npu-int8", "trt-fp16"}
    u55 = results["u55-int8"]
    assert u55["device_estimate"]["cpu_operators"] == 0 and u55["device_estimate"]["fits_sram"]
    teacher_knn = run["report"]["baseline"]["accuracy"]["probes"][0]["knn_top1"]
    for name, r in results.items():
        print(f"{name}: kNN {r['accuracy']['probes'][0]['knn_top1']} (teacher {teacher_knn}), "
              f"cos {r['accuracy']['teacher_cosine_mean']}, p50 {r['latency_ms']['p50']} ms "
              f"({r['latency_ms']['kind']})")
        assert r["accuracy"]["teacher_cosine_mean"] > 0.75, name  # a 2-epoch distillation of a 2-epoch teacher
    assert results["ort-int8"]["speedup_vs_baseline"] > 1.0


def test_drift_flags_random_pixels_and_fashion_mnist_not_held_out_cifar(image_run):
    """The image bundle's drift reference (random held-out CIFAR-10 images) against CIFAR-10
    images outside it, random pixels, and Fashion-MNIST (Debian's package, which .ci/run installs)."""
    assert Path("/usr/share/datasets/fashion-mnist").is_dir(), "apt-get install dataset-fashion-mnist (see README)"
    shifts = ["uniform random pixels", "Fashion-MNIST test images (Debian dataset-fashion-mnist)"]
    scores = drift_scores(image_run, "ort-int8", shifts)
    print({name: s.score for name, s in scores.items()})
    assert not scores["in-domain"].drifted
    assert all(scores[name].drifted for name in shifts)
