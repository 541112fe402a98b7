"""The one registry of runtime backends: for each, its manifest option schema, the bundle files
its options name, its weight files, the Python module and pyproject extra it needs, and the
class that runs it (imported only when a bundle opens).

    spec = BACKEND_SPECS["openvino"]
    spec.options_model, spec.files(manifest_model_file, options), spec.weight_files("model.xml", options)

The manifest's `backend` values, its per-backend option check, `Manifest.referenced_files`, the
bundle builder's weight files and `edgeslim.runtime.backends.BACKENDS` all come from here.
Light on purpose (pydantic only): the manifest imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Annotated, Any, Callable, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


def _relative_name(name: str) -> str:
    path = PurePosixPath(name)
    if (not name or "\\" in name or "\x00" in name or path.is_absolute() or ".." in path.parts
            or str(path) != name or name.startswith("./")):
        raise ValueError(f"{name!r} is not a plain relative path inside the bundle (no '..', no leading '/')")
    return name


RelativeName = Annotated[str, AfterValidator(_relative_name)]


class StrictOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class OnnxRuntimeOptions(StrictOptions):
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


# OpenVINO inference precisions for which padding a sequence leaves each row's embedding as it
# was (f32: cosine >= 0.9996 to the unpadded call on STS-B test; bf16: down to 0.57, measured).
PADDING_EXACT_PRECISIONS = ("f32",)


class OpenVinoOptions(StrictOptions):
    device: str | list[str] = "CPU"
    config: dict[str, str] | None = None
    # (batch, seq) for text, (batch, channels, height, width) for images and audio features
    static_shapes: list[Annotated[list[Annotated[int, Field(ge=1, le=65536)]], Field(min_length=2, max_length=4)]] \
        | None = None
    # Text on a dynamic-shape IR: each call's sequence length is padded up to the smallest bucket
    # that holds it, one compiled model per bucket (batch stays dynamic); longer calls run as they
    # are. OpenVINO's CPU plugin re-plans every new shape, which costs more than the padding.
    sequence_buckets: list[Annotated[int, Field(ge=1, le=65536)]] | None = None
    compile_checked: list[Any] | None = None
    openvino: str | None = None  # the OpenVINO version that exported it

    @model_validator(mode="after")
    def _known_config(self):
        unknown = sorted(set(self.config or {}) - set(OPENVINO_CONFIG_KEYS))
        if unknown:
            raise ValueError(f"OpenVINO config key(s) {unknown} are not allowed in a bundle; allowed: "
                             f"{list(OPENVINO_CONFIG_KEYS)}")
        if self.sequence_buckets is not None:
            if not self.sequence_buckets or sorted(set(self.sequence_buckets)) != self.sequence_buckets:
                raise ValueError(f"sequence_buckets {self.sequence_buckets} must be distinct lengths in rising order")
            if self.static_shapes:
                raise ValueError("sequence_buckets and static_shapes exclude each other: static shapes fix every "
                                 "dimension already")
            # Without a config the backend runs f32; a config without the hint gets the CPU's default.
            precision = (self.config or {"INFERENCE_PRECISION_HINT": "f32"}).get("INFERENCE_PRECISION_HINT")
            if precision not in PADDING_EXACT_PRECISIONS:
                raise ValueError(f"sequence_buckets need INFERENCE_PRECISION_HINT f32 (got {precision}): OpenVINO's "
                                 "bf16 kernels change a row's embedding with its padding; pass sequence_buckets: "
                                 "null to run bf16")
        return self


class NpuBody(StrictOptions):
    """A graph compiled for an NPU (Ethos-U): its Vela graph, summary and CPU fallbacks."""

    model: RelativeName
    device_model: RelativeName
    vela_summary: RelativeName
    cpu_operators: RelativeName

    def files(self) -> list[str]:
        return [self.model, self.device_model, self.vela_summary, self.cpu_operators]


class LiteRtOptions(StrictOptions):
    # The graph's inputs in order: token ids and mask, or one tensor (pixels, audio features; NHWC).
    input_order: list[Annotated[str, Field(min_length=1, max_length=256)]] = ["input_ids", "attention_mask"]
    # A full-integer graph compiled for an NPU (Ethos-U).
    npu: NpuBody | None = None


class LiteRtBodyOptions(StrictOptions):
    prelude: RelativeName = "prelude.npz"
    bodies: dict[str, NpuBody] | None = None


class StaticOptions(StrictOptions):
    pass


@dataclass(frozen=True)
class BackendSpec:
    name: str
    options_model: type[StrictOptions]
    module: str  # the Python module a device needs to run it
    extra: str  # the pyproject extra that installs it (runtime/locks/<extra>.txt pins it)
    session: str  # "module:Class" that runs a bundle, imported when one opens
    # model_file, options -> files besides model_file that the backend opens
    other_files: Callable[[str, Any], list[str]] = lambda model_file, options: []
    # model_file, options -> the files a forward pass reads weights from (model_file first)
    weights: Callable[[str, Any], list[str]] = lambda model_file, options: [model_file]

    def files(self, model_file: str, options) -> list[str]:
        return [model_file, *self.other_files(model_file, options)]

    def weight_files(self, model_file: str, options) -> list[str]:
        return self.weights(model_file, options)


def openvino_weights(model_file: str) -> str:
    """The weights file an OpenVINO IR's .xml reads: the same name with .bin."""
    return str(PurePosixPath(model_file).with_suffix(".bin"))


def _npu_files(options: LiteRtOptions) -> list[str]:
    return options.npu.files() if options.npu is not None else []


def _body_files(options: LiteRtBodyOptions) -> list[str]:
    return [options.prelude] + [name for body in (options.bodies or {}).values() for name in body.files()]


BACKEND_SPECS: dict[str, BackendSpec] = {spec.name: spec for spec in (
    BackendSpec("onnxruntime", OnnxRuntimeOptions, "onnxruntime", "runtime",
                "edgeslim.runtime.backends:OnnxRuntimeBackend"),
    BackendSpec("openvino", OpenVinoOptions, "openvino", "openvino", "edgeslim.runtime.backends:OpenVinoBackend",
                other_files=lambda model_file, options: [openvino_weights(model_file)],
                weights=lambda model_file, options: [model_file, openvino_weights(model_file)]),
    BackendSpec("litert", LiteRtOptions, "ai_edge_litert", "litert", "edgeslim.runtime.backends:LiteRtBackend",
                other_files=lambda model_file, options: _npu_files(options)),
    BackendSpec("litert-body", LiteRtBodyOptions, "ai_edge_litert", "litert",
                "edgeslim.runtime.backends:LiteRtBodyBackend",
                other_files=lambda model_file, options: _body_files(options)),
    BackendSpec("static", StaticOptions, "numpy", "runtime", "edgeslim.runtime.backends:StaticBackend"),
)}
