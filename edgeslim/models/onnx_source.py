"""An ONNX encoder as the teacher (`model: {source: onnx, path: model.onnx, modality: ...}`).

Its reference embeddings come from ONNX Runtime in float32 on the CPU; export-side steps
(int8, OpenVINO, fp16, static shapes) run on the file itself. A text model reads the
`tokenizer.json` beside it and takes (input_ids, attention_mask); a model of a modality with
preprocessing (images, audio) takes one float32 input and the recipe states its preprocessing
(`model.preprocessing`). PyTorch surgery (distillation, pruning) needs a model family and is
refused by the plan.

The output: graphs from other exporters often list int64 pass-throughs of the inputs first and
the token states later, or end in a pooled embedding. `model.output` names the one to use;
without it the one float (batch, positions, dim) output is taken when there is exactly one,
else the one float (batch, dim) output (an already pooled embedding); anything else is a
`RecipeError` listing the graph's outputs. A graph with other outputs is trimmed to the chosen
one (a copy in the cache), so every step and bundle after it sees one output.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeslim.errors import RecipeError
from edgeslim.models.base import InputSpec, pool_states

_ONNX_DTYPES = {1: "float32", 7: "int64", 6: "int32", 10: "float16", 11: "float64", 9: "bool", 3: "int8", 2: "uint8"}
_FLOATS = {1, 10, 11, 16}  # float32, float16, float64, bfloat16


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
    pooled_output: bool = False  # the graph already outputs (batch, dim)
    tokenizer: object | None = None
    max_seq_length: int | None = None
    preprocessing: dict | None = None
    license: str = "unknown: see the source model's documentation"
    languages: str | None = None
    family: object | None = None  # no model family: the graph is all there is
    transformer: bool = True  # has attention (Softmax) nodes: quantizers place transformer patterns
    reference: str = "ONNX Runtime fp32"  # what the baseline runs on
    on_overlong = "truncate"
    _session: object = field(default=None, repr=False)

    @property
    def session(self):
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        return self._session

    @property
    def runtime_modality(self):
        from edgeslim.runtime.modalities import MODALITIES

        return MODALITIES[self.modality]

    @property
    def preprocessor(self):
        return self.tokenizer if self.tokenizer is not None else self.runtime_modality.preprocessing(self.preprocessing)

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.input_specs]

    def parameters_mb(self) -> float:
        return self.path.stat().st_size / 1e6

    def inputs(self) -> tuple[InputSpec, ...]:
        return self.input_specs

    def output(self) -> InputSpec:
        shape = ("batch", self.hidden_size) if self.pooled_output else ("batch", "sequence", self.hidden_size)
        return InputSpec(self.output_name, "float32", shape)

    def note_truncated(self, count: int) -> None:
        pass

    def tokenize(self, texts, pad_to: int | None = None):
        from edgeslim.runtime.text import tokenize

        return tokenize(self.tokenizer, texts, pad_to)

    def model_inputs(self, items, pad_to: int | None = None) -> dict[str, np.ndarray]:
        return self.runtime_modality.model_inputs(self.preprocessor, list(items), self.input_names, pad_to)[0]

    def states(self, feeds: dict) -> np.ndarray:
        """(batch, positions, dim) states; a pooled output is one position."""
        names = set(self.input_names)
        out = self.session.run([self.output_name], {k: v for k, v in feeds.items() if k in names})[0]
        return out[:, None, :] if self.pooled_output else out

    def embed_inputs(self, feeds: dict) -> np.ndarray:
        hidden = self.states(feeds)
        return pool_states(hidden, self.runtime_modality.pooling_mask(feeds, hidden), self.pooling, self.normalize)

    def embed_tokens(self, input_ids, attention_mask):
        return self.embed_inputs({"input_ids": input_ids, "attention_mask": attention_mask})

    def embed_items(self, items, batch_size: int = 32):
        return self.runtime_modality.embed_items(self, list(items), batch_size)

    embed = embed_items


def _dims(value) -> tuple:
    tensor = value.type.tensor_type
    return tuple(d.dim_param or (d.dim_value if d.dim_value > 0 else f"d{i}") for i, d in enumerate(tensor.shape.dim))


def _describe_outputs(graph) -> str:
    return "; ".join(f"{o.name} {_ONNX_DTYPES.get(o.type.tensor_type.elem_type, o.type.tensor_type.elem_type)} "
                     f"{list(_dims(o))}" for o in graph.output)


def choose_output(graph, wanted: str | None, where: str):
    """(the output's ValueInfo, pooled?) by the rules in the module docstring."""
    outputs = list(graph.output)
    listing = f"the graph's outputs: {_describe_outputs(graph)}"
    if wanted is not None:
        chosen = next((o for o in outputs if o.name == wanted), None)
        if chosen is None:
            raise RecipeError(f"{where}: model.output {wanted!r} is not an output of the graph; {listing}")
        rank, floating = len(_dims(chosen)), chosen.type.tensor_type.elem_type in _FLOATS
        if not floating or rank not in (2, 3):
            raise RecipeError(f"{where}: model.output {wanted!r} must be a float (batch, positions, dim) or "
                              f"(batch, dim) tensor; {listing}")
        return chosen, rank == 2
    floats = [o for o in outputs if o.type.tensor_type.elem_type in _FLOATS]
    states = [o for o in floats if len(_dims(o)) == 3]
    pooled = [o for o in floats if len(_dims(o)) == 2]
    if len(states) == 1:
        return states[0], False
    if not states and len(pooled) == 1:
        return pooled[0], True
    reason = "several float (batch, positions, dim) outputs" if len(states) > 1 else (
        "several float (batch, dim) outputs" if len(pooled) > 1 else
        "no float (batch, positions, dim) or (batch, dim) output")
    raise RecipeError(f"{where}: {reason}; name the one to use with model.output. {listing}")


def _trimmed(path: Path, model_sha: str, output_name: str) -> Path:
    """A copy of the graph with `output_name` as its only output (cached by content)."""
    import onnx

    from edgeslim.cache import cache_dir

    out = cache_dir() / "onnx-sources" / f"{model_sha[:24]}-{hashlib.sha256(output_name.encode()).hexdigest()[:8]}.onnx"
    if out.is_file():
        return out
    model = onnx.load(str(path))
    keep = [o for o in model.graph.output if o.name == output_name]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return out


def load_onnx_encoder(spec) -> OnnxEncoder:
    import onnx
    from tokenizers import Tokenizer

    from edgeslim.runtime.modalities import MODALITIES

    path = Path(spec.path)
    if not path.is_file():
        raise RecipeError(f"model.path {path}: no such ONNX file")
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # onnx raises DecodeError and others for a damaged file
        raise RecipeError(f"model.path {path} is not an ONNX model: {exc}") from None
    initializers = {i.name for i in graph.initializer}
    inputs = [InputSpec(v.name, _ONNX_DTYPES.get(v.type.tensor_type.elem_type, "float32"), _dims(v))
              for v in graph.input if v.name not in initializers]
    output, pooled = choose_output(graph, spec.output, str(path))
    last = output.type.tensor_type.shape.dim[-1].dim_value
    tokenizer, preprocessing = None, None
    runtime = MODALITIES[spec.modality]
    if runtime.reads_tokenizer:
        names = sorted(i.name for i in inputs)
        if names != ["attention_mask", "input_ids"]:
            raise RecipeError(f"{path}: a {spec.modality} encoder takes inputs input_ids and attention_mask; this one "
                              f"takes {names}")
        tokenizer_file = path.parent / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise RecipeError(f"{path}: a {spec.modality} ONNX encoder needs tokenizer.json beside it ({tokenizer_file})")
        from edgeslim.runtime.text import configured

        tokenizer = configured(Tokenizer.from_file(str(tokenizer_file)), spec.max_seq_length)
    else:
        if len(inputs) != 1 or inputs[0].dtype != "float32" or len(inputs[0].shape) != 4:
            raise RecipeError(f"{path}: a {spec.modality} encoder takes one float32 (batch, C, H, W) input; this one "
                              f"takes {[(i.name, i.dtype, i.shape) for i in inputs]}")
        if spec.preprocessing is None:
            fields = ", ".join(runtime.preprocessing_model.model_fields)
            raise RecipeError(f"model.preprocessing is required for a {spec.modality} ONNX encoder ({fields})")
        preprocessing = spec.preprocessing
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    run_path = path if len(graph.output) == 1 else _trimmed(path, digest, output.name)
    encoder = OnnxEncoder(name=path.stem, path=run_path, modality=spec.modality, pooling=spec.pooling,
                          normalize=spec.normalize, weights_sha256=digest, input_specs=tuple(inputs),
                          output_name=output.name, hidden_size=int(last or 0), pooled_output=pooled,
                          tokenizer=tokenizer, max_seq_length=spec.max_seq_length if tokenizer else None,
                          preprocessing=preprocessing)
    encoder.transformer = any(node.op_type == "Softmax" for node in graph.node)
    if not encoder.hidden_size:  # a symbolic last dimension: run it once to see
        probe = encoder.embed_inputs(encoder.model_inputs([runtime.sample_item(encoder.preprocessor)]))
        encoder.hidden_size = int(probe.shape[1])
    return encoder
