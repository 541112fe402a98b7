"""The contract every target module fulfils, and the records it uses."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeslim.budget import Budget  # noqa: F401  (targets declare default budgets)
from edgeslim.compress.artifacts import ModelArtifact


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    cores: int
    clock_ghz: float
    isa_features: tuple[str, ...]
    peak_fp32_macs_per_s: float
    peak_int8_macs_per_s: float
    memory_bandwidth_gbs: float | None
    ram_mb: int
    flash_mb: int | None = None
    # Accelerators that run float models in fp16 (NPUs, GPUs): their float peak.
    peak_fp16_macs_per_s: float | None = None
    # "host" when read from this machine; "datasheet" when typed in from vendor documents.
    source: str = "datasheet"
    notes: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BundleFiles:
    """Files a target placed in a bundle folder, and which one the runtime opens."""

    model_file: str
    files: tuple[str, ...] = field(default_factory=tuple)
    # Options that depend on this export (e.g. the static shapes it was compiled for); merged
    # over the target's backend_options in the manifest.
    backend_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ExportContext:
    """What a target's export may use besides the artifact: passed in, never read back from
    files the pipeline wrote."""

    bundle_dir: Path
    max_seq_length: int | None  # text: the bundle's token length
    hidden_size: int


@dataclass(frozen=True)
class EstimateInput:
    """A built bundle as an estimator sees it."""

    bundle_dir: Path
    manifest: object  # the typed runtime Manifest
    weight_files: tuple[Path, ...]  # the files a forward pass reads its weights from
    macs: float  # one forward pass at the budget's operating point
    int8: bool  # int8 weights/compute (from the steps' declarations)


def round_ms(ms: float) -> float:
    """Milliseconds to 3 decimals, or 3 significant figures below 0.1 ms: a tiny model's
    microseconds must not round to a latency of zero."""
    return round(ms, 3) if ms >= 0.1 else float(f"{ms:.3g}")


@dataclass(frozen=True)
class Estimate:
    """A latency figure for a device this host is not."""

    ms: float
    where: str
    what: str
    details: dict = field(default_factory=dict)


class Target:
    """The contract every target fulfils. A target module defines a subclass (or instances of
    one) and the registry in `targets/__init__.py` lists them; `tests/test_targets.py` runs
    `check_target` over every entry."""

    name: str
    description: str
    # backend -> the artifact kinds it runs (`edgeslim.compress.artifacts.ARTIFACT_KINDS`)
    accepts: dict[str, tuple[str, ...]]
    extras: tuple[str, ...] = ()  # pyproject extras its export needs beyond its variants' steps
    default_budget: Budget
    latency_kind: str = "estimated"  # "measured" when the host is the device
    backend_options: dict[str, dict] = {}  # per backend, written into each bundle's manifest
    default_variant: str | None = None  # the variant a user flashes when they do not choose
    modalities: tuple[str, ...] | None = None  # None: every modality
    qemu_cpu: str | None = None  # an aarch64 CPU model that emulates this device (verify --arch aarch64)
    # estimate() counts MACs from a PyTorch model (the roofline); False where the target's own
    # estimator reads the compiled files (Vela).
    estimate_needs_torch_model: bool = True

    def takes(self, modality: str) -> bool:
        return self.modalities is None or modality in self.modalities

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(self.accepts)

    def profile(self) -> DeviceProfile:
        raise NotImplementedError

    def export(self, artifact: ModelArtifact, backend: str, ctx: ExportContext) -> BundleFiles:
        """Place the artifact's files in ctx.bundle_dir; the default copies them."""
        self.check_artifact(artifact, backend)
        return copy_artifact(artifact, ctx.bundle_dir)

    def check_artifact(self, artifact: ModelArtifact, backend: str) -> None:
        from edgeslim.errors import TargetError

        if backend not in self.accepts:
            raise TargetError(f"target {self.name} has no backend {backend!r}; allowed: {', '.join(self.accepts)}")
        if artifact.kind not in self.accepts[backend]:
            from edgeslim.compress.configs import STEPS

            wanted = self.accepts[backend]
            makers = sorted(n for n, cls in STEPS.items() if cls.produces in wanted and cls.consumes not in wanted)
            raise TargetError(f"target {self.name}, backend {backend} runs {' or '.join(wanted)} models; the steps "
                              f"produced a {artifact.kind} model: add one of {', '.join(makers)}")

    def estimate(self, built: EstimateInput, budget: Budget) -> Estimate | None:
        """None for measured targets; else the roofline of the device profile."""
        if self.latency_kind == "measured":
            return None
        from edgeslim.targets.roofline import estimate_latency

        profile = self.profile()
        est = estimate_latency(profile, built.macs, sum(f.stat().st_size for f in built.weight_files), built.int8,
                               budget.threads)
        return Estimate(ms=est.ms, where=est.where(profile, budget.threads), what=est.model)

    def waiver(self, backend: str, int8: bool) -> str | None:
        """Why a required variant on `backend` is not held to the budget on this device, or None.
        Only for a measured kernel gap of that backend on this device's ISA: the variant is still
        built, measured and reported, but the run's exit status does not depend on it."""
        return None

    def firmware_notes(self, manifest, reader, symbol: str) -> tuple[list[str], int | None]:
        """Extra C comment / #define lines for `export-firmware` (e.g. NPU memory figures), and
        the tensor arena in bytes when the target knows it better than the interpreter's count."""
        return [], None

    def describe(self) -> dict:
        return {"profile": self.profile().to_dict(), "latency_kind": self.latency_kind,
                "default_variant": self.default_variant}


def copy_artifact(artifact: ModelArtifact, bundle_dir: Path) -> BundleFiles:
    """Copy an artifact's files into a bundle folder under fixed names (model.onnx, model.xml...)."""
    names = []
    for source, name in artifact.bundle_names():
        shutil.copyfile(source, bundle_dir / name)
        names.append(name)
    return BundleFiles(model_file=names[0], files=tuple(names), backend_options=artifact.backend_options())
