"""The bundle manifest as a typed schema: written by the bundle writer, parsed on every load.

Strict types (JSON `"false"` is not a boolean, `"12"` is not an int), unknown keys refused with
the allowed ones, numbers in range, every file a relative name inside the bundle, and each
backend's options validated by that backend's own model. Options that name files must name
files the manifest lists (`Manifest.referenced_files`)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeslim.errors import BundleError
from edgeslim.runtime.image import ImagePreprocessing

BUNDLE_FORMAT = "edgeslim.bundle/2"  # what this edgeslim writes: modality, inputs and preprocessing
# bundle/1: text bundles written before modalities; they load as text bundles.
READABLE_FORMATS = ("edgeslim.bundle/1", BUNDLE_FORMAT)
MAX_FILE_BYTES = 4 << 30  # bound for bundles written before file_sizes (no edge model is larger)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _relative_name(name: str) -> str:
    path = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or path.is_absolute() or ".." in path.parts
            or str(path) != name or name.startswith("./")):
        raise ValueError(f"{name!r} is not a plain relative path inside the bundle (no '..', no leading '/')")
    return name


def _sha256(value: str) -> str:
    if not _SHA256.match(value):
        raise ValueError(f"{value!r} is not a lowercase hex sha256")
    return value


RelativeName = Annotated[str, AfterValidator(_relative_name)]
Sha256 = Annotated[str, AfterValidator(_sha256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TensorSpec(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=256)]
    dtype: Literal["int64", "int32", "float32", "float16", "int8", "uint8", "int16"]
    shape: list[str | Annotated[int, Field(ge=0)]]


# Backend options: one model per backend. A key that is not here is refused with this list.
class OnnxRuntimeOptions(_Strict):
    providers: list[str] | None = None
    disabled_optimizers: list[str] | None = None
    providers_policy: Literal["all", "first-available"] = "all"
    # Jetson export records (read by people and `jetson/build_and_bench.sh`, not by the runtime)
    shape_profiles: dict[str, Any] | None = None
    tensorrt_precision: str | None = None
    graph: dict[str, Any] | None = None
    lint: dict[str, Any] | None = None
    tensorrt_on_this_machine: Any = None


# OpenVINO properties a bundle may set; paths such as CACHE_DIR would write outside the bundle.
OPENVINO_CONFIG_KEYS = ("INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "EXECUTION_MODE_HINT", "NUM_STREAMS",
                        "INFERENCE_NUM_THREADS")


class OpenVinoOptions(_Strict):
    device: str | list[str] = "CPU"
    config: dict[str, str] | None = None
    # (batch, seq) for text, (batch, channels, height, width) for images
    static_shapes: list[Annotated[list[Annotated[int, Field(ge=1, le=65536)]], Field(min_length=2, max_length=4)]] \
        | None = None
    compile_checked: list[Any] | None = None
    openvino: str | None = None  # the OpenVINO version that exported it

    @model_validator(mode="after")
    def _known_config(self):
        unknown = sorted(set(self.config or {}) - set(OPENVINO_CONFIG_KEYS))
        if unknown:
            raise ValueError(f"OpenVINO config key(s) {unknown} are not allowed in a bundle; allowed: "
                             f"{list(OPENVINO_CONFIG_KEYS)}")
        return self


class NpuBody(_Strict):
    model: RelativeName
    device_model: RelativeName
    vela_summary: RelativeName
    cpu_operators: RelativeName


class LiteRtOptions(_Strict):
    # The graph's inputs in order: token ids and mask, or one image (pixel_values, NHWC).
    input_order: list[Literal["input_ids", "attention_mask", "pixel_values"]] = ["input_ids", "attention_mask"]
    # A full-integer graph compiled for an NPU (Ethos-U): its Vela graph, summary and CPU fallbacks.
    npu: NpuBody | None = None


class LiteRtBodyOptions(_Strict):
    prelude: RelativeName = "prelude.npz"
    bodies: dict[str, NpuBody] | None = None


class StaticOptions(_Strict):
    pass


BACKEND_OPTIONS: dict[str, type[_Strict]] = {
    "onnxruntime": OnnxRuntimeOptions,
    "openvino": OpenVinoOptions,
    "litert": LiteRtOptions,
    "litert-body": LiteRtBodyOptions,
    "static": StaticOptions,
}


def backend_options(backend: str, options: dict, where: str) -> _Strict:
    """`options` validated by `backend`'s model; BundleError naming the key and what is allowed."""
    if backend not in BACKEND_OPTIONS:
        raise BundleError(f"{where}: unknown backend {backend!r}; allowed: {', '.join(BACKEND_OPTIONS)}")
    model = BACKEND_OPTIONS[backend]
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        raise BundleError(f"{where}: backend_options for {backend}: {_errors(exc, model)}") from None


def openvino_weights(model_file: str) -> str:
    """The weights file an OpenVINO IR's .xml reads: the same name with .bin."""
    return str(PurePosixPath(model_file).with_suffix(".bin"))


class Manifest(_Strict):
    format: Literal["edgeslim.bundle/1", "edgeslim.bundle/2"]
    created_by: str | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)]
    target: Annotated[str, Field(min_length=1, max_length=100)]
    backend: Literal["onnxruntime", "openvino", "litert", "litert-body", "static"]
    backend_options: dict[str, Any] = {}
    model_file: RelativeName
    # What the bundle encodes; bundle/1 bundles are text bundles.
    modality: Literal["text", "image"] = "text"
    tokenizer_file: RelativeName | None = None  # text: required (bundle/1: tokenizer.json)
    preprocessing: ImagePreprocessing | None = None  # images: required
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
    manifest_sha256: Sha256

    @model_validator(mode="before")
    @classmethod
    def _bundle1_defaults(cls, data):
        if isinstance(data, dict) and data.get("format") == "edgeslim.bundle/1" and "tokenizer_file" not in data:
            return {**data, "tokenizer_file": "tokenizer.json"}
        return data

    @model_validator(mode="after")
    def _consistent(self):
        if self.format == "edgeslim.bundle/1" and self.modality != "text":
            raise ValueError("edgeslim.bundle/1 bundles are text bundles; modality needs edgeslim.bundle/2")
        if self.modality == "text" and (self.tokenizer_file is None or self.max_seq_length is None):
            raise ValueError("a text bundle needs tokenizer_file and max_seq_length")
        if self.modality == "image" and (self.preprocessing is None or self.tokenizer_file is not None):
            raise ValueError("an image bundle needs preprocessing (resize/crop, interpolation, mean/std) and no "
                             "tokenizer_file")
        if self.modality == "image":
            try:
                self.preprocessing.output_size
            except ValueError as exc:
                raise ValueError(f"preprocessing: {exc}") from None
        if self.file_sizes is not None and set(self.file_sizes) != set(self.files):
            raise ValueError(f"file_sizes lists {sorted(self.file_sizes)}, files lists {sorted(self.files)}: "
                             "they must name the same files")
        model = BACKEND_OPTIONS[self.backend]
        try:
            options = model.model_validate(self.backend_options)
        except ValidationError as exc:  # reported with the manifest's path by parse_manifest
            raise ValueError(f"backend_options for {self.backend}: {_errors(exc, model)}") from None
        missing = sorted(set(self.referenced_files(options)) - set(self.files))
        if missing:
            raise ValueError(f"files {missing} are named by the manifest but not listed in `files` (with a sha256)")
        return self

    def referenced_files(self, options: _Strict | None = None) -> list[str]:
        """Every file the runtime, the firmware export or the CLI opens from this bundle."""
        options = options or backend_options(self.backend, self.backend_options, "manifest")
        names = [self.model_file] + ([self.tokenizer_file] if self.tokenizer_file else [])
        if isinstance(options, OpenVinoOptions):
            names.append(openvino_weights(self.model_file))
        if isinstance(options, LiteRtBodyOptions):
            names.append(options.prelude)
            for body in (options.bodies or {}).values():
                names += [body.model, body.device_model, body.vela_summary, body.cpu_operators]
        return names

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
