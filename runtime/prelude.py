"""The CPU half of an NPU-body bundle: token ids -> the hidden states and additive mask the
integer encoder body takes. numpy only; the same code calibrates the body at build time, so
what the quantizer saw is what the runtime feeds.

The tables live in `prelude.npz`: word, position and token-type-0 embeddings, the embedding
LayerNorm (weight, bias, eps) and the mask value.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from edgeslim.errors import BackendError

PRELUDE_KEYS = ("word_embeddings", "position_embeddings", "token_type_embedding", "layer_norm_weight",
                "layer_norm_bias", "layer_norm_eps", "mask_value")


def load_prelude(data: bytes | Path, name: str = "prelude.npz") -> dict[str, np.ndarray]:
    """The prelude tables from a .npz's bytes (a bundle's, already verified) or a path (at build time)."""
    try:
        with np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False) as archive:
            tables = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError) as exc:
        raise BackendError(f"cannot read the CPU prelude {name}: {exc}") from None
    missing = [k for k in PRELUDE_KEYS if k not in tables]
    if missing:
        raise BackendError(f"{name} lacks {missing}; a prelude holds {list(PRELUDE_KEYS)}")
    return tables


def embed_tokens(tables: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(batch, seq) ids and mask -> hidden (batch, seq, dim) float32 and additive mask
    (batch, 1, 1, seq) float32, as BERT's embedding block computes them."""
    vocabulary, seq = len(tables["word_embeddings"]), ids.shape[1]
    if ids.size and (ids.min() < 0 or ids.max() >= vocabulary):
        raise BackendError(f"token id out of range for a vocabulary of {vocabulary}")
    if seq > len(tables["position_embeddings"]):
        raise BackendError(f"sequence length {seq} exceeds the {len(tables['position_embeddings'])} positions")
    x = (tables["word_embeddings"][ids].astype(np.float32) + tables["position_embeddings"][:seq].astype(np.float32)
         + tables["token_type_embedding"].astype(np.float32))
    centered = x - x.mean(-1, keepdims=True)
    variance = (centered * centered).mean(-1, keepdims=True)
    hidden = centered / np.sqrt(variance + float(tables["layer_norm_eps"]))
    hidden = hidden * tables["layer_norm_weight"].astype(np.float32) + tables["layer_norm_bias"].astype(np.float32)
    additive = (1.0 - mask[:, None, None, :].astype(np.float32)) * float(tables["mask_value"])
    return hidden.astype(np.float32), additive.astype(np.float32)


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float -> the integer type of a LiteRT input, with its scale and zero point."""
    scale, zero = detail["quantization"]
    if not scale:
        return x.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])


def dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    return ((x.astype(np.float32) - zero) * scale) if scale else x.astype(np.float32)
