"""What flows between compression steps: a model in one form. Each kind is one small class;
steps declare the kinds they consume and produce (`configs.py`), targets the kinds each backend
runs, and a plan checks the chain before anything loads.

`reader` is the model whose tokenizer and pooling the artifact's inputs follow: a step that
changes them (a pruned vocabulary, a static table) sets it; the others leave it None, meaning
"as the artifact it came from"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


class Artifact:
    kind: ClassVar[str]
    reader: object | None = None
    image_layout: str | None = None  # an image graph's input layout when not the family's NCHW

    def bundle_names(self) -> list[tuple[Path, str]]:
        """(file, name in the bundle) for every file the artifact is made of."""
        raise NotImplementedError

    def backend_options(self) -> dict:
        """Manifest backend options this artifact implies (merged over the target's)."""
        return {}


@dataclass(frozen=True)
class TorchModel(Artifact):
    """A PyTorch EncoderModel in memory: what torch-side steps consume and produce."""

    model: object
    kind: ClassVar[str] = "torch"

    @property
    def reader(self):
        return self.model

    def bundle_names(self) -> list[tuple[Path, str]]:
        raise NotImplementedError("a PyTorch model goes into a bundle only after an export step")


@dataclass(frozen=True)
class OnnxModel(Artifact):
    path: Path
    kind: ClassVar[str] = "onnx"

    def bundle_names(self) -> list[tuple[Path, str]]:
        return [(self.path, "model.onnx")]


@dataclass(frozen=True)
class OpenVinoModel(Artifact):
    xml_path: Path
    # (batch, seq) shapes the IR is meant to be compiled for; None: dynamic shapes.
    static_shapes: tuple[tuple[int, int], ...] | None = None
    # INFERENCE_PRECISION_HINT for the float parts, when a step chose one (openvino_int8).
    inference_precision: str | None = None
    kind: ClassVar[str] = "openvino"

    def backend_options(self) -> dict:
        return {"config": {"INFERENCE_PRECISION_HINT": self.inference_precision}} if self.inference_precision else {}

    def weights_path(self) -> Path:
        """The IR's weights, named as the backend registry says the runtime reads them."""
        from edgeslim.runtime.backend_registry import openvino_weights

        return Path(openvino_weights(str(self.xml_path)))

    def bundle_names(self) -> list[tuple[Path, str]]:
        from edgeslim.runtime.backend_registry import openvino_weights

        return [(self.xml_path, "model.xml"), (self.weights_path(), openvino_weights("model.xml"))]


@dataclass(frozen=True)
class StaticTable(Artifact):
    """A (vocabulary, dim) token-vector table in .npy form, read through its own tokenizer."""

    path: Path
    reader: object | None = None
    kind: ClassVar[str] = "static"

    def bundle_names(self) -> list[tuple[Path, str]]:
        return [(self.path, "embeddings.npy")]


@dataclass(frozen=True)
class LiteRtModel(Artifact):
    """A .tflite flatbuffer with a static input shape: (1, seq_len) int32 token inputs, or one
    (1, H, W, 3) image (channels last, what LiteRT's kernels and NPUs run); float activations
    or int8 weights with float activations."""

    path: Path
    seq_len: int | None
    image_layout: str | None = None  # "NHWC" for a graph of one channels-last tensor (images, audio)
    input_name: str | None = None  # that tensor's name (the model's, e.g. pixel_values)
    kind: ClassVar[str] = "litert"

    def bundle_names(self) -> list[tuple[Path, str]]:
        return [(self.path, "model.tflite")]

    def backend_options(self) -> dict:
        return {"input_order": [self.input_name]} if self.image_layout else {}


@dataclass(frozen=True)
class LiteRtInt8Model(LiteRtModel):
    """A full-integer .tflite: int8 weights, int8 activations, int8 input and output with their
    scale and zero point in the graph. What an integer NPU (Ethos-U) compiles whole."""

    kind: ClassVar[str] = "litert-int8"

    def graphs(self) -> list[tuple[Path, str, None]]:
        return [(self.path, "model.tflite", None)]


@dataclass(frozen=True)
class NpuBodyModel(Artifact):
    """An integer-only encoder body plus its CPU prelude (embedding tables and LayerNorm, .npz)
    that turns token ids into the body's input. One .tflite per static sequence length, all
    with the same weights and quantization parameters; `paths` is ordered by length, the
    longest last."""

    paths: tuple[Path, ...]
    prelude: Path
    seq_lengths: tuple[int, ...]
    kind: ClassVar[str] = "npu-body"

    def graphs(self) -> list[tuple[Path, str, int]]:
        """(file, name in the bundle, static length): the longest is model.tflite, the others model_s<N>.tflite."""
        return [(path, "model.tflite" if n == self.seq_lengths[-1] else f"model_s{n}.tflite", n)
                for path, n in zip(self.paths, self.seq_lengths)]

    def bundle_names(self) -> list[tuple[Path, str]]:
        graphs = sorted(self.graphs(), key=lambda g: -g[2])  # the longest first: it is the bundle's model_file
        return [(path, name) for path, name, _ in graphs] + [(self.prelude, "prelude.npz")]


ARTIFACT_KINDS: dict[str, type[Artifact]] = {
    cls.kind: cls for cls in (TorchModel, OnnxModel, OpenVinoModel, StaticTable, LiteRtModel, LiteRtInt8Model,
                              NpuBodyModel)
}

ModelArtifact = Artifact
