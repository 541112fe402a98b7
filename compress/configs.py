"""One frozen config per compression step, and the one registry of steps (`STEPS`).

Light on purpose: recipes validate and plans are checked against these without importing torch.
Each config declares what a plan needs to know before anything runs:

- `consumes` / `produces`: the artifact kinds (`edgeslim.compress.artifacts.ARTIFACT_KINDS`);
- `needs`: the model-family surgery parts it uses (`edgeslim.models.SURGERY_PARTS`);
- `modalities`, `extra` (the pyproject extra its handler imports);
- `int8` (weights in int8: the roofline uses the int8 peak), `runtime_quantized` (activations
  quantized by the backend's kernels at run time, so two CPUs give different numbers);
- `search_backend`: the backend a search candidate ending in this step runs on;
- `handler`: "module:function" with the one signature (artifact, cfg, ctx) -> (artifact, record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, model_validator

from edgeslim.schema import StrictModel


class StepBase(StrictModel):
    """A compression step's config (see the module docstring for the class attributes)."""

    extra: ClassVar[str] = "compress"
    consumes: ClassVar[str] = "onnx"
    produces: ClassVar[str] = "onnx"
    needs: ClassVar[frozenset[str]] = frozenset()
    modalities: ClassVar[tuple[str, ...] | None] = None  # None: every modality
    # Needs a model with one fixed-size input tensor (images, audio), not a variable-length one.
    fixed_size_input: ClassVar[bool] = False
    int8: ClassVar[bool] = False
    runtime_quantized: ClassVar[bool] = False
    search_backend: ClassVar[str | None] = None
    search_name: ClassVar[str | None] = None  # its name in a search grid's `quantization`, if not the step's
    handler: ClassVar[str]

    @property
    def stage(self) -> str:
        """"torch" for steps that change the PyTorch model, "export" for the rest."""
        return "torch" if self.consumes == self.produces == "torch" else "export"

    @property
    def calibration_sentences(self) -> int:
        return 0

    def parts_needed(self) -> frozenset[str]:
        """The surgery parts this config uses (a plan checks them against the model family)."""
        return self.needs

    def input_kind(self) -> str | None:
        """The artifact kind it needs as input; None: it starts a model of its own."""
        return self.consumes

    def modality_refusal(self, modality: str) -> str | None:
        """Why this config cannot run on a `modality` model, or None when it can."""
        if self.modalities is not None and modality not in self.modalities:
            return f"it works on {'/'.join(self.modalities)} models"
        if self.fixed_size_input:
            from edgeslim.runtime.modalities import MODALITIES

            if MODALITIES[modality].variable_length:
                return "it takes models with one fixed-size input tensor, not inputs of varying length"
        return None

    def corpora(self) -> tuple[tuple[str, str], ...]:
        """(key, corpus name) of every corpus this config learns from (a plan checks their modality)."""
        return ()


class ExportOnnxConfig(StepBase):
    """PyTorch -> ONNX (legacy exporter, opset 17), parity-checked against PyTorch. Plans insert
    it wherever a PyTorch model must become ONNX; a recipe may also list it."""

    step: Literal["export_onnx"] = "export_onnx"
    consumes: ClassVar[str] = "torch"
    handler: ClassVar[str] = "edgeslim.compress.torch_steps:export"
    parity_samples: int = Field(32, ge=1, le=1024)


class Int8DynamicConfig(StepBase):
    """ONNX Runtime dynamic quantization: int8 weights, activations quantized at run time."""

    step: Literal["int8_dynamic"] = "int8_dynamic"
    int8: ClassVar[bool] = True
    runtime_quantized: ClassVar[bool] = True
    search_backend: ClassVar[str | None] = "onnxruntime"
    handler: ClassVar[str] = "edgeslim.compress.quantize_ort:int8_dynamic"
    per_channel: bool = True
    op_types: tuple[str, ...] = ("MatMul", "Gather")


class Int8StaticConfig(StepBase):
    """ONNX Runtime static QDQ: uint8 activations, per-channel int8 weights (U8S8, the variant
    ORT fuses on x86), calibrated on the recipe's calibration corpus. A per-layer sensitivity
    analysis keeps in float the fewest MatMuls needed to reach `cosine_floor`."""

    step: Literal["int8_static"] = "int8_static"
    int8: ClassVar[bool] = True
    search_backend: ClassVar[str | None] = "onnxruntime"
    handler: ClassVar[str] = "edgeslim.compress.quantize_ort:int8_static"
    cosine_floor: float = Field(0.99, gt=0.0, le=1.0)
    calibration_method: Literal["minmax", "percentile", "entropy"] = "minmax"
    calibration_samples: int = Field(128, ge=8, le=4096)
    # Sentences (taken from the calibration corpus, never the evaluation set) that score the
    # sensitivity analysis.
    sensitivity_samples: int = Field(64, ge=8, le=1024)
    op_types: tuple[str, ...] = ("MatMul", "Gather")
    # TensorRT's explicit quantization takes symmetric int8 only: activation_type int8 with
    # symmetric_activations true.
    activation_type: Literal["uint8", "int8"] = "uint8"
    symmetric_activations: bool = False

    @property
    def calibration_sentences(self) -> int:
        return self.calibration_samples


class OnnxFp16Config(StepBase):
    """Float16 weights and compute in the ONNX graph (inputs and outputs stay as they are), for
    GPUs and TensorRT; the ops in `op_block_list` stay float32."""

    step: Literal["onnx_fp16"] = "onnx_fp16"
    handler: ClassVar[str] = "edgeslim.compress.onnx_fp16:fp16"
    op_block_list: tuple[str, ...] | None = None  # None: onnxruntime's default list


class OpenVinoInt8Config(StepBase):
    """OpenVINO int8 through NNCF post-training quantization (transformer mode)."""

    step: Literal["openvino_int8"] = "openvino_int8"
    produces: ClassVar[str] = "openvino"
    int8: ClassVar[bool] = True
    search_backend: ClassVar[str | None] = "openvino"
    handler: ClassVar[str] = "edgeslim.compress.openvino:int8"
    calibration_samples: int = Field(128, ge=8, le=4096)
    preset: Literal["performance", "mixed"] = "mixed"
    # The device NNCF places quantizers for (NPU: the patterns its compiler fuses).
    target_device: Literal["ANY", "CPU", "GPU", "NPU"] = "ANY"
    # What the layers left in float compute in, written into the bundle (OpenVINO's
    # INFERENCE_PRECISION_HINT). bf16 is faster where the CPU has it (AMX, AVX-512 BF16) and is
    # what the bundle is measured with. A CPU without bf16 should run f32 instead (OpenVINO's CPU plugin
    # falls back; not measured: no such CPU here, and under ONEDNN_MAX_CPU_ISA=AVX2 a bf16 IR fails to compile).
    inference_precision: Literal["f32", "bf16"] = "f32"

    @property
    def calibration_sentences(self) -> int:
        return self.calibration_samples


class OpenVinoStaticShapesConfig(StepBase):
    """Fix an OpenVINO IR's input shapes (NPUs compile static shapes only). Text: the IR is saved
    at the largest shape; the bundle lists every (batch, seq) it was compiled and checked for, and
    the runtime pads each call up to the smallest listed shape that holds it. Images: the one
    (batch, 3, H, W) (seq_lengths do not apply); the runtime runs a call in chunks of `batch`."""

    step: Literal["openvino_static_shapes"] = "openvino_static_shapes"
    consumes: ClassVar[str] = "openvino"
    produces: ClassVar[str] = "openvino"
    handler: ClassVar[str] = "edgeslim.compress.openvino:static_shapes"
    batch: int = Field(1, ge=1, le=64)
    seq_lengths: tuple[int, ...] = (32, 64, 128)

    @model_validator(mode="after")
    def _sorted_unique(self):
        if not self.seq_lengths or sorted(set(self.seq_lengths)) != list(self.seq_lengths) or self.seq_lengths[0] < 1:
            raise ValueError(f"seq_lengths must be positive, ascending and unique, got {list(self.seq_lengths)}")
        return self


class OpenVinoConvertConfig(StepBase):
    """Plain conversion to OpenVINO IR, float32 weights."""

    step: Literal["openvino_convert"] = "openvino_convert"
    produces: ClassVar[str] = "openvino"
    handler: ClassVar[str] = "edgeslim.compress.openvino:convert"


class LiteRtConvertConfig(StepBase):
    """Convert the PyTorch model to a float32 LiteRT .tflite (litert-torch), static shape: text
    (1, max_seq_length) int32 inputs; images (1, H, W, 3) channels last, ending in the pooled
    embedding. Checked against PyTorch on calibration sentences or images."""

    step: Literal["litert_convert"] = "litert_convert"
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "litert"
    handler: ClassVar[str] = "edgeslim.compress.litert:convert"
    extra: ClassVar[str] = "litert-export"
    parity_samples: int = Field(16, ge=1, le=256)
    min_parity_cosine: float = Field(0.9999, gt=0.0, le=1.0)


class LiteRtInt8DynamicConfig(StepBase):
    """Dynamic-range int8 for LiteRT: int8 weights, float activations (ai-edge-quantizer)."""

    step: Literal["litert_int8_dynamic"] = "litert_int8_dynamic"
    consumes: ClassVar[str] = "litert"
    produces: ClassVar[str] = "litert"
    int8: ClassVar[bool] = True
    runtime_quantized: ClassVar[bool] = True
    handler: ClassVar[str] = "edgeslim.compress.litert:dynamic_int8"
    extra: ClassVar[str] = "litert-export"
    recipe: Literal["dynamic_wi8_afp32"] = "dynamic_wi8_afp32"


class LiteRtInt8FullConfig(StepBase):
    """Full-integer LiteRT for a model with one fixed-size input (images, audio features): int8
    weights (per channel) and activations (per tensor), int8 input and output, min-max calibrated
    on the recipe's calibration items (ai-edge-quantizer). What an integer NPU compiles whole and a
    Cortex-A runs with int8 kernels."""

    step: Literal["litert_int8_full"] = "litert_int8_full"
    consumes: ClassVar[str] = "litert"
    produces: ClassVar[str] = "litert-int8"
    fixed_size_input: ClassVar[bool] = True
    int8: ClassVar[bool] = True
    handler: ClassVar[str] = "edgeslim.compress.litert:full_int8"
    extra: ClassVar[str] = "litert-export"
    calibration_samples: int = Field(256, ge=8, le=4096)

    @property
    def calibration_sentences(self) -> int:
        return self.calibration_samples


class NpuBodyQuantizeConfig(StepBase):
    """Integer-only encoder body for microcontroller NPUs (Arm Ethos-U): the transformer layers
    as a static-shape .tflite with integer activations (ai-edge-quantizer, calibrated on the
    recipe's calibration corpus); embedding lookup and the additive mask stay on the CPU.

    `int16-mixed`: int8 weights, int16 activations except the ops the NPU runs in int8 only
    (BATCH_MATMUL, GELU) and SOFTMAX. `int8`: int8 everywhere (post-training, loses much
    accuracy on MiniLM: pooled cosine ~0.84). LayerNorm is rewritten without
    SQUARED_DIFFERENCE, which the quantizer leaves in float at int16."""

    step: Literal["npu_body_quantize"] = "npu_body_quantize"
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "npu-body"
    needs: ClassVar[frozenset[str]] = frozenset({"npu_body"})
    modalities: ClassVar[tuple[str, ...]] = ("text",)
    int8: ClassVar[bool] = True
    handler: ClassVar[str] = "edgeslim.compress.npu_body:quantize_body"
    extra: ClassVar[str] = "litert-export"
    activations: Literal["int16-mixed", "int8"] = "int16-mixed"
    calibration_samples: int = Field(64, ge=8, le=1024)
    embeddings_dtype: Literal["float16", "float32"] = "float16"  # the CPU-side token table
    # Static lengths to build the body for (each call runs the shortest that fits; the same
    # quantization parameters in all). The model's max_seq_length is always included.
    seq_lengths: tuple[int, ...] = (32,)

    @property
    def calibration_sentences(self) -> int:
        return self.calibration_samples


class StudentSpec(StrictModel):
    """A student that is not cut from the teacher: a model folder (`local`), or a tiny random
    model of a family (tests). Its tokenizer may differ from the teacher's; its embedding size
    must equal the teacher's."""

    source: Literal["local", "tiny-random"] = "local"
    path: Path | None = None
    family: str | None = None
    prepare: str | None = Field(None, max_length=500)  # how `path` is made (shown when it is missing)

    @model_validator(mode="after")
    def _path_for_local(self):
        if (self.source == "local") != (self.path is not None):
            raise ValueError("distill.student.path is required with source: local, and only then")
        return self


class DistillConfig(StepBase):
    """Distil the teacher's pooled embeddings into a student: initialised from the teacher's
    layers (`keep_layers`), or a separate model (`student`), which is how an ONNX teacher gets a
    PyTorch student."""

    step: Literal["distill"] = "distill"
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "torch"
    handler: ClassVar[str] = "edgeslim.compress.torch_steps:distill"
    keep_layers: tuple[int, ...] | None = None  # layers the student keeps (of the teacher, or of `student`)
    student: StudentSpec | None = None  # None: the student starts as a copy of the teacher
    # Unlabeled sentences (or images, e.g. cifar10-train); checked disjoint from every
    # evaluation set (overlaps are dropped).
    corpus: tuple[str, ...] = ("wordnet-calibration",)
    sentences: int = Field(20000, ge=16)  # at most this many sentences or images, in corpus order
    # Images: flip and shift each batch (the teacher embeds the same augmented batch); text: unused.
    augment: bool = True
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(64, ge=2)
    learning_rate: float = Field(1e-4, gt=0)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    max_seq_length: int = Field(64, ge=8, le=512)
    loss: Literal["cosine", "mse", "cosine+mse"] = "cosine+mse"
    dropout: float = Field(0.0, ge=0, lt=1)  # 0 keeps multi-process runs identical to one process
    checkpoint_every: int = Field(100, ge=1)
    seed: int = 0

    def parts_needed(self) -> frozenset[str]:
        return frozenset({"layers"}) if self.keep_layers is not None else frozenset()

    def input_kind(self) -> str | None:
        return None if self.student is not None else self.consumes

    def corpora(self) -> tuple[tuple[str, str], ...]:
        return tuple((f"{self.step}.corpus", name) for name in self.corpus)


class VocabPruneConfig(StepBase):
    """Keep only the tokens a corpus uses (plus special and single-character tokens)."""

    step: Literal["vocab_prune"] = "vocab_prune"
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "torch"
    needs: ClassVar[frozenset[str]] = frozenset({"vocabulary"})
    modalities: ClassVar[tuple[str, ...]] = ("text",)
    handler: ClassVar[str] = "edgeslim.compress.torch_steps:vocab_prune"
    corpus: tuple[str, ...] = ("wordnet-calibration",)  # the text the bundle will see
    max_tokens: int | None = Field(None, ge=16)  # cap on the kept vocabulary; None: every used token
    min_count: int = Field(1, ge=1)

    def corpora(self) -> tuple[tuple[str, str], ...]:
        return tuple((f"{self.step}.corpus", name) for name in self.corpus)


class StaticEmbeddingConfig(StepBase):
    """Replace the encoder by a static token-vector table distilled from it (model2vec): the
    embedding of a text is the mean of its tokens' vectors. Pure numpy at run time."""

    step: Literal["static_embeddings"] = "static_embeddings"
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "static"
    needs: ClassVar[frozenset[str]] = frozenset({"vocabulary"})
    modalities: ClassVar[tuple[str, ...]] = ("text",)
    search_backend: ClassVar[str | None] = "static"
    search_name: ClassVar[str | None] = "static"
    handler: ClassVar[str] = "edgeslim.compress.torch_steps:static_embeddings"
    extra: ClassVar[str] = "static"
    dtype: Literal["float16", "float32"] = "float16"
    sif_coefficient: float | None = Field(1e-4, ge=0, lt=1)  # frequency down-weighting; null: none


Ratio = Annotated[float, Field(ge=0.0, le=0.9)]


class PruneConfig(StepBase):
    """Structured pruning (torch-pruning, L2 magnitude importance per group): attention heads and
    FFN channels of a transformer, conv channels of a CNN (`ffn`), then healing distillation
    from the teacher (an image model heals on an image corpus: `heal: {corpus: [cifar10-train]}`)."""

    step: Literal["prune"] = "prune"
    consumes: ClassVar[str] = "torch"
    produces: ClassVar[str] = "torch"
    handler: ClassVar[str] = "edgeslim.compress.torch_steps:prune"
    # One ratio for every layer, or one per layer.
    heads: Ratio | tuple[Ratio, ...] = 0.0
    ffn: Ratio | tuple[Ratio, ...] = 0.0
    heal: DistillConfig | None = DistillConfig()  # null: no healing (accuracy drops a lot)

    def corpora(self) -> tuple[tuple[str, str], ...]:
        return tuple(("prune.heal.corpus", name) for name in self.heal.corpus) if self.heal else ()

    def parts_needed(self) -> frozenset[str]:
        def wanted(ratios) -> bool:
            return any(r > 0 for r in (ratios if isinstance(ratios, tuple) else (ratios,)))

        parts = {part for part, ratios in (("heads", self.heads), ("ffn", self.ffn)) if wanted(ratios)}
        return frozenset(parts) | (self.heal.parts_needed() if self.heal else frozenset())


# The step registry: every step a recipe may name. Adding a step = a config class above with
# its class attributes, a handler, and one line here.
STEP_CONFIGS: tuple[type[StepBase], ...] = (
    DistillConfig, PruneConfig, VocabPruneConfig, StaticEmbeddingConfig, ExportOnnxConfig, Int8DynamicConfig,
    Int8StaticConfig, OpenVinoInt8Config, OpenVinoConvertConfig, LiteRtConvertConfig, LiteRtInt8DynamicConfig,
    LiteRtInt8FullConfig, NpuBodyQuantizeConfig, OpenVinoStaticShapesConfig, OnnxFp16Config,
)
STEPS: dict[str, type[StepBase]] = {cls.model_fields["step"].default: cls for cls in STEP_CONFIGS}

StepConfig = Annotated[Union[STEP_CONFIGS], Field(discriminator="step")]


