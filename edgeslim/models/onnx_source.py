"""An ONNX encoder as the teacher (`model: {source: onnx, path: model.onnx, modality: ...}`).

Its reference embeddings come from ONNX Runtime in float32 on the CPU; export-side steps
(int8, OpenVINO, fp16, static shapes) run on the file itself. A text model reads the
`tokenizer.json` beside it and takes (input_ids, attention_mask); an image model takes one
float32 NCHW input and the recipe states its preprocessing (`model.preprocessing`). The output
is the first graph output, (batch, positions, dim) token or patch states; pooling as the recipe
says. PyTorch surgery (distillation, pruning) needs a model family and is refused by the plan.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeslim.errors import RecipeError
from edgeslim.models.base import InputSpec, pool_states

_ONNX_DTYPES = {1: "float32", 7: "int64", 6: "int32", 10: "float16"}


@dataclass
class OnnxEncoder:
    name: str
    path: Path
    modality: str
    pooling: str
    normalize: bool
    weights_sha256: str
    input_specs: tuple[InputSpec, ...]
    output_name: str
    hidden_size: int
    tokenizer: object | None = None
    max_seq_length: int | None = None
    preprocessing: dict | None = None
    license: str = "unknown: see the source model's documentation"
    family: object | None = None  # no model family: the graph is all there is
    transformer: bool = True  # has attention (Softmax) nodes: quantizers place transformer patterns
    reference: str = "ONNX Runtime fp32"  # what the baseline runs on
    _session: object = field(default=None, repr=False)

    @property
    def session(self):
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        return self._session

    def parameters_mb(self) -> float:
        return self.path.stat().st_size / 1e6

    def inputs(self) -> tuple[InputSpec, ...]:
        return self.input_specs

    def output(self) -> InputSpec:
        return InputSpec(self.output_name, "float32", ("batch", "sequence", self.hidden_size))

    def tokenize(self, texts, pad_to: int | None = None):
        from edgeslim.runtime.text import tokenize

        return tokenize(self.tokenizer, texts, pad_to)

    def states(self, feeds: dict) -> np.ndarray:
        names = {spec.name for spec in self.input_specs}
        return self.session.run([self.output_name], {k: v for k, v in feeds.items() if k in names})[0]

    def feeds(self, items):
        if self.modality == "text":
            ids, mask = self.tokenize(items)
            return {"input_ids": ids, "attention_mask": mask}, mask
        return {self.input_specs[0].name: self.pixel_values(items)}, None

    def embed_tokens(self, input_ids, attention_mask):
        hidden = self.states({"input_ids": input_ids, "attention_mask": attention_mask})
        return pool_states(hidden, attention_mask, self.pooling, self.normalize)

    def embed(self, texts, batch_size: int = 32):
        texts = list(texts)
        parts = [self.embed_tokens(*self.tokenize(texts[i : i + batch_size])) for i in range(0, len(texts), batch_size)]
        return np.concatenate(parts)

    def pixel_values(self, images):
        from edgeslim.runtime.image import ImagePreprocessing, preprocess

        return preprocess(list(images), ImagePreprocessing.model_validate(self.preprocessing))

    def embed_pixels(self, pixel_values):
        hidden = self.states({self.input_specs[0].name: pixel_values})
        return pool_states(hidden, None, self.pooling, self.normalize)

    def embed_images(self, images, batch_size: int = 32):
        images = list(images)
        return np.concatenate([self.embed_pixels(self.pixel_values(images[i : i + batch_size]))
                               for i in range(0, len(images), batch_size)])

    def embed_items(self, items, batch_size: int = 32):
        return self.embed(items, batch_size) if self.modality == "text" else self.embed_images(items, batch_size)


def load_onnx_encoder(spec) -> OnnxEncoder:
    import onnx
    from tokenizers import Tokenizer

    path = Path(spec.path)
    if not path.is_file():
        raise RecipeError(f"model.path {path}: no such ONNX file")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError and others for a damaged file
        raise RecipeError(f"model.path {path} is not an ONNX model: {exc}") from None
    initializers = {i.name for i in graph.initializer}
    inputs = []
    for value in graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dims = tuple(d.dim_param or (d.dim_value if d.dim_value > 0 else f"d{i}")
                     for i, d in enumerate(tensor.shape.dim))
        inputs.append(InputSpec(value.name, _ONNX_DTYPES.get(tensor.elem_type, "float32"), dims))
    output = graph.output[0]
    last = output.type.tensor_type.shape.dim[-1].dim_value
    tokenizer, preprocessing = None, None
    if spec.modality == "text":
        names = sorted(i.name for i in inputs)
        if names != ["attention_mask", "input_ids"]:
            raise RecipeError(f"{path}: a text encoder takes inputs input_ids and attention_mask; this one takes {names}")
        tokenizer_file = path.parent / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise RecipeError(f"{path}: a text ONNX encoder needs tokenizer.json beside it ({tokenizer_file})")
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=spec.max_seq_length)
    else:
        if len(inputs) != 1 or inputs[0].dtype != "float32" or len(inputs[0].shape) != 4:
            raise RecipeError(f"{path}: an image encoder takes one float32 NCHW input; this one takes "
                              f"{[(i.name, i.dtype, i.shape) for i in inputs]}")
        if spec.preprocessing is None:
            raise RecipeError("model.preprocessing is required for an image ONNX encoder (resize or "
                              "resize_shortest_edge + crop, interpolation, mean, std)")
        preprocessing = spec.preprocessing
    encoder = OnnxEncoder(name=path.stem, path=path, modality=spec.modality, pooling=spec.pooling,
                          normalize=spec.normalize, weights_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                          input_specs=tuple(inputs), output_name=output.name, hidden_size=int(last or 0),
                          tokenizer=tokenizer, max_seq_length=spec.max_seq_length if tokenizer else None,
                          preprocessing=preprocessing)
    encoder.transformer = any(node.op_type == "Softmax" for node in graph.node)
    if not encoder.hidden_size:  # a symbolic last dimension: run it once to see
        if tokenizer:
            probe = encoder.embed(["probe"])
        else:
            shape = [1] + [d if isinstance(d, int) else 1 for d in inputs[0].shape[1:]]
            probe = encoder.embed_pixels(np.zeros(shape, np.float32))
        encoder.hidden_size = int(probe.shape[1])
    return encoder
