"""NVIDIA Jetson (Orin Nano, Orin NX): TensorRT-ready ONNX, fp16 or explicit int8 (QDQ).

The bundle holds the ONNX graph, cleaned with onnx-graphsurgeon and linted with polygraphy
(the lint report goes into the bundle), the min/opt/max shape profiles TensorRT builds for,
and `jetson/build_and_bench.sh`, which builds the engine on the device with trtexec and runs
the kit's own latency harness there. At run time the runtime uses onnxruntime's TensorRT and
CUDA execution providers when present, in that order, and says which it got.

TensorRT does not install on this (x86, GPU-less) machine: accuracy is measured with
onnxruntime's CPU provider on the same graph, and latency is estimated from the Jetson's
profile (dense tensor-core peak, memory bandwidth), labelled so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgeslim.compress.artifacts import ModelArtifact
from edgeslim.errors import ExportError, MissingExtraError
from edgeslim.extras import install_hint
from edgeslim.targets.base import Budget, BundleFiles, DeviceProfile, ExportContext, Target

PROVIDER_PREFERENCE = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
LINT_REPORT = "polygraphy_lint.json"
SCRIPT = "jetson/build_and_bench.sh"


def shape_profiles(input_names, max_batch: int, max_seq: int, opt_seq: int) -> dict:
    return {name: {"min": [1, 1], "opt": [1, opt_seq], "max": [max_batch, max_seq]} for name in input_names}


def _symmetric_int8_qdq(model) -> tuple[int, list[str]]:
    """(QuantizeLinear count, names of those TensorRT cannot take: non-int8 or non-zero zero point)."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    bad, count = [], 0
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        count += 1
        zero = inits.get(node.input[2]) if len(node.input) > 2 else None
        if zero is None or zero.dtype != np.int8 or np.any(zero != 0):
            bad.append(node.name)
    return count, bad


def sanitize(source: Path, dest: Path) -> dict:
    """onnx-graphsurgeon clean-up; constants folded only in float graphs (folding would turn a
    QDQ graph's weight DequantizeLinear into float constants and undo explicit quantization)."""
    import onnx
    import onnx_graphsurgeon as gs

    model = onnx.load(str(source))
    qdq, bad = _symmetric_int8_qdq(model)
    if bad:
        raise ExportError(f"TensorRT's explicit quantization takes symmetric int8 Q/DQ only; {len(bad)} of {qdq} "
                          f"QuantizeLinear nodes are uint8 or have a non-zero zero point (first: {bad[0]}); "
                          "use int8_static with activation_type: int8 and symmetric_activations: true")
    nodes_before = len(model.graph.node)
    graph = gs.import_onnx(model)
    if not qdq:
        graph.fold_constants()
    graph.cleanup().toposort()
    cleaned = gs.export_onnx(graph)
    del cleaned.opset_import[:]
    cleaned.opset_import.extend(model.opset_import)  # keep the opsets the model was exported with
    cleaned.ir_version = model.ir_version
    onnx.checker.check_model(cleaned)
    tmp = dest.with_name(dest.stem + ".tmp.onnx")
    onnx.save(cleaned, str(tmp))
    os.replace(tmp, dest)
    return {"nodes_before": nodes_before, "nodes_after": len(cleaned.graph.node),
            "constants_folded": not qdq, "quantize_linear_nodes": qdq,
            "precision": "int8 (explicit QDQ, symmetric)" if qdq else _float_precision(cleaned)}


def _float_precision(model) -> str:
    from onnx import TensorProto

    fp16 = sum(1 for i in model.graph.initializer if i.data_type == TensorProto.FLOAT16)
    return "fp16" if fp16 else "fp32"


def fixed_profiles(inputs, max_batch: int) -> dict:
    """TensorRT profiles of a graph with fixed-size inputs (images, audio features): its fixed
    (C, H, W), batch 1 to max_batch."""
    profiles = {}
    for value_info in inputs:
        dims = [d.dim_value for d in value_info.type.tensor_type.shape.dim][1:]
        profiles[value_info.name] = {"min": [1, *dims], "opt": [1, *dims], "max": [max_batch, *dims]}
    return profiles


def polygraphy_lint(model_path: Path, seq: int, report: Path, profiles: dict | None = None) -> dict:
    """`polygraphy check lint` with real-range inputs (token ids in the vocabulary, mask of ones;
    for a fixed-size graph given its `profiles`, normalised values at its opt shape)."""
    exe = Path(sys.executable).with_name("polygraphy")
    exe = str(exe) if exe.is_file() else shutil.which("polygraphy")
    if not exe:
        raise MissingExtraError(f"polygraphy is not installed; it lints Jetson bundles: {install_hint(['jetson'])}")
    if profiles is None:
        inputs = ["--input-shapes", f"input_ids:[1,{seq}]", f"attention_mask:[1,{seq}]",
                  "--val-range", "input_ids:[0,100]", "attention_mask:[1,1]"]
    else:
        inputs = ["--input-shapes", *[f"{name}:{p['opt']}".replace(" ", "") for name, p in profiles.items()],
                  "--val-range", *[f"{name}:[-2,2]" for name in profiles]]
    cmd = [exe, "check", "lint", str(model_path), "-o", str(report), *inputs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if not report.is_file():
        raise ExportError(f"polygraphy lint did not run on {model_path.name}:\n{(proc.stdout + proc.stderr)[-1500:]}")
    result = json.loads(report.read_text())
    errors = [e for e in result.get("lint_entries", result.get("linting_entries", [])) if e.get("level") == "error"]
    if proc.returncode != 0 or errors:
        raise ExportError(f"polygraphy lint found {len(errors)} error(s) in {model_path.name}: "
                          f"{[e.get('message', '')[:200] for e in errors[:3]]}")
    summary = result.get("summary", {})
    return {"tool": "polygraphy check lint", "nodes_passing": len(summary.get("passing", [])),
            "nodes_failing": len(summary.get("failing", [])), "errors": 0,
            "warnings": sum(1 for e in result.get("lint_entries", []) if e.get("level") == "warning"),
            "report": LINT_REPORT}


_SCRIPT = """#!/usr/bin/env bash
# Build the TensorRT engine for this bundle on the Jetson, then time it with trtexec and with
# edgeslim's own harness (`edgeslim bench`, onnxruntime TensorRT/CUDA providers).
# Needs JetPack (TensorRT's trtexec) and `pip install "edgeslim[runtime]"` with onnxruntime-gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
TRTEXEC=${{TRTEXEC:-/usr/src/tensorrt/bin/trtexec}}
"$TRTEXEC" --onnx=model.onnx --saveEngine=model.plan {precision} \\
    --minShapes={min} --optShapes={opt} --maxShapes={max} \\
    2>&1 | tee jetson/trtexec_build.log
"$TRTEXEC" --loadEngine=model.plan --shapes={opt} --warmUp=1000 --iterations=200 \\
    --percentile=50,90,95,99 --exportTimes=jetson/trtexec_times.json 2>&1 | tee jetson/trtexec_run.log
edgeslim bench . --json jetson/bench.json
"""


def _shape_arg(profiles: dict, key: str) -> str:
    return ",".join(f"{name}:{'x'.join(map(str, p[key]))}" for name, p in profiles.items())


class Jetson(Target):
    accepts = {"onnxruntime": ("onnx",)}
    extras = ("jetson",)
    backend_options = {"onnxruntime": {"providers": PROVIDER_PREFERENCE, "providers_policy": "first-available"}}

    def __init__(self, name: str, description: str, profile: DeviceProfile, budget: Budget, max_batch: int = 8):
        self.name, self.description = name, description
        self._profile, self.default_budget, self.max_batch = profile, budget, max_batch

    def profile(self) -> DeviceProfile:
        return self._profile

    def export(self, artifact: ModelArtifact, backend: str, ctx: ExportContext) -> BundleFiles:
        import onnx

        self.check_artifact(artifact, backend)
        bundle_dir = ctx.bundle_dir
        model_path = bundle_dir / "model.onnx"
        record = sanitize(artifact.path, model_path)
        graph = onnx.load(str(model_path), load_external_data=False).graph
        names = [i.name for i in graph.input]
        fixed = len(graph.input[0].type.tensor_type.shape.dim) == 4  # one (batch, C, H, W) tensor: images, audio
        seq = None if fixed else _static_or(graph.input[0], 1, ctx.max_seq_length or 128)
        profiles = fixed_profiles(graph.input, self.max_batch) if fixed else shape_profiles(names, self.max_batch, seq, seq)
        lint = polygraphy_lint(model_path, seq, bundle_dir / LINT_REPORT, profiles if fixed else None)
        precision = "--fp16 --int8" if record["quantize_linear_nodes"] else ("--fp16" if record["precision"] == "fp16" else "")
        script = bundle_dir / SCRIPT
        script.parent.mkdir(exist_ok=True)
        script.write_text(_SCRIPT.format(precision=precision, min=_shape_arg(profiles, "min"),
                                         opt=_shape_arg(profiles, "opt"), max=_shape_arg(profiles, "max")))
        script.chmod(0o755)
        return BundleFiles("model.onnx", ("model.onnx", LINT_REPORT, SCRIPT),
                           backend_options={"shape_profiles": profiles, "tensorrt_precision": record["precision"],
                                            "graph": record, "lint": lint,
                                            "tensorrt_on_this_machine": _tensorrt_here()})


def _static_or(value_info, axis: int, default: int) -> int:
    dim = value_info.type.tensor_type.shape.dim
    return dim[axis].dim_value if len(dim) > axis and dim[axis].dim_value > 0 else default


def _tensorrt_here() -> str:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        return "tensorrt importable"
    return "not installed (x86 host without an NVIDIA GPU): engine not built here, latency estimated"


def _orin(name: str, int8_dense_tops: float, fp16_dense_tflops: float, bandwidth: float, ram_mb: int,
          cores: int, gpu: str, gpu_ghz: float) -> DeviceProfile:
    # Dense (not sparse) GPU tensor-core peaks from NVIDIA's module data sheets (DLAs not
    # counted); 2 ops per MAC. fp32: 1024 CUDA cores x 1 FMA per cycle.
    return DeviceProfile(name=name, cores=1, clock_ghz=gpu_ghz,
                         isa_features=("cuda", "tensor cores", "int8", "fp16"),
                         peak_fp32_macs_per_s=1024 * gpu_ghz * 1e9,
                         peak_int8_macs_per_s=int8_dense_tops * 1e12 / 2,
                         peak_fp16_macs_per_s=fp16_dense_tflops * 1e12 / 2,
                         memory_bandwidth_gbs=bandwidth, ram_mb=ram_mb, source="datasheet",
                         notes=f"{gpu}; {cores} Cortex-A78AE CPU cores; unified LPDDR5; dense peaks (sparse "
                               "figures are 2x); float runs as fp16 under TensorRT --fp16")


JETSON_ORIN_NANO = Jetson(
    "jetson-orin-nano", "NVIDIA Jetson Orin Nano 8GB: TensorRT-ready ONNX (fp16 or int8 QDQ), latency estimated",
    _orin("NVIDIA Jetson Orin Nano 8GB", int8_dense_tops=20.0, fp16_dense_tflops=10.0, bandwidth=68.0,
          ram_mb=8192, cores=6, gpu="1024-core Ampere GPU, 32 tensor cores @ 625 MHz", gpu_ghz=0.625),
    Budget(p95_ms=10.0, max_size_mb=100.0, max_peak_rss_mb=2000.0, min_teacher_cosine=0.99, min_stsb_spearman=81.0),
)
JETSON_ORIN_NX = Jetson(
    "jetson-orin-nx", "NVIDIA Jetson Orin NX 16GB: TensorRT-ready ONNX (fp16 or int8 QDQ), latency estimated",
    _orin("NVIDIA Jetson Orin NX 16GB", int8_dense_tops=30.0, fp16_dense_tflops=15.0, bandwidth=102.4,
          ram_mb=16384, cores=8, gpu="1024-core Ampere GPU, 32 tensor cores @ 918 MHz", gpu_ghz=0.918),
    Budget(p95_ms=5.0, max_size_mb=100.0, max_peak_rss_mb=2000.0, min_teacher_cosine=0.99, min_stsb_spearman=81.0),
)
