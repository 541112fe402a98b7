"""`load(bundle) -> Encoder`: checksums verified, inputs validated, one backend session.

A text bundle encodes strings (`encode`), an image bundle images (`encode_images`: file paths,
PIL images or HxWxC uint8 arrays, preprocessed as its manifest says). An Encoder is safe to
share across threads (every backend is; see runtime/backends.py): results are the same as
serial calls with the same batches."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from edgeslim.errors import BundleError, InputError
from edgeslim.runtime.backends import open_backend
from edgeslim.runtime.bundle import BundleReader, read_manifest
from edgeslim.runtime.manifest import Manifest
from edgeslim.runtime.text import encodings_to_arrays, pool

OVERLONG_POLICIES = ("truncate", "error")


class Encoder:
    """Sentence encoder over one bundle. Build it with `load()`."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, backend, tokenizer: Tokenizer | None, on_overlong: str):
        self.bundle_dir = bundle_dir
        self.manifest = manifest
        self.modality = manifest.modality
        self.backend = backend
        self.tokenizer = tokenizer
        self.on_overlong = on_overlong
        self.max_seq_length = manifest.max_seq_length
        self.dim = manifest.embedding_dim
        self.vocabulary_size = tokenizer.get_vocab_size(with_added_tokens=True) if tokenizer else 0
        self.truncated_total = 0  # texts cut to max_seq_length since load
        self._count_lock = threading.Lock()
        self._input_names = [spec.name for spec in manifest.inputs]

    @property
    def providers(self) -> list[str]:
        return list(self.backend.providers)

    def _require(self, modality: str, call: str) -> None:
        if self.modality != modality:
            other = "encode_images(images)" if self.modality == "image" else "encode(texts)"
            raise InputError(f"{call} needs a {modality} bundle; {self.bundle_dir} encodes {self.modality}: use {other}")

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """(len(texts), dim) float32 embeddings, L2-normalised when the manifest says so."""
        self._require("text", "encode()")
        self._validate(texts, batch_size)
        encodings = self.tokenizer.encode_batch(list(texts))
        overlong = [i for i, e in enumerate(encodings) if e.overflowing]
        if overlong and self.on_overlong == "error":
            raise InputError(
                f"texts at indices {overlong[:10]} exceed max_seq_length={self.max_seq_length} tokens; "
                "shorten them or load with on_overlong='truncate'"
            )
        with self._count_lock:
            self.truncated_total += len(overlong)
        # Sorting by length keeps padding, and so wasted compute, low within each batch.
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(texts), self.dim), np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = encodings_to_arrays([encodings[i] for i in rows])
            out[rows] = self.embed_tokens(ids, mask)
        return out

    def encode_images(self, images, batch_size: int = 32) -> np.ndarray:
        """(len(images), dim) float32 embeddings of images: file paths, PIL images or HxWxC uint8
        arrays, preprocessed as the manifest states (numpy + Pillow, as on the host)."""
        from edgeslim.runtime.image import preprocess

        self._require("image", "encode_images()")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(images, (list, tuple)):
            preprocess(images, self.manifest.preprocessing)  # raises the InputError that says what is wrong
        if not images:
            raise InputError("encode_images() got an empty list; pass at least one image")
        parts = [self.embed_pixels(preprocess(list(images[i : i + batch_size]), self.manifest.preprocessing))
                 for i in range(0, len(images), batch_size)]
        return np.concatenate(parts)

    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        """Run the model on preprocessed images: float32 of the manifest's input shape."""
        (spec,) = self.manifest.inputs
        if not isinstance(pixel_values, np.ndarray):
            raise InputError(f"pixel_values must be a float32 numpy array, got {type(pixel_values).__name__}")
        if pixel_values.dtype != np.float32:
            raise InputError(f"pixel_values must be float32, got dtype {pixel_values.dtype}")
        fixed = [d for d in spec.shape[1:]]
        if pixel_values.ndim != len(spec.shape) or list(pixel_values.shape[1:]) != fixed or not pixel_values.shape[0]:
            raise InputError(f"pixel_values of shape {pixel_values.shape}; the bundle takes (batch >= 1, "
                             f"{', '.join(map(str, fixed))})")
        if not np.isfinite(pixel_values).all():
            raise InputError("pixel_values hold NaN or infinity")
        hidden = self.backend.run({spec.name: pixel_values})
        if hidden.ndim != 3 or hidden.shape[0] != pixel_values.shape[0] or hidden.shape[2] != self.dim:
            raise BundleError(f"{self.bundle_dir}: the model returned states of shape {hidden.shape}, the manifest "
                              f"promises (batch, positions, {self.dim})")
        return pool(hidden, np.ones(hidden.shape[:2], np.int64), self.manifest.pooling, self.manifest.normalize)

    def embed_tokens(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Run the model on already tokenized input: integer arrays of shape (batch, seq), token
        ids in [0, vocabulary_size), a mask of 0/1 with at least one 1 per row."""
        input_ids, attention_mask = self._validate_tokens(input_ids, attention_mask)
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        hidden = self.backend.run({name: feeds[name] for name in self._input_names})
        if hidden.ndim != 3 or hidden.shape[:2] != input_ids.shape or hidden.shape[2] != self.dim:
            raise BundleError(f"{self.bundle_dir}: the model returned token states of shape {hidden.shape}, the "
                              f"manifest promises (batch, seq, {self.dim}) for input {input_ids.shape}")
        return pool(hidden, attention_mask, self.manifest.pooling, self.manifest.normalize)

    def _validate_tokens(self, input_ids, attention_mask) -> tuple[np.ndarray, np.ndarray]:
        arrays = []
        for name, array in (("input_ids", input_ids), ("attention_mask", attention_mask)):
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
        if seq > self.max_seq_length:
            raise InputError(f"sequence length {seq} exceeds the bundle's max_seq_length {self.max_seq_length}")
        bad = np.flatnonzero((input_ids < 0).any(1) | (input_ids >= self.vocabulary_size).any(1))
        if bad.size:
            raise InputError(f"token ids out of range [0, {self.vocabulary_size}) in rows {bad[:10].tolist()}")
        if ((attention_mask != 0) & (attention_mask != 1)).any():
            raise InputError("attention_mask must hold 0 and 1 only")
        empty = np.flatnonzero(attention_mask.sum(1) == 0)
        if empty.size:
            raise InputError(f"attention_mask rows {empty[:10].tolist()} are all zero: nothing to embed")
        return input_ids, attention_mask

    def _validate(self, texts, batch_size) -> None:
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
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _tokenizer(reader: BundleReader) -> Tokenizer:
    manifest = reader.manifest
    try:
        tokenizer = Tokenizer.from_str(reader.read_text(manifest.tokenizer_file))
    except BundleError:
        raise
    except Exception as exc:  # tokenizers raises plain Exception for a bad file
        raise BundleError(f"{reader.bundle_dir}: {manifest.tokenizer_file} is not a tokenizer: {exc}") from None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=manifest.max_seq_length)
    return tokenizer


def load(bundle_dir: str | Path, threads: int | None = None, on_overlong: str = "truncate",
         backend_options: dict | None = None) -> Encoder:
    """Open a bundle: check its format and every file's sha256, then start its backend.

    threads: intra-op threads for the backend (None: the backend's default).
    on_overlong: 'truncate' (cut to max_seq_length, counted in `truncated_total`) or 'error'.
    backend_options: e.g. {"providers": [...]} for onnxruntime, {"device": "NPU"} for openvino.
    """
    if on_overlong not in OVERLONG_POLICIES:
        raise InputError(f"on_overlong={on_overlong!r}; allowed: {', '.join(OVERLONG_POLICIES)}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise InputError(f"threads must be a positive int or None (the backend's default), got {threads!r}")
    if backend_options is not None and not isinstance(backend_options, dict):
        raise InputError(f"backend_options must be a dict, got {type(backend_options).__name__}")
    bundle_dir = Path(bundle_dir)
    reader = BundleReader(bundle_dir, read_manifest(bundle_dir))
    manifest = reader.manifest
    tokenizer = _tokenizer(reader) if manifest.tokenizer_file else None
    backend = open_backend(manifest.backend, reader, threads, backend_options)
    reader.verify_all()  # the files no backend read (model card, reports, scripts)
    expected = sorted(spec.name for spec in manifest.inputs)
    if sorted(backend.input_names) != expected:
        raise BundleError(
            f"{bundle_dir}: the model's inputs {sorted(backend.input_names)} differ from the manifest's {expected}"
        )
    return Encoder(bundle_dir, manifest, backend, tokenizer, on_overlong)
