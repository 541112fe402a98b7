"""`load(bundle) -> Encoder`: checksums verified, inputs validated, one backend session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from edgeslim.errors import BundleError, InputError
from edgeslim.runtime.backends import open_backend
from edgeslim.runtime.bundle import read_manifest, verify_files
from edgeslim.runtime.text import encodings_to_arrays, pool

OVERLONG_POLICIES = ("truncate", "error")


class Encoder:
    """Sentence encoder over one bundle. Build it with `load()`."""

    def __init__(self, bundle_dir: Path, manifest: dict, backend, tokenizer: Tokenizer, on_overlong: str):
        self.bundle_dir = bundle_dir
        self.manifest = manifest
        self.backend = backend
        self.tokenizer = tokenizer
        self.on_overlong = on_overlong
        self.max_seq_length = int(manifest["max_seq_length"])
        self.dim = int(manifest["embedding_dim"])
        self.truncated_total = 0  # texts cut to max_seq_length since load
        self._input_names = [spec["name"] for spec in manifest["inputs"]]

    @property
    def providers(self) -> list[str]:
        return list(self.backend.providers)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """(len(texts), dim) float32 embeddings, L2-normalised when the manifest says so."""
        self._validate(texts, batch_size)
        encodings = self.tokenizer.encode_batch(list(texts))
        overlong = [i for i, e in enumerate(encodings) if e.overflowing]
        if overlong and self.on_overlong == "error":
            raise InputError(
                f"texts at indices {overlong[:10]} exceed max_seq_length={self.max_seq_length} tokens; "
                "shorten them or load with on_overlong='truncate'"
            )
        self.truncated_total += len(overlong)
        # Sorting by length keeps padding, and so wasted compute, low within each batch.
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(texts), self.dim), np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = encodings_to_arrays([encodings[i] for i in rows])
            out[rows] = self.embed_tokens(ids, mask)
        return out

    def embed_tokens(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Run the model on already tokenized input: int64 arrays of shape (batch, seq)."""
        if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
            raise InputError(
                f"input_ids {input_ids.shape} and attention_mask {attention_mask.shape} must both be (batch, seq)"
            )
        if input_ids.shape[1] > self.max_seq_length:
            raise InputError(f"sequence length {input_ids.shape[1]} exceeds the bundle's max_seq_length {self.max_seq_length}")
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        hidden = self.backend.run({name: feeds[name] for name in self._input_names})
        return pool(hidden, attention_mask, self.manifest["pooling"], bool(self.manifest["normalize"]))

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
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise InputError(f"empty or whitespace-only strings at indices {empty[:10]}; they have no meaning to embed")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")


def load(bundle_dir: str | Path, threads: int | None = None, on_overlong: str = "truncate",
         backend_options: dict | None = None) -> Encoder:
    """Open a bundle: check its format and every file's sha256, then start its backend.

    threads: intra-op threads for the backend (None: the backend's default).
    on_overlong: 'truncate' (cut to max_seq_length, counted in `truncated_total`) or 'error'.
    backend_options: e.g. {"providers": [...]} for onnxruntime, {"device": "NPU"} for openvino.
    """
    if on_overlong not in OVERLONG_POLICIES:
        raise InputError(f"on_overlong={on_overlong!r}; allowed: {', '.join(OVERLONG_POLICIES)}")
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    verify_files(bundle_dir, manifest)
    tokenizer_file = manifest.get("tokenizer_file", "tokenizer.json")
    if tokenizer_file not in manifest["files"]:
        raise BundleError(f"{bundle_dir}: tokenizer file {tokenizer_file} is not covered by a checksum")
    tokenizer = Tokenizer.from_file(str(bundle_dir / tokenizer_file))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=int(manifest["max_seq_length"]))
    options = dict(manifest.get("backend_options", {}))
    options.update(backend_options or {})
    backend = open_backend(manifest["backend"], bundle_dir / manifest["model_file"], threads, options)
    expected = sorted(spec["name"] for spec in manifest["inputs"])
    if sorted(backend.input_names) != expected:
        raise BundleError(
            f"{bundle_dir}: the model's inputs {sorted(backend.input_names)} differ from the manifest's {expected}"
        )
    return Encoder(bundle_dir, manifest, backend, tokenizer, on_overlong)
