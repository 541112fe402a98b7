"""LiteRT (.tflite) export through litert-torch, and dynamic-range int8 through ai-edge-quantizer.

LiteRT graphs here have static shapes: (1, max_seq_length) int32 token ids and mask. The runtime
pads each row to that length (the mask keeps padding out of the pooled embedding) and runs rows
one by one, which is also how a Raspberry Pi or a microcontroller application calls it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from edgeslim.compress.artifacts import LiteRtModel, ModelArtifact, TorchModel
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
    return LiteRtModel(path, artifact.seq_len), record
