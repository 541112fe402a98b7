"""LiteRT (.tflite) export through litert-torch; dynamic-range int8 and full-integer int8 through
ai-edge-quantizer.

LiteRT graphs here have static shapes. Text: (1, max_seq_length) int32 token ids and mask; the
runtime pads each row to that length (the mask keeps padding out of the pooled embedding).
Images and audio features: one (1, H, W, C) tensor, channels last (the layout LiteRT's kernels
and NPUs use, so the graph holds no input transpose), and the graph ends in the pooled embedding
(1, 1, dim).
Rows run one by one, which is also how a Raspberry Pi or a microcontroller application calls it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from edgeslim.compress.artifacts import LiteRtInt8Model, LiteRtModel, ModelArtifact, TorchModel
from edgeslim.errors import ExportError, StepError
from edgeslim.runtime.text import pool

_QUANTIZER_RECIPES = {"dynamic_wi8_afp32": "dynamic_wi8_afp32_recipe.json"}


def _int32_encoder(torch_model):
    import torch

    class Int32Inputs(torch.nn.Module):
        """LiteRT runs int32 token ids (int64 inputs are slow or unsupported on small devices)."""

        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            return self.encoder(input_ids.long(), attention_mask.long())

    return Int32Inputs(torch_model.exportable()).eval()


def _pooled_tensor_encoder(torch_model):
    """(1, H, W, C) float input -> (1, 1, dim) pooled embedding (not normalised: the runtime
    normalises, and an integer NPU has no cheap rsqrt)."""
    import litert_torch
    import torch

    pooling = torch_model.pooling

    class Pooled(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, pixel_values):
            hidden = self.encoder(pixel_values)
            return hidden[:, :1] if pooling == "cls" else hidden.mean(1, keepdim=True)

    return litert_torch.to_channel_last_io(Pooled(torch_model.exportable()).eval(), args=[0])


def _nhwc(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


def _tensor_parity(path: Path, torch_model, items) -> float:
    """Lowest cosine between the .tflite's pooled output and PyTorch's over `items`."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeslim.runtime.prelude import dequantize, quantize

    interpreter = Interpreter(str(path), num_threads=1)
    runner = interpreter.get_signature_runner()
    (name, detail), = runner.get_input_details().items()
    (out_detail,) = runner.get_output_details().values()
    (spec,) = torch_model.inputs()
    pixels = torch_model.model_inputs(list(items))[spec.name]
    reference = torch_model.embed_inputs({spec.name: pixels})
    worst = 1.0
    for row, want in zip(_nhwc(pixels), reference):
        out = next(iter(runner(**{name: quantize(row[None], detail)}).values()))
        got = dequantize(out, out_detail).reshape(-1)
        got = got / max(float(np.linalg.norm(got)), 1e-12)
        worst = min(worst, float(got @ want))
    return worst


def _convert_tensor(torch_model, cfg, ctx) -> tuple[LiteRtModel, dict]:
    import litert_torch
    import torch

    module = _pooled_tensor_encoder(torch_model)
    (spec,) = torch_model.inputs()
    example = _nhwc(ctx.feeds(list(ctx.calibration_texts[:1]))[spec.name])
    path = ctx.workdir / "model.tflite"
    tmp = path.with_name("model.tmp.tflite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch.convert(module, (torch.from_numpy(example),)).export(str(tmp))
    os.replace(tmp, path)
    images = list(ctx.calibration_texts[: cfg.parity_samples])
    worst = _tensor_parity(path, torch_model, images)
    if worst < cfg.min_parity_cosine:
        path.unlink()
        raise ExportError(f"LiteRT export does not match PyTorch: min pooled cosine {worst:.6f} over "
                          f"{len(images)} images (limit {cfg.min_parity_cosine}); the export was removed")
    record = {"converter": "litert-torch", "input_shape": list(example.shape), "input_dtype": "float32",
              "input_layout": "NHWC", "output": "pooled embedding (1, 1, dim), normalised by the runtime",
              "parity_images": len(images), "parity_min_cosine": round(worst, 6)}
    return LiteRtModel(path, None, image_layout="NHWC", input_name=spec.name), record


def _parity(path: Path, torch_model, texts, seq_len: int) -> float:
    """Lowest pooled cosine between the .tflite and PyTorch over `texts`."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(str(path), num_threads=1).get_signature_runner()
    names = sorted(runner.get_input_details())
    worst = 1.0
    for text in texts:
        ids, mask = torch_model.tokenize([text], pad_to=seq_len)
        out = next(iter(runner(**dict(zip(names, (ids.astype(np.int32), mask.astype(np.int32))))).values()))
        a = pool(out, mask, "mean", True)
        b = pool(torch_model.states({"input_ids": ids, "attention_mask": mask}), mask, "mean", True)
        worst = min(worst, float((a * b).sum()))
    return worst


def convert(artifact: ModelArtifact, cfg, ctx) -> tuple[LiteRtModel, dict]:
    """PyTorch encoder -> float32 .tflite with a parity gate against PyTorch."""
    import litert_torch
    import torch

    if not isinstance(artifact, TorchModel):
        raise StepError(f"litert_convert converts a PyTorch model; it got a {artifact.kind} model")
    torch_model = artifact.model
    if not torch_model.runtime_modality.reads_tokenizer:  # one fixed-size tensor: images, audio
        return _convert_tensor(torch_model, cfg, ctx)
    seq_len = ctx.max_seq_length
    module = _int32_encoder(torch_model)
    ids, mask = ctx.tokenize(["an example sentence to trace the graph"], seq_len)
    path = ctx.workdir / "model.tflite"
    tmp = path.with_name("model.tmp.tflite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edge = litert_torch.convert(module, (torch.from_numpy(ids).int(), torch.from_numpy(mask).int()))
        edge.export(str(tmp))
    os.replace(tmp, path)
    parity_texts = list(ctx.calibration_texts[: cfg.parity_samples])
    worst = _parity(path, torch_model, parity_texts, seq_len)
    if worst < cfg.min_parity_cosine:
        path.unlink()
        raise ExportError(f"LiteRT export does not match PyTorch: min pooled cosine {worst:.6f} over "
                          f"{len(parity_texts)} sentences (limit {cfg.min_parity_cosine}); the export was removed")
    record = {"converter": f"litert-torch {litert_torch.__version__ if hasattr(litert_torch, '__version__') else ''}".strip(),
              "input_shape": [1, seq_len], "input_dtype": "int32",
              "parity_texts": len(parity_texts), "parity_min_cosine": round(worst, 6)}
    return LiteRtModel(path, seq_len), record


def dynamic_int8(artifact: ModelArtifact, cfg, ctx) -> tuple[LiteRtModel, dict]:
    """Float .tflite -> int8 weights, float activations (ai-edge-quantizer dynamic_wi8_afp32)."""
    import ai_edge_quantizer
    from ai_edge_quantizer import quantizer

    if not isinstance(artifact, LiteRtModel):
        raise StepError(f"litert_int8_dynamic quantizes a LiteRT model, got {artifact.kind}; "
                        "put a litert_convert step before it")
    recipe = Path(ai_edge_quantizer.__file__).parent / "recipes" / _QUANTIZER_RECIPES[cfg.recipe]
    path = ctx.workdir / "model_int8.tflite"
    result = quantizer.Quantizer(str(artifact.path), str(recipe)).quantize()
    result.export_model(str(path), overwrite=True)
    record = {"quantizer": "ai-edge-quantizer", "recipe": cfg.recipe,
              "size_mb_before": round(artifact.path.stat().st_size / 1e6, 3),
              "size_mb_after": round(path.stat().st_size / 1e6, 3)}
    return LiteRtModel(path, artifact.seq_len, image_layout=artifact.image_layout, input_name=artifact.input_name), record


def full_int8(artifact: ModelArtifact, cfg, ctx) -> tuple[LiteRtInt8Model, dict]:
    """Float image .tflite -> full integer: int8 weights (per channel) and activations (per
    tensor, min-max calibrated on the recipe's calibration images), int8 input and output."""
    from ai_edge_quantizer import quantizer

    from edgeslim.compress.npu_body import _quantizer_recipe

    if not isinstance(artifact, LiteRtModel) or artifact.image_layout is None:
        raise StepError(f"litert_int8_full quantizes a float LiteRT model with one fixed-size input (images, "
                        f"audio), got {artifact.kind}; put litert_convert before it (text: npu_body_quantize builds "
                        "the integer body)")
    images = list(ctx.calibration_texts[: cfg.calibration_samples])
    (spec,) = ctx.reader.inputs()
    pixels = _nhwc(ctx.feeds(images)[spec.name])
    from ai_edge_litert.interpreter import Interpreter

    (name,) = Interpreter(str(artifact.path)).get_signature_runner().get_input_details()
    q = quantizer.Quantizer(str(artifact.path), _quantizer_recipe("int8"))
    stats = q.calibrate({"serving_default": [{name: row[None]} for row in pixels]})
    path = ctx.workdir / "model_int8.tflite"
    q.quantize(stats).export_model(str(path), overwrite=True)

    interpreter = Interpreter(str(path))
    (detail,) = interpreter.get_input_details()
    (out,) = interpreter.get_output_details()
    if detail["dtype"] != np.int8 or out["dtype"] != np.int8:
        raise ExportError(f"the quantizer left a float input or output ({detail['dtype'].__name__} in, "
                          f"{out['dtype'].__name__} out); an integer NPU needs int8 at both ends")
    record = {"quantizer": "ai-edge-quantizer (post-training, min-max)", "weights": "int8 per-channel symmetric",
              "activations": "int8 per-tensor", "calibration_images": len(images),
              "input": {"dtype": "int8", "scale": float(detail["quantization"][0]),
                        "zero_point": int(detail["quantization"][1])},
              "output": {"dtype": "int8", "scale": float(out["quantization"][0]), "zero_point": int(out["quantization"][1])},
              "size_mb_before": round(artifact.path.stat().st_size / 1e6, 3),
              "size_mb_after": round(path.stat().st_size / 1e6, 3)}
    return LiteRtInt8Model(path, None, image_layout=artifact.image_layout, input_name=artifact.input_name), record
