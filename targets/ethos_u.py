"""Arm Ethos-U microNPUs (U55-128, U65-256, U85-256): integer graphs compiled by Vela.

Two kinds of bundle:

- text (`litert-body`): the integer encoder body as LiteRT runs it on the host (`model.tflite`,
  where accuracy is measured), the same body compiled by Vela (`model_vela.tflite`, what the
  firmware flashes), the CPU prelude tables and the tokenizer;
- images and audio (`litert`): the whole full-integer model (int8 in, int8 out) and its Vela
  graph; the application CPU only prepares and quantizes the input (image resize/normalise, the
  audio front end: the manifest says how, the firmware header carries it).

Latency is Vela's own performance estimate for the NPU (cycles at the system config's clock);
memory is Vela's SRAM/DRAM/flash use, checked against the device's SRAM; the report lists
every operator Vela leaves to the CPU.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from edgeslim.compress.artifacts import ModelArtifact
from edgeslim.errors import ExportError, MissingExtraError
from edgeslim.extras import install_hint
from edgeslim.runtime.manifest import LiteRtBodyOptions, backend_options
from edgeslim.targets.base import (Budget, BundleFiles, DeviceProfile, Estimate, EstimateInput, ExportContext, Target,
                                  copy_artifact, round_ms)

def vela_executable() -> str:
    beside = Path(sys.executable).with_name("vela")  # the venv's own, even when not on PATH
    found = str(beside) if beside.is_file() else shutil.which("vela")
    if not found:
        raise MissingExtraError(f"Vela (ethos-u-vela) is not installed; it compiles Ethos-U bundles: "
                                f"{install_hint(['ethos-u'])}")
    return found


def run_vela(model: Path, accelerator: str, out_dir: Path) -> tuple[Path, Path, list[str]]:
    """Compile `model` for `accelerator`: (compiled .tflite, summary .csv, CPU operator lines)."""
    proc = subprocess.run([vela_executable(), str(model), "--accelerator-config", accelerator, "--output-dir",
                           str(out_dir), "--show-cpu-operations"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ExportError(f"Vela failed for {accelerator} on {model.name} (exit {proc.returncode}):\n"
                          f"{(proc.stdout + proc.stderr)[-2000:]}")
    compiled = out_dir / f"{model.stem}_vela.tflite"
    summaries = sorted(out_dir.glob(f"{model.stem}_summary_*.csv"))
    if not compiled.is_file() or not summaries:
        raise ExportError(f"Vela reported success but wrote no compiled model or summary in {out_dir}")
    cpu_lines = [re.sub(r"\s+", " ", line.strip()) for line in proc.stdout.splitlines()
                 if line.strip().startswith("CPU:")]
    return compiled, summaries[0], cpu_lines


def read_summary(source: Path | str) -> dict:
    """Vela's summary CSV (its one row) from a path, or from its text (a bundle's, verified)."""
    text = source if isinstance(source, str) else Path(source).read_text()
    try:
        return next(csv.DictReader(io.StringIO(text, newline="")))
    except StopIteration:
        raise ExportError("Vela's summary CSV has no row") from None


def _npu_graphs(manifest, bundle_dir) -> dict[str, dict]:
    """The bundle's NPU graphs by key (a text body's static length, or "whole" for a whole model), as dicts."""
    options = backend_options(manifest.backend, manifest.backend_options, str(bundle_dir))
    bodies = dict(options.bodies or {}) if isinstance(options, LiteRtBodyOptions) else (
        {"whole": options.npu} if options.npu is not None else {})
    return {key: body.model_dump() for key, body in bodies.items()}


class EthosU(Target):
    accepts = {"litert-body": ("npu-body",), "litert": ("litert-int8",)}
    estimate_needs_torch_model = False  # Vela's estimate
    extras = ("ethos-u",)
    # Each export adds "bodies" (text: per static length) or "npu" (a whole model): the host
    # graph, the Vela graph, Vela's summary and the CPU fallbacks.
    backend_options = {"litert-body": {"prelude": "prelude.npz"}, "litert": {}}

    def __init__(self, name: str, accelerator: str, description: str, profile: DeviceProfile, budget: Budget,
                 sram_kib: int = 384):
        self.name, self.accelerator, self.description = name, accelerator, description
        self.sram_kib = sram_kib
        self._profile = profile
        self.default_budget = budget

    def profile(self) -> DeviceProfile:
        return self._profile

    def export(self, artifact: ModelArtifact, backend: str, ctx: ExportContext) -> BundleFiles:
        self.check_artifact(artifact, backend)
        bundle_dir = ctx.bundle_dir
        files = copy_artifact(artifact, bundle_dir)
        bodies, extra = {}, []
        vela_dir = bundle_dir / ".vela"
        try:
            for _, name, length in artifact.graphs():  # length None: one whole-model graph
                stem = name[: -len(".tflite")]
                suffix = stem[len("model"):]  # "" for the longest graph, "_s32" for the 32-token one
                compiled, summary, cpu_lines = run_vela(bundle_dir / name, self.accelerator, vela_dir)
                names = (f"{stem}_vela.tflite", f"vela_summary{suffix}.csv", f"vela_cpu_operators{suffix}.txt")
                os.replace(compiled, bundle_dir / names[0])
                os.replace(summary, bundle_dir / names[1])
                (bundle_dir / names[2]).write_text("".join(line + "\n" for line in cpu_lines), encoding="utf-8")
                bodies[length] = {"model": name, "device_model": names[0], "vela_summary": names[1],
                                  "cpu_operators": names[2]}
                extra += names
        finally:
            shutil.rmtree(vela_dir, ignore_errors=True)
        if None in bodies:
            options = {**files.backend_options, "npu": bodies[None]}
        else:
            options = {"bodies": {str(n): bodies[n] for n in sorted(bodies)}}
        return BundleFiles(model_file=files.model_file, files=files.files + tuple(extra), backend_options=options)

    def estimate(self, built: EstimateInput, budget: Budget) -> Estimate:
        """Vela's performance estimate for the NPU graph that runs the budget's sequence length
        (the shortest static length that holds it), and its memory use."""
        bundle_dir = built.bundle_dir
        bodies = _npu_graphs(built.manifest, bundle_dir)
        lengths = sorted(int(k) for k in bodies if k.isdigit())
        if lengths:  # a text body: the shortest static length that holds the budget's
            fitting = [n for n in lengths if n >= budget.seq_len] or [max(lengths)]
            body = bodies[str(fitting[0])]
        else:
            body = bodies["whole"]
        summary = read_summary(bundle_dir / body["vela_summary"])
        cpu_lines = []
        for other in bodies.values():  # a fallback in any length counts
            cpu_lines += [f"{other['model']}: {line}" for line in
                          (bundle_dir / other["cpu_operators"]).read_text(encoding="utf-8").splitlines()]
        ms = float(summary["inference_time"]) * 1000 * budget.batch
        clock_mhz = float(summary["core_clock"]) / 1e6
        details = {
            "estimator": f"Vela {_vela_version()}",
            "accelerator": summary["accelerator_configuration"],
            "system_config": summary["system_config"],
            "memory_mode": summary["memory_mode"],
            "npu_clock_mhz": clock_mhz,
            "cycles_total": int(float(summary["cycles_total"])),
            "cycles_npu": int(float(summary["cycles_npu"])),
            "nn_macs": int(float(summary["nn_macs"])),
            "sram_used_kib": float(summary["sram_memory_used"]),
            "dram_used_kib": float(summary["dram_memory_used"]),
            "on_chip_flash_used_kib": float(summary["on_chip_flash_memory_used"]),
            "off_chip_flash_used_kib": float(summary["off_chip_flash_memory_used"]),
            "weights_npu_encoded_bytes": int(float(summary["total_npu_encoded_weights"])),
            "weights_storage": summary["weights_storage_area"],
            "cpu_operators": len(cpu_lines),
            "cpu_operator_list": cpu_lines,
            "graph": body["device_model"],
            "static_lengths": lengths or None,
            # The device's SRAM (the profile's datasheet figure) against what Vela places there.
            "device_sram_kib": self.sram_kib,
            "fits_sram": float(summary["sram_memory_used"]) <= self.sram_kib,
        }
        cpu_side = ("the CPU prelude (embedding lookup, LayerNorm) is not included" if lengths else
                    "input preparation and quantization on the application CPU (image resize/normalise, the audio "
                    "front end) are not included")
        where = (f"estimated: Vela {_vela_version()} performance model, {summary['accelerator_configuration']} "
                 f"at {clock_mhz:.0f} MHz ({summary['system_config']}, {summary['memory_mode']}); NPU graph only, "
                 f"{cpu_side}")
        return Estimate(ms=round_ms(ms), where=where, what="Vela cycles_total / NPU clock, one inference",
                        details=details)

    def firmware_notes(self, manifest, reader, symbol: str) -> tuple[list[str], int | None]:
        """The NPU's memory figures from Vela's summary of the flashed graph; its SRAM use is the arena."""
        body = next((b for b in _npu_graphs(manifest, reader.bundle_dir).values()
                     if b["model"] == manifest.model_file), None)
        if body is None:
            return [], None
        summary = read_summary(reader.read_text(body["vela_summary"]))
        cpu_operators = [line for line in reader.read_text(body["cpu_operators"]).splitlines() if line.strip()]
        lines = [
            f"/* {body['device_model']}: compiled by Vela for {summary['accelerator_configuration']} ({summary['system_config']},",
            f"   {summary['memory_mode']}); run it with TFLite Micro + the Ethos-U driver. Operators left to the",
            f"   CPU: {len(cpu_operators)}. */",
            f"#define {symbol.upper()}_NPU_SRAM_KIB {float(summary['sram_memory_used']):.0f}u",
            f"#define {symbol.upper()}_NPU_DRAM_KIB {float(summary['dram_memory_used']):.0f}u",
            f"#define {symbol.upper()}_NPU_FLASH_KIB {float(summary['off_chip_flash_memory_used']) + float(summary['on_chip_flash_memory_used']):.0f}u",
            f"#define {symbol.upper()}_CPU_OPERATORS {len(cpu_operators)}u"]
        return lines, int(float(summary["sram_memory_used"]) * 1024)


def _vela_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ethos-u-vela")
    except PackageNotFoundError:
        return "?"


def _profile(name: str, macs_per_cycle: int, clock_mhz: int, sram_kib: int, notes: str) -> DeviceProfile:
    peak = macs_per_cycle * clock_mhz * 1e6
    return DeviceProfile(name=name, cores=1, clock_ghz=clock_mhz / 1000, isa_features=("int8", "int16 activations"),
                         peak_fp32_macs_per_s=0.0, peak_int8_macs_per_s=peak, memory_bandwidth_gbs=None,
                         ram_mb=max(1, sram_kib // 1024), source="datasheet", notes=notes)


# MACs per cycle is the number after the dash in the configuration name (int8 x int8).
ETHOS_U55_128 = EthosU(
    "ethos-u55-128", "ethos-u55-128",
    "Arm Ethos-U55 with 128 MACs/cycle (e.g. Corstone-300 class MCUs): integer body via Vela, latency estimated",
    _profile("Arm Ethos-U55-128", 128, 500, 384, "Vela's default system config; int16 activations run at half rate"),
    Budget(p95_ms=500.0, max_size_mb=80.0, max_peak_rss_mb=None, min_teacher_cosine=0.97, min_stsb_spearman=78.0),
)
ETHOS_U65_256 = EthosU(
    "ethos-u65-256", "ethos-u65-256",
    "Arm Ethos-U65 with 256 MACs/cycle (e.g. NXP i.MX 93): integer body via Vela, latency estimated",
    _profile("Arm Ethos-U65-256", 256, 1000, 384, "Vela's default system config (client-server, dedicated SRAM)"),
    Budget(p95_ms=250.0, max_size_mb=80.0, max_peak_rss_mb=None, min_teacher_cosine=0.97, min_stsb_spearman=78.0),
)
ETHOS_U85_256 = EthosU(
    "ethos-u85-256", "ethos-u85-256",
    "Arm Ethos-U85 with 256 MACs/cycle (Corstone-320 class): integer body via Vela, latency estimated",
    _profile("Arm Ethos-U85-256", 256, 1000, 384, "Vela's default system config"),
    Budget(p95_ms=100.0, max_size_mb=80.0, max_peak_rss_mb=None, min_teacher_cosine=0.97, min_stsb_spearman=78.0),
)
