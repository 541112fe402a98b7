"""`edgeslim export-firmware BUNDLE`: a LiteRT bundle as C source for firmware (TFLite Micro,
Ethos-U applications): the model as an aligned byte array with its length and sha256, and a
header with what the application needs (input/output shapes and quantization, arena estimate,
and the modality's input preparation: where tokenization happens, the image preprocessing, or
the audio front end in C). `model_check.c` verifies the array at start-up.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np

from edgeslim.errors import BundleError
from edgeslim.modalities import get_modality
from edgeslim.outputs import check_new_dir, publish_dir, staging_beside
from edgeslim.runtime.bundle import BundleReader
from edgeslim.runtime.manifest import LiteRtBodyOptions, LiteRtOptions, backend_options

CHECK_SOURCE = Path(__file__).parent / "firmware_check" / "model_check.c"
ALIGNMENT = 16  # TFLite Micro needs the flatbuffer 16-byte aligned


def _symbol(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_]", "_", name).strip("_").lower() or "model"


def _io(model: bytes) -> tuple[list[dict], list[dict], int]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    interpreter.allocate_tensors()

    def describe(d):
        scale, zero = d["quantization"]
        return {"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                "scale": float(scale), "zero_point": int(zero)}

    # Arena estimate: every tensor the interpreter allocates that the flatbuffer does not hold.
    arena = 0
    for d in interpreter.get_tensor_details():
        try:
            interpreter.get_tensor(d["index"])
        except ValueError:
            continue
        if d["name"] and int(np.prod(d["shape"])) > 0:
            arena += int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize
    weights = len(model)
    return ([describe(d) for d in interpreter.get_input_details()],
            [describe(d) for d in interpreter.get_output_details()], max(0, arena - weights))


def export_firmware(bundle: Path, out_dir: Path, force: bool = False) -> dict:
    """The bundle's device graph as C source in `out_dir`, a new folder (an existing non-empty
    one is replaced only with force, and never one that holds the bundle or the working dir)."""
    bundle = Path(bundle)
    check_new_dir(Path(out_dir), force, inputs=(bundle,))  # before any work, so a refusal costs nothing
    reader = BundleReader(bundle)
    manifest = reader.manifest
    model_file = manifest.model_file
    if not model_file.endswith(".tflite"):
        raise BundleError(f"{bundle}: export-firmware takes a LiteRT bundle (model .tflite), this one holds "
                          f"{model_file} for {manifest.backend}; build one with a litert_convert step")
    # An NPU bundle flashes the Vela-compiled graph; its inputs and outputs are the host graph's.
    options = backend_options(manifest.backend, manifest.backend_options, str(bundle))
    bodies = list((options.bodies or {}).values()) if isinstance(options, LiteRtBodyOptions) else (
        [options.npu] if isinstance(options, LiteRtOptions) and options.npu is not None else [])
    body = next((b for b in bodies if b.model == model_file), None)
    data = reader.read(body.device_model if body else model_file)
    digest = hashlib.sha256(data).hexdigest()
    symbol = _symbol(manifest.name)
    inputs, outputs, arena = _io(reader.read(model_file) if body else data)
    npu_lines = []
    if body:
        from edgeslim.targets import get_target

        npu_lines, npu_arena = get_target(manifest.target).firmware_notes(manifest, reader, symbol)
        arena = npu_arena if npu_arena is not None else arena
    if body and isinstance(options, LiteRtBodyOptions):  # an encoder body: the embeddings run on the CPU
        npu_lines += [
            "/* The NPU graph starts after the embeddings: the application CPU computes its inputs from",
            "   prelude.npz (in the bundle): hidden = LayerNorm(word_embeddings[id] + position_embeddings[i]",
            "   + token_type_embedding), additive mask = (1 - attention_mask) * mask_value, then quantizes",
            "   both with the INPUT0/INPUT1 scale and zero point below. */"]
    guard = f"EDGESLIM_{symbol.upper()}_H"

    def io_lines(kind, tensors):
        lines = []
        for i, t in enumerate(tensors):
            dims = ", ".join(map(str, t["shape"]))
            lines += [f"/* {kind} {i}: {t['name']} {t['dtype']} [{dims}], scale {t['scale']!r}, zero point {t['zero_point']} */",
                      f"#define {symbol.upper()}_{kind.upper()}{i}_DIMS {{{dims}}}",
                      f"#define {symbol.upper()}_{kind.upper()}{i}_SCALE {t['scale']!r}f",
                      f"#define {symbol.upper()}_{kind.upper()}{i}_ZERO_POINT {t['zero_point']}"]
        return lines

    header = "\n".join([
        f"/* {manifest.name} ({manifest.target}): generated by edgeslim export-firmware from {bundle.name}. */",
        f"#ifndef {guard}", f"#define {guard}", "", "#include <stddef.h>", "",
        f"extern const unsigned char {symbol}_tflite[];",
        f"extern const size_t {symbol}_tflite_len;",
        f"#define {symbol.upper()}_TFLITE_LEN {len(data)}u",
        f'#define {symbol.upper()}_SHA256 "{digest}"',
        "/* what model_check.c compares against */",
        f"#define MODEL_EXPECTED_LEN {symbol.upper()}_TFLITE_LEN",
        f"#define MODEL_EXPECTED_SHA256 {symbol.upper()}_SHA256",
        "/* Tensor arena estimate (activations LiteRT allocates on the host), bytes; TFLite Micro plans",
        "   its arena itself, so treat this as a starting size and trim with its RecordingMicroAllocator. */",
        f"#define {symbol.upper()}_ARENA_BYTES_ESTIMATE {arena}u",
        *npu_lines,
        *io_lines("input", inputs), *io_lines("output", outputs),
        *get_modality(manifest.modality).firmware_lines(manifest, symbol, inputs, outputs),
        "", f"#endif /* {guard} */", ""])
    rows = [", ".join(f"0x{b:02x}" for b in data[i : i + 16]) for i in range(0, len(data), 16)]
    source = "\n".join([
        f'#include "{symbol}.h"', "",
        f"__attribute__((aligned({ALIGNMENT}))) const unsigned char {symbol}_tflite[] = {{",
        ",\n".join(rows), "};", f"const size_t {symbol}_tflite_len = {len(data)}u;", ""])

    out_dir = Path(out_dir)
    check_new_dir(out_dir, force, inputs=(bundle,))  # before the work, so a refusal costs nothing
    reader.verify_all()  # every file not read above, each hashed once
    tmp = staging_beside(out_dir)
    try:
        (tmp / f"{symbol}.h").write_text(header)
        (tmp / f"{symbol}.c").write_text(source)
        shutil.copyfile(CHECK_SOURCE, tmp / "model_check.c")
        publish_dir(tmp, out_dir, force, inputs=(bundle,))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"symbol": symbol, "bytes": len(data), "sha256": digest, "arena_estimate": arena,
            "inputs": inputs, "outputs": outputs, "files": sorted(p.name for p in out_dir.iterdir())}
