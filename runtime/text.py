"""Tokenization to fixed numpy arrays and pooling of token states: numpy + tokenizers only."""

from __future__ import annotations

import numpy as np
from tokenizers import Tokenizer


def tokenize(tokenizer: Tokenizer, texts, pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) as int64, padded to the longest text or to `pad_to`.
    The tokenizer's own truncation applies first."""
    return encodings_to_arrays(tokenizer.encode_batch(list(texts)), pad_to)


def encodings_to_arrays(encodings, pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) from `tokenizers` encodings already computed."""
    length = pad_to or max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), length), np.int64)
    mask = np.zeros((len(encodings), length), np.int64)
    for row, enc in enumerate(encodings):
        n = min(len(enc.ids), length)
        ids[row, :n] = enc.ids[:n]
        mask[row, :n] = 1
    return ids, mask


def pool(hidden: np.ndarray, attention_mask: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    """Sentence embeddings from token states: mean over real tokens, or the [CLS] state."""
    hidden = hidden.astype(np.float32, copy=False)
    if pooling == "mean":
        weights = attention_mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
    elif pooling == "cls":
        pooled = hidden[:, 0]
    else:
        raise ValueError(f"unknown pooling {pooling!r}; allowed: mean, cls")
    if normalize:
        pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
    return pooled.astype(np.float32)
