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

OUTPUT_NAME = "last_hidden_state"
OPSET = 17


def export_onnx(model, path: Path, parity_items, max_abs_diff: float = 1e-4, min_cosine: float = 0.99999):
    """Export `model` (an EncoderModel) to `path`; return (OnnxModel, record).

    Parity: ONNX Runtime on `parity_items` (texts in padded batches, so the mask path is
    exercised, or images) against the plain PyTorch model the teacher is; token states compared
    where the mask is 1.
    """
    import onnxruntime as ort

    path = Path(path)
    module = model.exportable().eval()
    names = [spec.name for spec in model.family.inputs(model.module)]
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        # Legacy TorchScript exporter: keeps module paths in node names, which reports and the
        # sensitivity analysis show to people.
        torch.onnx.export(
            module,
            model.example_inputs(),
            str(tmp),
            input_names=names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={spec.name: {i: axis for i, axis in enumerate(spec.shape) if isinstance(axis, str)}
                          for spec in (*model.family.inputs(model.module), model.family.output(model.hidden_size))},
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(tmp, path)

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst_diff, cosines = 0.0, []
    items = list(parity_items)
    for start in range(0, len(items), 8):
        feeds = model.model_inputs(items[start : start + 8])
        onnx_hidden = session.run([OUTPUT_NAME], feeds)[0]
        torch_hidden = model.states(feeds)
        real = model.runtime_modality.pooling_mask(feeds, onnx_hidden).astype(bool)
        worst_diff = max(worst_diff, float(np.abs(onnx_hidden[real] - torch_hidden[real]).max()))
        a = pool(onnx_hidden, real.astype(np.int64), model.pooling, True)
        b = pool(torch_hidden, real.astype(np.int64), model.pooling, True)
        cosines.extend((a * b).sum(1).tolist())
    record = {
        "exporter": f"torch.onnx legacy (opset {OPSET}), torch {torch.__version__}",
        "parity_items": len(items),
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
