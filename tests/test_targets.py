"""One contract, every registered target."""

import dataclasses

import pytest

from edgeslim.targets.base import ExportContext

from edgeslim.benchmarks.budget import check
from edgeslim.benchmarks.report import Accuracy, Latency, Result
from edgeslim.calibration_data import load_corpus
from edgeslim.compress import TorchModel, OpenVinoConvertConfig, StepContext, apply_step
from edgeslim.compress.export import export_onnx
from edgeslim.errors import TargetError
from edgeslim.targets import TARGETS, Budget, DeviceProfile, Target, get_target


@pytest.fixture(scope="module")
def artifacts(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("target-artifacts")
    texts = load_corpus("wordnet-calibration").texts
    onnx_model, _ = export_onnx(tiny_model, folder / "model.onnx", texts[:8])
    ctx = StepContext(folder, texts, tiny_model, log=lambda _: None)
    ov_model, _ = apply_step(onnx_model, OpenVinoConvertConfig(), ctx)
    from edgeslim.compress.configs import StaticEmbeddingConfig
    from edgeslim.compress.static import make_static

    static_table, _, _ = make_static(tiny_model, StaticEmbeddingConfig(), folder)
    from edgeslim.compress import LiteRtConvertConfig

    litert_ctx = StepContext(folder, texts, tiny_model, log=lambda _: None)
    litert_model, _ = apply_step(TorchModel(tiny_model), LiteRtConvertConfig(parity_samples=2), litert_ctx)
    from edgeslim.compress import NpuBodyQuantizeConfig

    body_ctx = StepContext(folder / "body", texts, tiny_model, log=lambda _: None)
    body_ctx.workdir.mkdir()
    npu_body, _ = apply_step(TorchModel(tiny_model), NpuBodyQuantizeConfig(calibration_samples=8), body_ctx)
    from edgeslim.compress import OpenVinoStaticShapesConfig

    static_ctx = StepContext(folder / "static", texts, tiny_model, log=lambda _: None)
    static_ctx.workdir.mkdir()
    ov_static, _ = apply_step(ov_model, OpenVinoStaticShapesConfig(seq_lengths=(16, 64)), static_ctx)
    return {"onnxruntime": onnx_model, "openvino": ov_model, "static": static_table, "litert": litert_model,
            "litert-body": npu_body, "intel-npu:openvino": ov_static, "litert-int8": _full_int8_image_model(folder)}


def _full_int8_image_model(folder):
    """A tiny random ResNet as a full-integer LiteRT graph, calibrated on random-pixel PNGs."""
    import numpy as np
    from PIL import Image

    from edgeslim.compress import LiteRtConvertConfig
    from edgeslim.compress.configs import LiteRtInt8FullConfig
    from edgeslim.models import load_encoder
    from edgeslim.recipe import ModelSpec

    work = folder / "image"
    work.mkdir()
    rng = np.random.default_rng(0)
    images = []
    for i in range(8):
        images.append(str(work / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images[-1])
    model = load_encoder(ModelSpec(source="tiny-random", family="resnet"))
    ctx = StepContext(work, tuple(images), model, log=lambda _: None)
    float_model, _ = apply_step(TorchModel(model), LiteRtConvertConfig(parity_samples=2), ctx)
    int8_model, _ = apply_step(float_model, LiteRtInt8FullConfig(calibration_samples=8), ctx)
    return int8_model


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_contract(name, artifacts, tiny_model, tmp_path):
    target = TARGETS[name]
    assert target.name == name and target.description
    assert target.latency_kind in ("measured", "estimated")
    assert isinstance(target.default_budget, Budget)
    # A latency limit of some kind: absolute on a device, a same-run ratio on a measured host.
    assert (target.default_budget.p95_ms or target.default_budget.min_speedup) and target.default_budget.max_size_mb
    if target.latency_kind == "estimated":  # an estimate has no same-run ratio to check
        assert target.default_budget.p95_ms and not target.default_budget.min_speedup
    for backend in target.backends:  # a waiver is a reason or nothing
        assert target.waiver(backend, int8=True) is None or len(target.waiver(backend, int8=True)) > 40
    assert target.default_budget.min_teacher_cosine and 0 < target.default_budget.min_teacher_cosine <= 1
    profile = target.profile()
    assert isinstance(profile, DeviceProfile)
    assert profile.cores >= 1 and profile.ram_mb > 0 and profile.peak_int8_macs_per_s >= profile.peak_fp32_macs_per_s
    assert target.backends and set(target.backend_options) == set(target.backends)
    for backend in target.backends:
        bundle = tmp_path / backend
        bundle.mkdir()
        tiny_model.tokenizer.save(str(bundle / "tokenizer.json"))  # the pipeline writes it before export
        artifact = artifacts.get(f"{name}:{backend}", artifacts[backend])
        if artifact.kind not in target.accepts[backend]:  # e.g. Ethos-U's litert: whole full-int8 image graphs
            artifact = next(a for a in artifacts.values() if a.kind in target.accepts[backend])
        files = target.export(artifact, backend, ExportContext(bundle, 64, 32))
        assert files.model_file in files.files and all((bundle / f).is_file() for f in files.files)
    with pytest.raises(TargetError, match="no backend 'nonesuch'"):
        target.export(artifacts["onnxruntime"], "nonesuch", ExportContext(tmp_path, 64, 32))


def test_x86_openvino_text_bundles_get_sequence_buckets_up_to_their_length(artifacts, tmp_path):
    x86 = get_target("x86-cpu")
    for length, buckets in ((64, [16, 32, 64]), (128, [16, 32, 64, 128]), (512, [16, 32, 64, 128, 512])):
        bundle = tmp_path / str(length)
        bundle.mkdir()
        files = x86.export(artifacts["openvino"], "openvino", ExportContext(bundle, length, 32))
        assert files.backend_options["sequence_buckets"] == buckets
    bf16 = tmp_path / "bf16"  # bf16 float parts: padding changes the embeddings, so no buckets
    bf16.mkdir()
    assert "sequence_buckets" not in x86.export(dataclasses.replace(artifacts["openvino"], inference_precision="bf16"),
                                                "openvino", ExportContext(bf16, 128, 32)).backend_options
    images = tmp_path / "images"  # no sequence: no buckets
    images.mkdir()
    assert "sequence_buckets" not in x86.export(artifacts["openvino"], "openvino",
                                                ExportContext(images, None, 32)).backend_options


def test_x86_rejects_a_model_its_backend_cannot_run(artifacts, tmp_path):
    with pytest.raises(TargetError, match="openvino_convert"):
        get_target("x86-cpu").export(artifacts["onnxruntime"], "openvino", ExportContext(tmp_path, 64, 32))


def test_unknown_target_lists_registered_ones():
    with pytest.raises(TargetError, match="registered targets: .*x86-cpu"):
        get_target("pdp-11")


def test_host_profile_reads_this_machine():
    profile = get_target("x86-cpu").profile()
    assert profile.source == "host" and profile.cores >= 1


def _result(p95=5.0, size=10.0, cosine=0.995, stsb=81.5, speedup=1.0):
    return Result(
        name="x", target="x86-cpu", backend="onnxruntime", bundle=None, size_mb=size, peak_rss_mb=100.0,
        latency_ms=Latency(p50=4, p90=4.5, p95=p95, p99=6, batch=1, seq_len=128, threads=1, runs=100,
                           kind="measured", where="test"),
        accuracy=Accuracy(teacher_cosine_mean=cosine, teacher_cosine_min=0.9, eval_set="e", eval_sentences=10,
                          disjoint_from_calibration=True, overlap_with_calibration=0,
                          metrics=[] if stsb is None else [{"name": "stsb_spearman", "label": "STS-B", "value": stsb}]),
        speedup_vs_baseline=speedup,
    )


def test_budget_verdicts():
    budget = Budget(p95_ms=10, max_size_mb=20, min_teacher_cosine=0.99, min_stsb_spearman=81)
    assert check(_result(), budget).passed
    verdict = check(_result(p95=12, cosine=0.98), budget)
    assert not verdict.passed
    assert {c.name for c in verdict.checks if c.passed is False} == {"p95_ms", "teacher_cosine_mean"}
    unmeasured = check(_result(stsb=None), budget)
    assert unmeasured.passed and unmeasured.unverified == ["stsb_spearman"]
    assert [c.name for c in check(_result(), Budget(max_size_mb=1)).checks] == ["size_mb"]


def test_the_host_budget_is_a_same_run_ratio_not_milliseconds():
    budget = get_target("x86-cpu").default_budget
    assert budget.p95_ms is None and budget.min_speedup == 1.5
    assert check(_result(p95=500.0, speedup=2.0), budget).passed  # a slow host, a real speedup
    verdict = check(_result(p95=1.0, speedup=1.2), budget)
    assert not verdict.passed and [c.name for c in verdict.checks if c.passed is False] == ["speedup"]
    # An estimated figure has no same-run ratio: the check cannot run, so it neither passes nor fails.
    assert check(_result(speedup=None), budget).unverified == ["speedup"]


@pytest.mark.parametrize("cap, flags, expected", [
    (None, ("avx2", "avx512_vnni"), True), (None, ("avx2", "avx_vnni"), True), (None, ("avx2", "fma"), False),
    ("AVX2", ("avx2", "avx512_vnni", "amx_int8"), False), ("avx512_core", ("avx512_vnni",), False),
    ("AVX512_CORE_VNNI", ("avx512_vnni",), True), ("ALL", ("avx2",), False),
])
def test_int8_dot_product_reads_the_flags_and_the_onednn_cap(monkeypatch, cap, flags, expected):
    from dataclasses import replace

    from edgeslim.targets.host import int8_dot_product, read_host_profile

    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    else:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert int8_dot_product(replace(read_host_profile(), isa_features=flags)) is expected


def test_x86_waives_openvino_int8_only_where_its_kernels_lack_a_dot_product(monkeypatch):
    target = get_target("x86-cpu")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert "jit_gemm" in target.waiver("openvino", int8=True)
    assert target.waiver("openvino", int8=False) is None  # float OpenVINO is not waived
    assert target.waiver("onnxruntime", int8=True) is None  # MLAS int8 does not need VNNI
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    from edgeslim.targets.host import int8_dot_product

    assert (target.waiver("openvino", int8=True) is None) == int8_dot_product()


class ToyBoard(Target):
    """A new target is one class and one registration: an ONNX Runtime board, estimated."""

    name = "toy-board"
    description = "a toy board for the contract test: onnxruntime, roofline estimate"
    accepts = {"onnxruntime": ("onnx",)}
    backend_options = {"onnxruntime": {"providers": ["CPUExecutionProvider"]}}
    default_budget = Budget(p95_ms=100.0, max_size_mb=10.0, min_teacher_cosine=0.9)

    def profile(self) -> DeviceProfile:
        return DeviceProfile(name="toy", cores=2, clock_ghz=1.0, isa_features=(), peak_fp32_macs_per_s=1e9,
                             peak_int8_macs_per_s=4e9, memory_bandwidth_gbs=1.0, ram_mb=512)


def test_a_registered_toy_target_passes_the_contract(artifacts, tiny_model, tmp_path):
    from edgeslim.plan import plan_recipe
    from edgeslim.recipe import parse_recipe
    from edgeslim.targets import register_target
    from edgeslim.targets.base import EstimateInput

    register_target(ToyBoard())
    try:
        test_target_contract("toy-board", artifacts, tiny_model, tmp_path)
        recipe = parse_recipe("name: toy\nmodel: {source: tiny-random, family: bert}\ntargets:\n  - target: toy-board\n"
                              "    variants:\n      - {name: a, backend: onnxruntime, steps: [{step: int8_dynamic}]}\n",
                              tmp_path / "toy.yaml")
        assert plan_recipe(recipe).variants[0].chain() == ["export_onnx", "int8_dynamic"]
        model_file = artifacts["onnxruntime"].path
        estimate = TARGETS["toy-board"].estimate(EstimateInput(tmp_path, None, (model_file,), 1e9, True),
                                                 Budget(threads=1))
        assert estimate.ms == 500.0 and estimate.where.startswith("estimated: roofline on toy")
    finally:
        TARGETS.pop("toy-board")


# Calibration and held-out data of each modality (plans only: nothing is loaded).
MODALITY_DATA = {"text": ("wordnet-calibration", "wordnet-heldout"), "image": ("cifar10-train", "cifar10-heldout"),
                 "audio": ("fsdd-train", "fsdd-test")}


@pytest.mark.parametrize("target_name", sorted(TARGETS))
def test_every_target_plans_or_refuses_every_family(target_name, tmp_path):
    """target x family x backend: a plain variant either plans to an artifact the backend runs, or is
    refused with a PlanError that says why; nothing else escapes."""
    from edgeslim.models import FAMILIES
    from edgeslim.plan import PlanError, plan_recipe
    from edgeslim.recipe import parse_recipe

    target = TARGETS[target_name]
    for family in sorted(FAMILIES):
        for backend in target.accepts:
            pooling = FAMILIES[family].poolings[0]
            calibration, agreement = MODALITY_DATA[FAMILIES[family].modality]
            recipe = parse_recipe(
                f"name: t\nmodel: {{source: tiny-random, family: {family}, pooling: {pooling}}}\n"
                f"data: {{calibration: {calibration}, agreement: [{agreement}], stsb_split: null, probe: null}}\n"
                f"targets:\n  - target: {target_name}\n    variants:\n      - {{name: v, backend: {backend}}}\n",
                tmp_path / "t.yaml")
            try:
                planned = plan_recipe(recipe).variants[0]
            except PlanError as exc:
                assert str(exc).startswith(f"target {target_name}, variant 'v': "), str(exc)
                continue
            assert planned.final_kind in target.accepts[backend]
