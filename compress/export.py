"""PyTorch encoder -> ONNX, with a parity check against the PyTorch model that fails loudly."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch

from edgeslim.compress.artifacts import OnnxModel
from edgeslim.errors import ExportError
from edgeslim.runtime.text import pool

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "last_hidden_state"
OPSET = 17


def export_onnx(model, path: Path, parity_texts, max_abs_diff: float = 1e-4, min_cosine: float = 0.99999):
    """Export `model` (an EncoderModel) to `path`; return (OnnxModel, record).

    Parity: ONNX Runtime on `parity_texts` (padded batches, so the mask path is exercised)
    against the plain PyTorch model the teacher is; token states compared where the mask is 1.
    """
    import onnxruntime as ort

    path = Path(path)
    module = model.exportable().eval()
    ids, mask = model.tokenize(["an example sentence to trace the graph", "short"])
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        # Legacy TorchScript exporter: keeps module paths in node names, which reports and the
        # sensitivity analysis show to people.
        torch.onnx.export(
            module,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(tmp),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
            | {OUTPUT_NAME: {0: "batch", 1: "sequence"}},
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(tmp, path)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst_diff, cosines = 0.0, []
    texts = list(parity_texts)
    for start in range(0, len(texts), 8):
        ids, mask = model.tokenize(texts[start : start + 8])
        onnx_hidden = session.run([OUTPUT_NAME], {"input_ids": ids, "attention_mask": mask})[0]
        with torch.inference_mode():
            torch_hidden = model.bert(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        torch_hidden = torch_hidden.last_hidden_state.numpy()
        real = mask.astype(bool)
        worst_diff = max(worst_diff, float(np.abs(onnx_hidden[real] - torch_hidden[real]).max()))
        a = pool(onnx_hidden, mask, model.pooling, True)
        b = pool(torch_hidden, mask, model.pooling, True)
        cosines.extend((a * b).sum(1).tolist())
    record = {
        "exporter": f"torch.onnx legacy (opset {OPSET}), torch {torch.__version__}",
        "parity_texts": len(texts),
        "parity_max_abs_diff": worst_diff,
        "parity_min_cosine": float(min(cosines)),
    }
    if worst_diff > max_abs_diff or min(cosines) < min_cosine:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"ONNX export does not match PyTorch: max abs diff {worst_diff:.2e} (limit {max_abs_diff:.0e}), "
            f"min pooled cosine {min(cosines):.6f} (limit {min_cosine}); the export was removed"
        )
    return OnnxModel(path), record
