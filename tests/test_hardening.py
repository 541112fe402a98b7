"""Issue 12's findings, one test each: nothing lost, nothing read from outside a bundle, no hang,
typed errors for bad input, no code run from model files, thread-safe backends."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edgeslim.cli import main
from edgeslim.errors import BackendError, BundleError, InputError, RecipeError, StepError
from edgeslim.runtime import MANIFEST_NAME, load, read_manifest
from edgeslim.runtime.bundle import manifest_digest

from conftest import write_recipe


def _copy(bundle: Path, tmp_path: Path, name: str = "bundle") -> Path:
    copy = tmp_path / name
    shutil.copytree(bundle, copy, symlinks=True)
    return copy


def _rewrite_manifest(bundle: Path, change) -> None:
    """Edit the manifest and recompute its digest, as anyone holding the bundle can: the digest
    catches corruption, not an attacker, so every field must still be checked."""
    path = bundle / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    change(manifest)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    path.write_text(json.dumps(manifest))


def _cli(*argv) -> int:
    return main([str(a) for a in argv])


# 1. Data loss ---------------------------------------------------------------------------------

def test_export_firmware_never_deletes_an_existing_folder(arm_run, tmp_path, monkeypatch):
    bundle = _copy(arm_run["out"] / "bundles" / "litert-int8-dynamic", tmp_path / "bundles")
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    assert _cli("export-firmware", bundle, "--out", keep) == 2
    assert (keep / "notes.txt").read_text() == "mine" and sorted(p.name for p in keep.iterdir()) == ["notes.txt"]
    monkeypatch.chdir(tmp_path)
    assert _cli("export-firmware", bundle, "--out", ".", "--force") == 2  # never the working directory
    assert (keep / "notes.txt").exists() and bundle.is_dir()
    sibling = _copy(bundle, tmp_path / "bundles", "sibling")
    assert _cli("export-firmware", bundle, "--out", bundle.parent, "--force") == 2  # holds the bundle
    assert sibling.is_dir() and (sibling / MANIFEST_NAME).is_file()
    assert _cli("export-firmware", bundle, "--out", keep, "--force") == 0  # replaced only when asked
    assert not (keep / "notes.txt").exists() and (keep / "model_check.c").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_run_refuses_a_non_empty_out_folder_and_keeps_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    recipe = write_recipe(tmp_path, "name: r\nmodel: {source: tiny-random, family: bert}\ntargets:\n  - target: x86-cpu\n"
                                    "    variants: [{name: a, backend: onnxruntime}]\n")
    assert _cli("run", recipe, "--out", out) == 2
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    search = write_recipe(tmp_path, "name: s\nmodel: {source: tiny-random, family: bert}\nsearch:\n  layers: [all]\n",
                          "search.yaml")
    assert _cli("search", search, "--out", out) == 2
    assert [p.name for p in out.iterdir()] == ["precious.txt"]


def test_compare_and_bench_refuse_to_overwrite_and_leave_no_temp_files(tiny_run, tmp_path):
    report = tiny_run["out"] / "report.json"
    page = tmp_path / "page.html"
    page.write_text("mine")
    assert _cli("compare", report, "--html", page) == 2 and page.read_text() == "mine"
    assert _cli("compare", report, "--html", tmp_path) == 2  # a folder
    assert _cli("compare", report, "--html", page, "--force") == 0 and "<!DOCTYPE html>" in page.read_text()
    out = tmp_path / "bench.json"
    out.write_text("{}")
    bundle = tiny_run["out"] / "bundles" / "ort-fp32"
    assert _cli("bench", bundle, "--json", out, "--runs", 2, "--seconds", 0, "--warmup", 0) == 2
    assert out.read_text() == "{}"
    assert _cli("bench", bundle, "--json", out, "--runs", 2, "--seconds", 0, "--warmup", 0, "--force") == 0
    assert json.loads(out.read_text())["latency_ms"]["runs"] >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "page.html"]


def test_search_publish_refuses_to_overwrite_without_force(tmp_path, monkeypatch):
    from edgeslim import cli

    published = tmp_path / "published"
    published.mkdir()
    (published / "report.json").write_text("old")
    out = tmp_path / "run"
    out.mkdir()
    for name in ("report.json", "report.md", "trials.json", "p.png"):
        (out / name).write_text(f"new {name}")

    class FakeReport:
        search = {"plots": ["p.png"]}

    with pytest.raises(Exception, match="exists; choose another path or pass --force"):
        cli._publish(out, published, FakeReport(), force=False)
    assert (published / "report.json").read_text() == "old" and not (published / "report.md").exists()
    cli._publish(out, published, FakeReport(), force=True)
    assert (published / "report.json").read_text() == "new report.json"


# 2. Threads -----------------------------------------------------------------------------------

THREAD_TEXTS = [("word " * (1 + (i * 7) % 40)).strip() + f" {i}" for i in range(24)]


def _thread_check(bundle: Path, threads: int = 4, rounds: int = 6) -> None:
    """N threads share one encoder; every call (mixed lengths, so several static shapes) must give
    exactly what the same call gives serially."""
    encoder = load(bundle, threads=1)
    batches = [THREAD_TEXTS[i:i + 1 + i % 3] for i in range(len(THREAD_TEXTS))]
    serial = [encoder.encode(batch) for batch in batches]
    jobs = [(i, batch) for _ in range(rounds) for i, batch in enumerate(batches)]
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda job: (job[0], encoder.encode(job[1])), jobs))
    mismatches = sum(not np.array_equal(out, serial[i]) for i, out in results)
    assert mismatches == 0, f"{mismatches} of {len(results)} concurrent calls differ from serial ones"


@pytest.mark.parametrize("bundle", ["ort-int8-dynamic", "ov-int8"])
def test_shared_encoder_is_thread_safe_onnxruntime_openvino(tiny_run, bundle):
    _thread_check(tiny_run["out"] / "bundles" / bundle)


def test_shared_encoder_is_thread_safe_openvino_static_shapes(npu_jetson_run):
    _thread_check(npu_jetson_run["out"] / "bundles" / "npu-int8")


@pytest.mark.parametrize("bundle", ["litert-fp32", "litert-int8-dynamic"])
def test_shared_encoder_is_thread_safe_litert(arm_run, bundle):
    _thread_check(arm_run["out"] / "bundles" / bundle, rounds=2)


def test_shared_encoder_is_thread_safe_litert_body(ethos_run):
    _thread_check(ethos_run["out"] / "bundles" / "npu-int16-mixed", rounds=1)


def test_shared_encoder_is_thread_safe_static(static_run):
    _thread_check(static_run[1])


# 3. Files from outside the bundle -------------------------------------------------------------

@pytest.mark.parametrize("device_model", ["/etc/passwd", "../outside.tflite", "model.tflite/../../x"])
def test_manifest_cannot_name_a_file_outside_the_bundle(ethos_run, tmp_path, device_model):
    bundle = _copy(ethos_run["out"] / "bundles" / "npu-int16-mixed", tmp_path)

    def point_outside(manifest):
        for body in manifest["backend_options"]["bodies"].values():
            body["device_model"] = device_model
    _rewrite_manifest(bundle, point_outside)
    with pytest.raises(BundleError, match="not a plain relative path"):
        load(bundle)
    assert _cli("export-firmware", bundle, "--out", tmp_path / "fw") == 2
    assert not (tmp_path / "fw").exists()


def test_files_named_by_options_must_be_listed(ethos_run, tiny_run, tmp_path):
    body = _copy(ethos_run["out"] / "bundles" / "npu-int16-mixed", tmp_path, "body")
    _rewrite_manifest(body, lambda m: (m["files"].pop("prelude.npz"), m["file_sizes"].pop("prelude.npz")))
    with pytest.raises(BundleError, match=r"\['prelude.npz'\] are named by the manifest but not listed"):
        load(body)
    ov = _copy(tiny_run["out"] / "bundles" / "ov-int8", tmp_path, "ov")
    _rewrite_manifest(ov, lambda m: (m["files"].pop("model.bin"), m["file_sizes"].pop("model.bin")))
    with pytest.raises(BundleError, match=r"\['model.bin'\] are named by the manifest but not listed"):
        load(ov)


def test_unlisted_onnx_external_data_is_not_used(tiny_run, tmp_path):
    import onnx

    from edgeslim.runtime.bundle import sha256_file

    bundle = _copy(tiny_run["out"] / "bundles" / "ort-fp32", tmp_path)
    model = onnx.load(str(bundle / "model.onnx"))
    onnx.save_model(model, str(bundle / "model.onnx"), save_as_external_data=True, location="weights.data",
                    size_threshold=0)
    assert (bundle / "weights.data").is_file()

    def relist(manifest):
        manifest["files"]["model.onnx"] = sha256_file(bundle / "model.onnx")
        manifest["file_sizes"]["model.onnx"] = (bundle / "model.onnx").stat().st_size
    _rewrite_manifest(bundle, relist)
    with pytest.raises(BackendError, match="onnxruntime cannot load model.onnx"):
        load(bundle)


def test_symlinks_out_of_the_bundle_are_refused(tiny_run, npu_jetson_run, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    bundle = _copy(tiny_run["out"] / "bundles" / "ort-fp32", tmp_path)
    shutil.move(bundle / "tokenizer.json", outside / "tokenizer.json")
    (bundle / "tokenizer.json").symlink_to(outside / "tokenizer.json")
    with pytest.raises(BundleError, match="tokenizer.json resolves to .*, outside the bundle folder"):
        load(bundle)
    jetson = _copy(npu_jetson_run["out"] / "bundles" / "trt-fp16", tmp_path, "jetson")
    assert "jetson/build_and_bench.sh" in read_manifest(jetson).files  # subfolders are hashed too
    shutil.move(jetson / "jetson", outside / "jetson")
    (jetson / "jetson").symlink_to(outside / "jetson", target_is_directory=True)
    with pytest.raises(BundleError, match="outside the bundle folder"):
        load(jetson)


def test_a_symlink_inside_the_bundle_to_a_listed_file_is_allowed(tiny_run, tmp_path):
    bundle = _copy(tiny_run["out"] / "bundles" / "ort-fp32", tmp_path)
    (bundle / "tokenizer.json").rename(bundle / "tok.json")
    (bundle / "tokenizer.json").symlink_to("tok.json")
    _rewrite_manifest(bundle, lambda m: (m["files"].update({"tok.json": m["files"]["tokenizer.json"]}),
                                         m["file_sizes"].update({"tok.json": m["file_sizes"]["tokenizer.json"]})))
    assert load(bundle).encode(["fine"]).shape == (1, 32)


def test_openvino_options_that_name_paths_are_refused(tiny_run, tmp_path):
    bundle = _copy(tiny_run["out"] / "bundles" / "ov-int8", tmp_path)
    _rewrite_manifest(bundle, lambda m: m["backend_options"]["config"].update({"CACHE_DIR": str(tmp_path / "c")}))
    with pytest.raises(BundleError, match=r"CACHE_DIR.*not allowed in a bundle; allowed: \['INFERENCE_PRECISION"):
        load(bundle)
    assert not (tmp_path / "c").exists()
    with pytest.raises(BundleError, match="unknown key; allowed keys"):
        load(tiny_run["out"] / "bundles" / "ov-int8", backend_options={"weights_path": "/tmp/w.bin"})


def test_edited_files_that_backends_open_are_caught(ethos_run, tiny_run, tmp_path):
    for source, name in ((ethos_run["out"] / "bundles" / "npu-int16-mixed", "prelude.npz"),
                         (tiny_run["out"] / "bundles" / "ov-int8", "model.bin")):
        bundle = _copy(source, tmp_path, source.name)
        data = bytearray((bundle / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (bundle / name).write_bytes(bytes(data))
        with pytest.raises(BundleError, match=f"checksum mismatch for {name}"):
            load(bundle)


# 4. Hangs -------------------------------------------------------------------------------------

def _load_in_subprocess(bundle: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    script = ("import sys; from edgeslim.runtime import load; from edgeslim.errors import BundleError\n"
              f"try:\n    load({str(bundle)!r})\nexcept BundleError as exc:\n    print('BundleError:', exc)")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)


def test_manifest_that_is_a_fifo_or_a_device_does_not_hang(tiny_run, tmp_path):
    fifo = _copy(tiny_run["out"] / "bundles" / "ort-fp32", tmp_path, "fifo")
    (fifo / MANIFEST_NAME).unlink()
    os.mkfifo(fifo / MANIFEST_NAME)
    assert "is not a regular file" in _load_in_subprocess(fifo).stdout
    zero = _copy(tiny_run["out"] / "bundles" / "ort-fp32", tmp_path, "zero")
    (zero / MANIFEST_NAME).unlink()
    (zero / MANIFEST_NAME).symlink_to("/dev/zero")
    assert "outside the bundle folder" in _load_in_subprocess(zero).stdout
    assert _cli("verify", fifo) == 2


# 5. Typed errors ------------------------------------------------------------------------------

WRONG_VALUES = [None, "text", 7, -1, 2.5, True, [], {}, ["x"], {"k": "v"}]


def test_every_manifest_field_with_a_wrong_type_is_a_bundle_error(tiny_run, tmp_path):
    """Each top-level field replaced by each wrong value: a BundleError or a bundle that still
    loads (where the value is allowed), never another exception."""
    source = tiny_run["out"] / "bundles" / "ort-int8-dynamic"
    fields = list(json.loads((source / MANIFEST_NAME).read_text()))
    bundle = _copy(source, tmp_path)
    original = (bundle / MANIFEST_NAME).read_text()
    refused = 0
    for field in fields:
        for value in WRONG_VALUES:
            (bundle / MANIFEST_NAME).write_text(original)
            _rewrite_manifest(bundle, lambda m: m.__setitem__(field, value))
            try:
                load(bundle).encode(["still fine"])
            except BundleError:
                refused += 1
    print(f"{len(fields) * len(WRONG_VALUES)} manifests with one wrong field, {refused} refused with BundleError")
    assert refused >= len(fields) * len(WRONG_VALUES) * 0.8


def test_normalize_as_a_string_is_refused(tiny_run, tmp_path):
    bundle = _copy(tiny_run["out"] / "bundles" / "ort-fp32", tmp_path)
    _rewrite_manifest(bundle, lambda m: m.__setitem__("normalize", "false"))
    with pytest.raises(BundleError, match="normalize: Input should be a valid boolean"):
        load(bundle)


def test_token_ids_dtypes_and_masks_are_validated_by_the_runtime(tiny_bundle):
    encoder = load(tiny_bundle)
    ids, mask = np.array([[2, 40, 3]]), np.ones((1, 3), np.int64)
    reference = encoder.embed_tokens(ids, mask)
    np.testing.assert_array_equal(encoder.embed_tokens(ids.astype(np.int32), mask.astype(np.int32)), reference)
    cases = [
        (ids.astype(np.float32), mask, "must hold integers"),
        (ids + encoder.vocabulary_size, mask, "token ids out of range"),
        (-ids, mask, "token ids out of range"),
        (np.zeros((1, 0), np.int64), np.zeros((1, 0), np.int64), "is empty"),
        (ids, np.zeros_like(mask), "all zero"),
        (ids, mask * 2, "0 and 1 only"),
        (ids.tolist(), mask, "must be a numpy array"),
    ]
    for bad_ids, bad_mask, match in cases:
        with pytest.raises(InputError, match=match):
            encoder.embed_tokens(bad_ids, bad_mask)


def test_lone_surrogates_are_an_input_error(tiny_bundle):
    with pytest.raises(InputError, match=r"indices \[1\] are not valid Unicode text"):
        load(tiny_bundle).encode(["fine", "bad \udcff text"])


@pytest.mark.parametrize("text, match", [
    ("name: x\nmodel: " + "[" * 200 + "]" * 200, "nested too deeply"),
    ("name: x\nbenchmark: {warmup: " + "9" * 5000 + "}\n", "cannot be read|warmup"),
])
def test_hostile_recipes_are_recipe_errors(tmp_path, text, match):
    from edgeslim.recipe import load_recipe

    with pytest.raises(RecipeError, match=match):
        load_recipe(write_recipe(tmp_path, text))


def test_non_utf8_recipe_and_report_are_typed_errors_with_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: \xff\xfe\n")
    assert _cli("recipe", "check", bad) == 2
    report = tmp_path / "report.json"
    report.write_bytes(b"{\"schema\": \"\xff\"}")
    assert _cli("compare", report) == 2
    (tmp_path / "broken.json").write_text("{}")
    assert _cli("compare", tmp_path / "broken.json") == 2


def test_bench_rejects_bad_numbers_and_runs_the_threads_it_reports(tiny_run):
    from edgeslim.benchmarks.bench_bundle import bench_bundle

    bundle = tiny_run["out"] / "bundles" / "ort-fp32"
    assert _cli("bench", bundle, "--batch", -1) == 2
    assert _cli("bench", bundle, "--runs", 0) == 2
    assert _cli("bench", bundle, "--seconds", -3) == 2
    result = bench_bundle(bundle, warmup=0, min_runs=2)
    assert result["latency_ms"]["threads"] == read_manifest(bundle).budget["threads"] == 1
    encoder = load(bundle, threads=result["latency_ms"]["threads"])
    assert encoder.backend.session.get_session_options().intra_op_num_threads == 1


# 6. No code from model files -------------------------------------------------------------------

class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_pruned_model_and_checkpoint_files_cannot_run_code(tiny_model, tmp_path):
    import torch

    from edgeslim.compress.configs import DistillConfig
    from edgeslim.compress.distill import distill
    from edgeslim.compress.prune import load_pruned

    marker = tmp_path / "pwned"
    hostile = tmp_path / "pruned.pt"
    torch.save({"config": {}, "layers": [], "state_dict": _Payload(marker)}, hostile)
    with pytest.raises(StepError, match="not a pruned model saved by edgeslim"):
        load_pruned(hostile)
    assert not marker.exists()
    with open(tmp_path / "plain.pkl", "wb") as handle:
        pickle.dump(_Payload(marker), handle)
    with pytest.raises(StepError):
        load_pruned(tmp_path / "plain.pkl")
    assert not marker.exists()

    cfg = DistillConfig(keep_layers=(0,), sentences=32, batch_size=8, epochs=1, checkpoint_every=1)
    workdir = tmp_path / "distill"
    texts = [f"sentence {i}" for i in range(32)]
    distill(tiny_model, cfg, texts, workdir, log=lambda _: None, progress=False)
    checkpoints = list(workdir.rglob("*.pt"))
    assert checkpoints
    for checkpoint in checkpoints:
        torch.save({"step": 1, "student": _Payload(marker)}, checkpoint)
    with pytest.raises(StepError, match="holds more than tensors"):
        distill(tiny_model, cfg, texts, workdir, log=lambda _: None, progress=False)
    assert not marker.exists()



@pytest.mark.parametrize("bundle", ["ort-int8-dynamic", "ov-int8"])
def test_load_test_threads_and_processes_match_serial(tiny_run, bundle):
    """benchmarks/load_test.py, briefly: 2 processes x 3 threads on one shared encoder each; its
    figures are printed, the correctness of every result is asserted."""
    from edgeslim.benchmarks.load_test import load_test

    result = load_test(tiny_run["out"] / "bundles" / bundle, threads=3, processes=2, seconds=2.0)
    print(result)
    assert result["calls"] > 0 and result["errors"] == 0 and result["mismatches"] == 0
