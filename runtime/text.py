"""Text: tokenization to numpy arrays, pooling of token states, and the text modality's runtime
half. numpy + tokenizers only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from edgeslim.errors import InputError
from edgeslim.runtime.modality import RuntimeModality, _lines


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


def configured(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    """No padding (batches pad themselves), truncation at `max_length` tokens."""
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class TextModality(RuntimeModality):
    """Sentences through the bundle's `tokenizer.json` (WordPiece, BPE, Unigram), truncated at
    the manifest's max_seq_length; the mask keeps padding out of the pooled vector."""

    name = "text"
    entry = "encode"
    argument = "texts"
    noun = "sentences"

    def read_items(self, path):
        """A UTF-8 text file, one sentence per non-empty line."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: a text bundle reads a UTF-8 text file, one sentence per line")
        items = _lines(path)
        if not items:
            raise InputError(f"{path}: no sentences in it (one per non-empty line)")
        return items
    variable_length = True
    reads_tokenizer = True

    def check_manifest(self, manifest) -> None:
        if manifest.tokenizer_file is None or manifest.max_seq_length is None:
            raise ValueError("a text bundle needs tokenizer_file and max_seq_length")
        if manifest.preprocessing is not None:
            raise ValueError("a text bundle has no preprocessing (its tokenizer is its preprocessing)")

    def referenced_files(self, manifest) -> list[str]:
        return [manifest.tokenizer_file]

    def open_preprocessor(self, reader) -> Tokenizer:
        from edgeslim.errors import BundleError

        manifest = reader.manifest
        try:
            tokenizer = Tokenizer.from_str(reader.read_text(manifest.tokenizer_file))
        except BundleError:
            raise
        except Exception as exc:  # tokenizers raises plain Exception for a bad file
            raise BundleError(f"{reader.bundle_dir}: {manifest.tokenizer_file} is not a tokenizer: {exc}") from None
        return configured(tokenizer, manifest.max_seq_length)

    def check_items(self, texts) -> list:
        if isinstance(texts, str):
            raise InputError("encode() takes a list of strings, not a single str; wrap it: encode([text])")
        if not isinstance(texts, (list, tuple)):
            raise InputError(f"encode() takes a list of strings, got {type(texts).__name__}")
        if not texts:
            raise InputError("encode() got an empty list; pass at least one string")
        not_str = [(i, type(t).__name__) for i, t in enumerate(texts) if not isinstance(t, str)]
        if not_str:
            raise InputError(f"encode() takes strings only; non-str items (index, type): {not_str[:10]}")
        unencodable = [i for i, t in enumerate(texts) if not _utf8(t)]
        if unencodable:
            raise InputError(f"strings at indices {unencodable[:10]} are not valid Unicode text (lone surrogate "
                             "code points); decode bytes with errors='replace' first")
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise InputError(f"empty or whitespace-only strings at indices {empty[:10]}; they have no meaning to embed")
        return list(texts)

    def model_inputs(self, tokenizer, items, input_names, pad_to=None):
        ids, mask = tokenize(tokenizer, items, pad_to)
        return {"input_ids": ids, "attention_mask": mask}, mask

    def embed_items(self, model, texts, batch_size: int = 32) -> np.ndarray:
        """Sorted by length, so each batch pads little; results come back in input order. Texts
        over the tokenizer's length are truncated and counted (`model.note_truncated`), or refused
        when the model's `on_overlong` is 'error'."""
        texts = self.check_items(texts)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        encodings = model.preprocessor.encode_batch(texts)
        overlong = [i for i, e in enumerate(encodings) if e.overflowing]
        if overlong and getattr(model, "on_overlong", "truncate") == "error":
            raise InputError(f"texts at indices {overlong[:10]} exceed max_seq_length={model.max_seq_length} tokens; "
                             "shorten them or load with on_overlong='truncate'")
        model.note_truncated(len(overlong))
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = None
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = encodings_to_arrays([encodings[i] for i in rows])
            pooled = model.embed_inputs({"input_ids": ids, "attention_mask": mask})
            if out is None:
                out = np.empty((len(texts), pooled.shape[1]), np.float32)
            out[rows] = pooled
        return out

    def check_feeds(self, encoder, feeds):
        """Token ids (int64/int32) in [0, vocabulary_size) and a 0/1 mask with a 1 in every row."""
        if not isinstance(feeds, dict) or sorted(feeds) != ["attention_mask", "input_ids"]:
            got = sorted(feeds) if isinstance(feeds, dict) else type(feeds).__name__
            raise InputError(f"model inputs {got}; a text bundle takes ['attention_mask', 'input_ids']")
        arrays = []
        for name in ("input_ids", "attention_mask"):
            array = feeds[name]
            if not isinstance(array, np.ndarray):
                raise InputError(f"{name} must be a numpy array, got {type(array).__name__}")
            if array.dtype.kind not in "iu":
                raise InputError(f"{name} must hold integers (int64 or int32), got dtype {array.dtype}")
            arrays.append(array.astype(np.int64, copy=False))
        input_ids, attention_mask = arrays
        if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
            raise InputError(
                f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} must both be (batch, seq)"
            )
        batch, seq = input_ids.shape
        if batch == 0 or seq == 0:
            raise InputError(f"input of shape {input_ids.shape} is empty; batch and sequence length must be >= 1")
        if seq > encoder.max_seq_length:
            raise InputError(f"sequence length {seq} exceeds the bundle's max_seq_length {encoder.max_seq_length}")
        vocabulary = encoder.vocabulary_size
        bad = np.flatnonzero((input_ids < 0).any(1) | (input_ids >= vocabulary).any(1))
        if bad.size:
            raise InputError(f"token ids out of range [0, {vocabulary}) in rows {bad[:10].tolist()}")
        if ((attention_mask != 0) & (attention_mask != 1)).any():
            raise InputError("attention_mask must hold 0 and 1 only")
        empty = np.flatnonzero(attention_mask.sum(1) == 0)
        if empty.size:
            raise InputError(f"attention_mask rows {empty[:10].tolist()} are all zero: nothing to embed")
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def pooling_mask(self, feeds, hidden):
        mask = feeds["attention_mask"]
        if hidden.shape[1] == 1 and mask.shape[1] != 1:  # one position for the whole text: already pooled
            return np.ones((len(mask), 1), np.int64)
        return mask

    def bench_feeds(self, encoder, batch, seq_len):
        seq_len = seq_len or encoder.max_seq_length
        if seq_len > encoder.max_seq_length:
            raise InputError(f"--seq-len {seq_len} exceeds the bundle's max_seq_length {encoder.max_seq_length}")
        ids = encoder.preprocessor.encode(_BENCH_TEXT * (1 + seq_len // 20)).ids[:seq_len]
        ids = np.repeat(np.asarray([ids], np.int64), batch, axis=0)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}

    def operating_point(self, seq_len):
        return f"{seq_len} tokens"

    def sample_item(self, tokenizer):
        return "a small test sentence"

    def health_items(self, tokenizer) -> list:
        return ["a small test sentence", "The device loaded the new model and checked it before switching.",
                "Wie spät ist es?"]


# Real text to cut `edgeslim bench`'s input from (the bundle's own tokenizer turns it into ids).
_BENCH_TEXT = ("A bundle is measured on the device it was made for, with the input length, batch size and "
               "thread count stated, so that the figure can be compared with the estimate it replaces. ")
TEXT = TextModality()
