"""`load(bundle) -> Encoder`: checksums verified, inputs validated, one backend session.

A bundle encodes one modality (`edgeslim.runtime.modalities`): text with `encode(texts)`,
images with `encode_images(images)` (file paths, PIL images or HxWxC uint8 arrays), audio with
`encode_audio(clips)` (WAV paths or 1-D sample arrays); `encode_items` takes whatever the
bundle's modality reads. The input is prepared as the manifest says, by the modality's runtime
half. An Encoder is safe to share across threads (every backend is; see runtime/backends.py):
results are the same as serial calls with the same batches."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from edgeslim.errors import BundleError, InputError, SignatureError
from edgeslim.runtime.backends import open_backend
from edgeslim.runtime.bundle import BundleReader, read_manifest
from edgeslim.runtime.drift import DriftScore, DriftTracker
from edgeslim.runtime.manifest import Manifest
from edgeslim.runtime.modalities import MODALITIES
from edgeslim.runtime.signing import check_signature, trusted_keys_from
from edgeslim.runtime.text import pool

OVERLONG_POLICIES = ("truncate", "error")


class Encoder:
    """Encoder over one bundle. Build it with `load()`."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, backend, preprocessor, on_overlong: str,
                 signed_by: str | None = None):
        self.bundle_dir = bundle_dir
        self.manifest = manifest
        self.signed_by = signed_by  # the trusted key id that signed it, when keys were configured
        self.modality = manifest.modality
        self.modality_plugin = MODALITIES[manifest.modality]
        self.backend = backend
        self.preprocessor = preprocessor  # a tokenizer, or the manifest's typed preprocessing
        self.on_overlong = on_overlong
        self.max_seq_length = manifest.max_seq_length
        self.dim = manifest.embedding_dim
        self.truncated_total = 0  # texts cut to max_seq_length since load
        self._count_lock = threading.Lock()
        self.input_names = [spec.name for spec in manifest.inputs]
        self._drift: DriftTracker | None = None  # running drift statistics, once track_drift() is called
        # Read once: tokenizers' get_vocab_size builds the whole vocabulary map on every call
        # (3.7 ms for MiniLM's 30k tokens, more than the int8 model takes on a short sentence).
        tokenizer = self.tokenizer
        self._vocabulary_size = tokenizer.get_vocab_size(with_added_tokens=True) if tokenizer else 0

    @property
    def identity(self) -> str:
        """The bundle's name and content digest (its manifest's sha256, which pins every file)."""
        return bundle_identity(self.manifest)

    @property
    def tokenizer(self):
        """The text bundle's tokenizer (None for other modalities)."""
        return self.preprocessor if self.manifest.tokenizer_file else None

    @property
    def vocabulary_size(self) -> int:
        return self._vocabulary_size

    @property
    def providers(self) -> list[str]:
        return list(self.backend.providers)

    def note_truncated(self, count: int) -> None:
        with self._count_lock:
            self.truncated_total += count

    # -- raw input: one entry per modality, each refusing the others' input ------------------
    def encode_items(self, items, batch_size: int = 32) -> np.ndarray:
        """(len(items), dim) float32 embeddings of whatever this bundle's modality reads,
        L2-normalised when the manifest says so."""
        tracker = self._drift
        if tracker is None:
            return self.modality_plugin.embed_items(self, items, batch_size)
        # Drift statistics see a call's items in the caller's order: batches may be formed in
        # another (text sorts by length), and windows of one length would look like drift.
        raw = self.modality_plugin.embed_items(_Unnormalized(self), items, batch_size)
        tracker.update(raw)
        return self._normalized(raw)

    def _entry(self, entry: str, items, batch_size: int) -> np.ndarray:
        if self.modality_plugin.entry != entry:
            wanted = next(m for m in MODALITIES.values() if m.entry == entry)
            plugin = self.modality_plugin
            raise InputError(f"{entry}() needs a {wanted.name} bundle; {self.bundle_dir} encodes {self.modality}: use "
                             f"{plugin.entry}({plugin.argument})")
        return self.encode_items(items, batch_size)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Sentences (a text bundle). Texts over max_seq_length tokens are truncated and counted
        in `truncated_total`, or refused when loaded with on_overlong='error'."""
        return self._entry("encode", texts, batch_size)

    def encode_images(self, images, batch_size: int = 32) -> np.ndarray:
        """Images (an image bundle): file paths, PIL images or HxWxC uint8 arrays."""
        return self._entry("encode_images", images, batch_size)

    def encode_audio(self, clips, batch_size: int = 32) -> np.ndarray:
        """Audio clips (an audio bundle): 16-bit PCM mono WAV paths, or 1-D sample arrays at the
        bundle's rate (float in [-1, 1] or int16)."""
        return self._entry("encode_audio", clips, batch_size)

    # -- prepared input ---------------------------------------------------------------------
    def model_inputs(self, items, pad_to: int | None = None) -> dict[str, np.ndarray]:
        """The model's feeds for a batch of raw items, prepared as on the device (text: padded
        to the longest, or to `pad_to`)."""
        items = self.modality_plugin.check_items(items)
        return self.modality_plugin.model_inputs(self.preprocessor, items, self.input_names, pad_to)[0]

    def embed_inputs(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Run the model on prepared input (the manifest's input names -> arrays): token ids and
        mask for text, preprocessed pixels or audio features otherwise; checked first."""
        raw = self._pooled(feeds)
        tracker = self._drift
        if tracker is not None:
            tracker.update(raw)
        return self._normalized(raw)

    def _normalized(self, raw: np.ndarray) -> np.ndarray:
        if not self.manifest.normalize:
            return raw
        return (raw / np.clip(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)

    def encode_unnormalized(self, items, batch_size: int = 32) -> np.ndarray:
        """(len(items), dim) pooled embeddings before any L2 normalisation (what drift statistics
        read: the norm carries information the unit vector drops). Not counted by track_drift."""
        return self.modality_plugin.embed_items(_Unnormalized(self), items, batch_size)

    # -- drift (runtime/drift.py) ---------------------------------------------------------
    def _drift_reference(self):
        if self.manifest.drift is None:
            raise BundleError(f"{self.bundle_dir}: the manifest has no drift reference (bundles built before "
                              "edgeslim.bundle/3 drift statistics, or from a run without held-out data); rebuild it")
        return self.manifest.drift

    def track_drift(self) -> None:
        """Start keeping running statistics of everything this encoder embeds (opt-in; O(dim)
        memory; thread-safe). Calling it again starts afresh."""
        self._drift = DriftTracker(self._drift_reference())

    def drift(self, reset: bool = False) -> DriftScore:
        """The drift score of what was embedded since track_drift() (or the last reset): above
        1 (`drifted`) when the input no longer looks like the bundle's held-out data."""
        tracker = self._drift
        if tracker is None:
            raise InputError("call encoder.track_drift() first: drift statistics are opt-in")
        found = tracker.score()
        if reset:
            tracker.reset()
        return found

    def score_drift(self, items, batch_size: int = 32) -> DriftScore:
        """The drift score of `items` on their own, in windows as `drift()` scores them (the
        running statistics are left alone)."""
        tracker = DriftTracker(self._drift_reference())
        tracker.update(self.encode_unnormalized(items, batch_size))
        return tracker.score()

    def _pooled(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        feeds = self.modality_plugin.check_feeds(self, feeds)
        hidden = self.backend.run({name: feeds[name] for name in self.input_names})
        batch = next(iter(feeds.values())).shape[0]
        if hidden.ndim == 2:  # a graph that already pools: (batch, dim)
            hidden = hidden[:, None, :]
        if hidden.ndim != 3 or hidden.shape[0] != batch or hidden.shape[2] != self.dim:
            raise BundleError(f"{self.bundle_dir}: the model returned states of shape {hidden.shape}, the manifest "
                              f"promises (batch {batch}, positions, {self.dim})")
        mask = self.modality_plugin.pooling_mask(feeds, hidden)
        if mask.shape != hidden.shape[:2]:
            raise BundleError(f"{self.bundle_dir}: the model returned {hidden.shape[1]} positions for input of "
                              f"{mask.shape[1]}")
        return pool(hidden, mask, self.manifest.pooling, False)

    def embed_tokens(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Text: already tokenized input, integer arrays of shape (batch, seq), ids in
        [0, vocabulary_size), a 0/1 mask with at least one 1 per row."""
        return self.embed_inputs({"input_ids": input_ids, "attention_mask": attention_mask})

    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        """Images: preprocessed pixels, float32 of the manifest's input shape."""
        (name,) = self.input_names
        return self.embed_inputs({name: pixel_values})


class _Unnormalized:
    """The encoder as the modalities' embed_items sees it, with embed_inputs giving pooled,
    unnormalised, untracked rows."""

    def __init__(self, encoder: Encoder):
        self._encoder = encoder
        self.embed_inputs = encoder._pooled

    def __getattr__(self, name):
        return getattr(self._encoder, name)


def bundle_identity(manifest: Manifest) -> str:
    """`name@digest`: what verify, bench, reports and devices call a bundle."""
    return f"{manifest.name}@{manifest.manifest_sha256[:16]}"


def load(bundle_dir: str | Path, threads: int | None = None, on_overlong: str = "truncate",
         backend_options: dict | None = None, *, manifest_path: str | Path | None = None,
         trusted_keys: str | Path | None = None) -> Encoder:
    """Open a bundle: check its format and every file's sha256, then start its backend.

    threads: intra-op threads for the backend (None: the backend's default).
    on_overlong: text: 'truncate' (cut to max_seq_length, counted in `truncated_total`) or 'error'.
    backend_options: e.g. {"providers": [...]} for onnxruntime, {"device": "NPU"} for openvino.
    manifest_path: a manifest kept outside the bundle folder (the build's, before publication);
    every file it lists is still read from the folder and checked. Such a bundle is not signed yet:
    trusted keys do not apply to it.
    trusted_keys: a folder of trusted ed25519 `.pub` keys (default: the folder the environment
    variable EDGESLIM_TRUSTED_KEYS names, if set). With keys, the bundle must carry a signature
    by one of them over its current manifest, and every file is checked before anything loads;
    otherwise a SignatureError says which of these failed.
    """
    if not isinstance(bundle_dir, (str, Path)):
        raise InputError(f"load() takes a bundle folder path (str or Path), got {type(bundle_dir).__name__}")
    if on_overlong not in OVERLONG_POLICIES:
        raise InputError(f"on_overlong={on_overlong!r}; allowed: {', '.join(OVERLONG_POLICIES)}")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise InputError(f"threads must be a positive int or None (the backend's default), got {threads!r}")
    if backend_options is not None and not isinstance(backend_options, dict):
        raise InputError(f"backend_options must be a dict, got {type(backend_options).__name__}")
    bundle_dir = Path(bundle_dir)
    reader = BundleReader(bundle_dir, read_manifest(bundle_dir, manifest_path))
    manifest = reader.manifest
    signed_by = None
    if manifest_path is not None and trusted_keys is not None:
        raise InputError("trusted_keys applies to a published bundle, not to one loaded through manifest_path")
    trusted = trusted_keys_from(trusted_keys) if manifest_path is None else None
    if trusted is not None:
        signed_by = check_signature(bundle_dir, manifest.manifest_sha256, trusted)
        try:  # every file before any is used: a signed bundle is all or nothing
            reader.verify_all()
        except BundleError as exc:
            raise SignatureError(f"a file of the bundle signed by key {signed_by} changed after signing: {exc}") \
                from None
    preprocessor = MODALITIES[manifest.modality].open_preprocessor(reader)
    backend = open_backend(manifest.backend, reader, threads, backend_options)
    reader.verify_all()  # the files no backend read (model card, reports, scripts)
    expected = sorted(spec.name for spec in manifest.inputs)
    if sorted(backend.input_names) != expected:
        raise BundleError(
            f"{bundle_dir}: the model's inputs {sorted(backend.input_names)} differ from the manifest's {expected}"
        )
    return Encoder(bundle_dir, manifest, backend, preprocessor, on_overlong, signed_by)
