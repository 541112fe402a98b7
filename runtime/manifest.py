"""The bundle manifest as a typed schema: written by the bundle writer, parsed on every load.

Strict types (JSON `"false"` is not a boolean, `"12"` is not an int), unknown keys refused with
the allowed ones, numbers in range, every file a relative name inside the bundle, and each
backend's options validated by that backend's own model. Options that name files must name
files the manifest lists (`Manifest.referenced_files`)."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeslim.errors import BundleError
from edgeslim.runtime.backend_registry import (BACKEND_SPECS, OPENVINO_CONFIG_KEYS, LiteRtBodyOptions,  # noqa: F401
                                              LiteRtOptions, NpuBody, OnnxRuntimeOptions, OpenVinoOptions,
                                              RelativeName, StaticOptions, StrictOptions, openvino_weights)
from edgeslim.runtime.modalities import MODALITIES
from edgeslim.runtime.text import TEXT

BUNDLE_FORMAT = "edgeslim.bundle/3"  # what this edgeslim writes: /2 + the health check's reference embeddings
# bundle/1: text bundles written before modalities; they load as text bundles. bundle/2: before
# health checks (a device checks them without a reference).
READABLE_FORMATS = ("edgeslim.bundle/1", "edgeslim.bundle/2", BUNDLE_FORMAT)
MAX_FILE_BYTES = 4 << 30  # bound for bundles written before file_sizes (no edge model is larger)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _sha256(value: str) -> str:
    if not _SHA256.match(value):
        raise ValueError(f"{value!r} is not a lowercase hex sha256")
    return value


Sha256 = Annotated[str, AfterValidator(_sha256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TensorSpec(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    dtype: Literal["int64", "int32", "float32", "float16", "int8", "uint8", "int16"]
    shape: list[str | Annotated[int, Field(ge=0)]]


# Kept for the code that imported them from here; the backend registry owns them.
BACKEND_OPTIONS: dict[str, type[StrictOptions]] = {name: spec.options_model for name, spec in BACKEND_SPECS.items()}


def backend_options(backend: str, options: dict, where: str) -> StrictOptions:
    """`options` validated by `backend`'s model; BundleError naming the key and what is allowed."""
    if backend not in BACKEND_SPECS:
        raise BundleError(f"{where}: unknown backend {backend!r}; allowed: {', '.join(BACKEND_SPECS)}")
    model = BACKEND_SPECS[backend].options_model
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        raise BundleError(f"{where}: backend_options for {backend}: {_errors(exc, model)}") from None


def _known(registry: dict, what: str):
    def check(value: str) -> str:
        if value not in registry:
            raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(registry)}")
        return value

    return AfterValidator(check)


class DriftThresholds(_Strict):
    """Each drift statistic's in-domain limit (None: the reference has no spread in it)."""

    mean_shift: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    cosine_ks: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None
    norm_ks: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None


_Finite = Annotated[float, Field(allow_inf_nan=False)]


class DriftReference(_Strict):
    """Statistics of the bundle's raw embeddings of held-out in-domain items (runtime/drift.py)."""

    source: Annotated[str, Field(max_length=500)]
    items: Annotated[int, Field(ge=20)]
    calibration_items: Annotated[int, Field(ge=20)]
    window: Annotated[int, Field(ge=20)]
    mean: Annotated[list[_Finite], Field(min_length=1, max_length=65_536)]
    variance: Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], Field(min_length=1, max_length=65_536)]
    cosine_edges: Annotated[list[_Finite], Field(min_length=1, max_length=1000)]
    norm_edges: Annotated[list[_Finite], Field(min_length=1, max_length=1000)]
    thresholds: DriftThresholds
    threshold_percentile: Annotated[float, Field(gt=50, lt=100)]

    @model_validator(mode="after")
    def _consistent(self):
        if len(self.variance) != len(self.mean):
            raise ValueError(f"mean has {len(self.mean)} values, variance {len(self.variance)}")
        if len(self.norm_edges) != len(self.cosine_edges):
            raise ValueError("cosine_edges and norm_edges have different bin counts")
        for name in ("cosine_edges", "norm_edges"):
            edges = getattr(self, name)
            if any(b < a for a, b in zip(edges, edges[1:])):
                raise ValueError(f"{name} must not decrease")
        return self


class HealthReference(_Strict):
    """Reference embeddings of the modality's health-check items (`health_items`), one row per
    item, and the cosine a device's run of the same items must reach on each."""

    items: Annotated[int, Field(ge=1, le=16)]
    embeddings: Annotated[list[list[Annotated[float, Field(allow_inf_nan=False)]]], Field(min_length=1, max_length=16)]
    min_cosine: Annotated[float, Field(gt=0.0, le=1.0)]

    @model_validator(mode="after")
    def _rows(self):
        if len(self.embeddings) != self.items:
            raise ValueError(f"health_check: {self.items} items but {len(self.embeddings)} embedding rows")
        return self


class Manifest(_Strict):
    format: Literal["edgeslim.bundle/1", "edgeslim.bundle/2", "edgeslim.bundle/3"]
    created_by: str | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)]
    target: Annotated[str, Field(min_length=1, max_length=100)]
    backend: Annotated[str, _known(BACKEND_SPECS, "backend")]
    backend_options: dict[str, Any] = {}
    model_file: RelativeName
    # What the bundle encodes (edgeslim.runtime.modalities); bundle/1 bundles are text bundles.
    modality: Annotated[str, _known(MODALITIES, "modality")]
    tokenizer_file: RelativeName | None = None  # text: required (bundle/1: tokenizer.json)
    # What the device does to raw input, validated by the modality's own schema (images: resize,
    # crop, mean/std...; audio: the log-mel front end); `Manifest.frontend` is the typed form.
    preprocessing: dict[str, Any] | None = None
    inputs: Annotated[list[TensorSpec], Field(min_length=1, max_length=8)]
    outputs: Annotated[list[TensorSpec], Field(min_length=1, max_length=8)]
    embedding_dim: Annotated[int, Field(ge=1, le=65536)]
    pooling: Literal["mean", "cls"]
    normalize: bool
    max_seq_length: Annotated[int, Field(ge=1, le=65536)] | None = None  # text: required
    truncation: Literal["truncate"] = "truncate"
    source_model: dict[str, Any] | None = None
    recipe: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = []
    calibration: dict[str, Any] | None = None
    profile: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None
    benchmark: dict[str, Any] | None = None
    files: dict[RelativeName, Sha256]
    # Byte size of every file: the bound each read is held to (bundles before it: MAX_FILE_BYTES).
    file_sizes: dict[RelativeName, Annotated[int, Field(ge=0, le=MAX_FILE_BYTES)]] | None = None
    # The bundle's own embeddings of its modality's health-check items, taken when it was built:
    # what a device compares its run with after a deploy (runtime/health.py).
    health_check: HealthReference | None = None
    # Statistics of its embeddings of held-out in-domain items, and calibrated thresholds: what
    # `encoder.drift()` and `edgeslim drift` score new input against (runtime/drift.py).
    drift: DriftReference | None = None
    manifest_sha256: Sha256

    @model_validator(mode="before")
    @classmethod
    def _bundle1_defaults(cls, data):
        if isinstance(data, dict) and data.get("format") == "edgeslim.bundle/1":
            # bundle/1 came before modalities: every one is a text bundle with tokenizer.json.
            return {"modality": TEXT.name, "tokenizer_file": "tokenizer.json", **data}
        return data

    @model_validator(mode="after")
    def _consistent(self):
        if self.format == "edgeslim.bundle/1" and not MODALITIES[self.modality].reads_tokenizer:
            raise ValueError("edgeslim.bundle/1 bundles are text bundles; modality needs edgeslim.bundle/2")
        MODALITIES[self.modality].check_manifest(self)
        if self.health_check is not None:
            if self.format != BUNDLE_FORMAT:
                raise ValueError(f"health_check needs format {BUNDLE_FORMAT}")
            widths = {len(row) for row in self.health_check.embeddings}
            if widths != {self.embedding_dim}:
                raise ValueError(f"health_check embeddings have {sorted(widths)} values a row; embedding_dim is "
                                 f"{self.embedding_dim}")
        if self.drift is not None:
            if self.format != BUNDLE_FORMAT:
                raise ValueError(f"drift needs format {BUNDLE_FORMAT}")
            if len(self.drift.mean) != self.embedding_dim:
                raise ValueError(f"drift.mean has {len(self.drift.mean)} values; embedding_dim is {self.embedding_dim}")
        if self.file_sizes is not None and set(self.file_sizes) != set(self.files):
            raise ValueError(f"file_sizes lists {sorted(self.file_sizes)}, files lists {sorted(self.files)}: "
                             "they must name the same files")
        model = BACKEND_SPECS[self.backend].options_model
        try:
            options = model.model_validate(self.backend_options)
        except ValidationError as exc:  # reported with the manifest's path by parse_manifest
            raise ValueError(f"backend_options for {self.backend}: {_errors(exc, model)}") from None
        missing = sorted(set(self.referenced_files(options)) - set(self.files))
        if missing:
            raise ValueError(f"files {missing} are named by the manifest but not listed in `files` (with a sha256)")
        return self

    @property
    def options(self) -> StrictOptions:
        """backend_options as the backend's typed model."""
        return backend_options(self.backend, self.backend_options, "manifest")

    @cached_property
    def frontend(self):
        """`preprocessing` as the modality's typed model (None for text: its tokenizer is its front end)."""
        return MODALITIES[self.modality].preprocessing(self.preprocessing)

    def referenced_files(self, options: StrictOptions | None = None) -> list[str]:
        """Every file the runtime, the firmware export or the CLI opens from this bundle."""
        options = options or self.options
        return (BACKEND_SPECS[self.backend].files(self.model_file, options)
                + MODALITIES[self.modality].referenced_files(self))

    def weight_files(self) -> list[str]:
        """The files a forward pass reads weights from (an OpenVINO IR's .bin beside its .xml)."""
        return BACKEND_SPECS[self.backend].weight_files(self.model_file, self.options)

    def max_bytes(self, name: str) -> int:
        return self.file_sizes[name] if self.file_sizes is not None else MAX_FILE_BYTES


def _errors(exc: ValidationError, model: type[BaseModel]) -> str:
    parts = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = f"unknown key; allowed keys: {sorted(model.model_fields)}"
        parts.append(f"{key}: {message}")
    return "; ".join(parts[:8]) + (f" (and {len(parts) - 8} more)" if len(parts) > 8 else "")


def parse_manifest(document: dict, where: str) -> Manifest:
    try:
        return Manifest.model_validate(document)
    except ValidationError as exc:
        raise BundleError(f"{where}: invalid manifest: {_errors(exc, Manifest)}") from None
