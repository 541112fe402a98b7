"""The contract every target module fulfils, and the records it uses."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

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
class Budget:
    """What a bundle must meet on its target. None disables a check."""

    p95_ms: float | None = None
    max_size_mb: float | None = None
    max_peak_rss_mb: float | None = None
    min_teacher_cosine: float | None = None
    min_stsb_spearman: float | None = None
    # The operating point the latency limit refers to.
    batch: int = 1
    seq_len: int = 128
    threads: int = 1

    def merged(self, overrides: dict) -> "Budget":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

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


class Target(Protocol):
    name: str
    description: str
    backends: tuple[str, ...]  # runtime backends that run this target's bundles
    extras: tuple[str, ...]  # pyproject extras its export needs beyond its variants' steps
    default_budget: Budget
    latency_kind: str  # "measured" when the host is the device, else "estimated"
    backend_options: dict[str, dict]  # per backend, written into each bundle's manifest

    def profile(self) -> DeviceProfile: ...

    # bundle_dir already holds tokenizer.json (its truncation max_length is the bundle's length).
    def export(self, artifact: ModelArtifact, backend: str, bundle_dir: Path) -> BundleFiles: ...


def copy_artifact(artifact: ModelArtifact, bundle_dir: Path) -> BundleFiles:
    """Copy an artifact's files into a bundle folder under fixed names (model.onnx, model.xml...)."""
    names = []
    for source, name in artifact.bundle_names():
        shutil.copyfile(source, bundle_dir / name)
        names.append(name)
    return BundleFiles(model_file=names[0], files=tuple(names))
