"""What flows between compression steps: a model in one on-disk format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OnnxModel:
    path: Path
    format = "onnx"

    def bundle_names(self) -> list[tuple[Path, str]]:
        return [(self.path, "model.onnx")]


@dataclass(frozen=True)
class OpenVinoModel:
    xml_path: Path
    # (batch, seq) shapes the IR is meant to be compiled for; None: dynamic shapes.
    static_shapes: tuple[tuple[int, int], ...] | None = None
    format = "openvino"

    def bundle_names(self) -> list[tuple[Path, str]]:
        return [(self.xml_path, "model.xml"), (self.xml_path.with_suffix(".bin"), "model.bin")]


@dataclass(frozen=True)
class StaticTable:
    """A (vocabulary, dim) token-vector table in .npy form."""

    path: Path
    format = "static"

    def bundle_names(self) -> list[tuple[Path, str]]:
        return [(self.path, "embeddings.npy")]


@dataclass(frozen=True)
class LiteRtModel:
    """A .tflite flatbuffer with static input shape (1, seq_len), int32 inputs."""

    path: Path
    seq_len: int
    format = "litert"

    def bundle_names(self) -> list[tuple[Path, str]]:
        return [(self.path, "model.tflite")]


@dataclass(frozen=True)
class NpuBodyModel:
    """An integer-only encoder body plus its CPU prelude (embedding tables and LayerNorm, .npz)
    that turns token ids into the body's input. One .tflite per static sequence length, all
    with the same weights and quantization parameters; `paths` is ordered by length, the
    longest last."""

    paths: tuple[Path, ...]
    prelude: Path
    seq_lengths: tuple[int, ...]
    format = "npu-body"

    def graphs(self) -> list[tuple[Path, str, int]]:
        """(file, name in the bundle, static length): the longest is model.tflite, the others model_s<N>.tflite."""
        return [(path, "model.tflite" if n == self.seq_lengths[-1] else f"model_s{n}.tflite", n)
                for path, n in zip(self.paths, self.seq_lengths)]

    def bundle_names(self) -> list[tuple[Path, str]]:
        graphs = sorted(self.graphs(), key=lambda g: -g[2])  # the longest first: it is the bundle's model_file
        return [(path, name) for path, name, _ in graphs] + [(self.prelude, "prelude.npz")]


ModelArtifact = OnnxModel | OpenVinoModel | StaticTable | LiteRtModel | NpuBodyModel
