"""The runtime half of a modality: what a device does to raw input before the model, and how it
refuses bad input. numpy (+ tokenizers / Pillow / the standard library's wave), never torch.

One class per modality (`runtime/text.py`, `runtime/image.py`, `runtime/audio.py`), one
instance of each in the registry (`runtime/modalities.py`). The kit's half of a modality
(data sets, metrics, training feeds, wording: `edgeslim/modalities/`) builds on this one, so a
bundle is read the same way on the host that built it and on the device.

Every method takes what it works on explicitly: the `preprocessor` is what the modality opens
from a bundle or a model folder (a tokenizer, or the typed preprocessing of the manifest), and a
`model` is anything with `preprocessor`, `input_names` and `embed_inputs(feeds)`: the runtime's
Encoder and the kit's teacher alike.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ValidationError

from edgeslim.errors import InputError


class RuntimeModality:
    """The contract. Subclasses set the class attributes and override what they need."""

    name: ClassVar[str]
    # The Encoder method a user calls for this modality (encode, encode_images, encode_audio).
    entry: ClassVar[str]
    argument: ClassVar[str]  # that method's first argument, for messages: texts, images, clips
    noun: ClassVar[str]  # what one item is called in reports: sentences, images, clips
    # The schema of the manifest's `preprocessing` (None: this modality has none).
    preprocessing_model: ClassVar[type[BaseModel] | None] = None
    # Items of varying length (latency is also timed at real lengths, batches padded per batch).
    variable_length: ClassVar[bool] = False
    # Input is read through a tokenizer (tokenizer.json in model folders and bundles).
    reads_tokenizer: ClassVar[bool] = False
    # File name endings of items in a folder (`read_items`, e.g. for `edgeslim drift`).
    item_suffixes: ClassVar[tuple[str, ...]] = ()

    # -- the manifest ---------------------------------------------------------------------
    def check_manifest(self, manifest) -> None:
        """Raise ValueError naming what this modality's bundle lacks or must not have."""
        if self.preprocessing_model is None:
            if manifest.preprocessing is not None:
                raise ValueError(f"a {self.name} bundle has no preprocessing")
            return
        if manifest.preprocessing is None:
            raise ValueError(f"a {self.name} bundle needs preprocessing ({', '.join(self.preprocessing_model.model_fields)})")
        self.preprocessing(manifest.preprocessing)
        if manifest.tokenizer_file is not None or manifest.max_seq_length is not None:
            raise ValueError(f"a {self.name} bundle has no tokenizer_file or max_seq_length")

    def preprocessing(self, document: dict | None):
        """The manifest's preprocessing as this modality's typed model (ValueError if invalid)."""
        if self.preprocessing_model is None or document is None:
            return None
        try:
            return self.preprocessing_model.model_validate(document)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"preprocessing: {problems}") from None

    def referenced_files(self, manifest) -> list[str]:
        """Files of the bundle this modality opens (the tokenizer for text)."""
        return []

    # -- reading input --------------------------------------------------------------------
    def open_preprocessor(self, reader) -> Any:
        """What turns raw input into model input, from a bundle (BundleReader)."""
        return self.preprocessing(reader.manifest.preprocessing)

    def check_items(self, items) -> list:
        """The items as a list, or an InputError that says what is wrong and what is allowed."""
        if isinstance(items, (str, bytes, PurePath, np.ndarray)) or not isinstance(items, (list, tuple)):
            raise InputError(f"{self.entry}() takes a list of {self.argument}, got {type(items).__name__}; wrap a "
                             f"single one: {self.entry}([item])")
        if not items:
            raise InputError(f"{self.entry}() got an empty list; pass at least one")
        return list(items)

    def read_items(self, path: Path) -> list:
        """Items named by a path: a folder's files ending in `item_suffixes` (subfolders too,
        sorted), or a text file listing one file per line (relative to the list's folder)."""
        path = Path(path)
        if path.is_dir():
            items = sorted(str(f) for f in path.rglob("*") if f.suffix.lower() in self.item_suffixes and f.is_file())
        elif path.is_file():
            lines = _lines(path)
            items = [str(path.parent / line) for line in lines]
        else:
            raise InputError(f"{path}: no such file or folder")
        if not items:
            raise InputError(f"{path}: no {self.noun} in it (a folder of {', '.join(self.item_suffixes)} files, or a "
                             "text file listing them one per line)")
        return items

    def model_inputs(self, preprocessor, items: list, input_names: list[str],
                     pad_to: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """(the graph's feeds, the position mask or None) for a batch of raw items."""
        raise NotImplementedError

    def embed_items(self, model, items, batch_size: int = 32) -> np.ndarray:
        """(len(items), dim) pooled embeddings: items checked, cut into batches, run."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        items = self.check_items(items)
        parts = [model.embed_inputs(self.model_inputs(model.preprocessor, items[i : i + batch_size],
                                                      model.input_names)[0])
                 for i in range(0, len(items), batch_size)]
        return np.concatenate(parts)

    # -- model input ----------------------------------------------------------------------
    def check_feeds(self, encoder, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Preprocessed arrays checked against the manifest's input specs (float32 of its shape,
        finite, batch >= 1); InputError names the input."""
        expected = [spec.name for spec in encoder.manifest.inputs]
        if not isinstance(feeds, dict) or sorted(feeds) != sorted(expected):
            got = sorted(feeds) if isinstance(feeds, dict) else type(feeds).__name__
            raise InputError(f"model inputs {got}; the bundle takes {expected}")
        for spec in encoder.manifest.inputs:
            array = feeds[spec.name]
            if not isinstance(array, np.ndarray):
                raise InputError(f"{spec.name} must be a numpy array, got {type(array).__name__}")
            if array.dtype != np.float32:
                raise InputError(f"{spec.name} must be float32, got dtype {array.dtype}")
            fixed = list(spec.shape[1:])
            if array.ndim != len(spec.shape) or list(array.shape[1:]) != fixed or not array.shape[0]:
                raise InputError(f"{spec.name} of shape {array.shape}; the bundle takes (batch >= 1, "
                                 f"{', '.join(map(str, fixed))})")
            if not np.isfinite(array).all():
                raise InputError(f"{spec.name} holds NaN or infinity")
        return feeds

    def pooling_mask(self, feeds: dict[str, np.ndarray], hidden: np.ndarray) -> np.ndarray:
        """Which output positions pooling averages (all of them, unless a modality masks)."""
        return np.ones(hidden.shape[:2], np.int64)

    # -- benchmarks -----------------------------------------------------------------------
    def bench_feeds(self, encoder, batch: int, seq_len: int | None) -> dict[str, np.ndarray]:
        """Feeds at an operating point for `edgeslim bench` (values do not change the work)."""
        if seq_len is not None:
            raise InputError(f"--seq-len applies to bundles of varying input length; this {self.name} bundle takes "
                             "inputs of one fixed size")
        rng = np.random.default_rng(0)
        return {spec.name: rng.standard_normal((batch, *spec.shape[1:])).astype(np.float32)
                for spec in encoder.manifest.inputs}

    def operating_point(self, seq_len: int | None) -> str:
        """The latency operating point in words ("128 tokens", "one image per row")."""
        return f"one {self.noun[:-1]} per row"

    def sample_item(self, preprocessor):
        """A made-up item that `edgeslim verify` encodes when given none."""
        raise NotImplementedError

    def health_items(self, preprocessor) -> list:
        """The items a device encodes after a deploy and compares with the bundle's reference
        embeddings (a pure function of the preprocessor: the same items on every machine)."""
        return [self.sample_item(preprocessor)]


MAX_ITEM_LIST_BYTES = 256 << 20


def _lines(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 text file (an InputError when it is not one)."""
    if path.stat().st_size > MAX_ITEM_LIST_BYTES:
        raise InputError(f"{path}: over {MAX_ITEM_LIST_BYTES >> 20} MB; split it")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def check_modality(modality: RuntimeModality) -> list[str]:
    """What a runtime modality lacks (an empty list: it fulfils the contract)."""
    problems = [f"class attribute {attr} is not set" for attr in ("name", "entry", "argument", "noun")
                if not isinstance(getattr(modality, attr, None), str)]
    if type(modality).model_inputs is RuntimeModality.model_inputs:
        problems.append("model_inputs() is not written")
    if type(modality).sample_item is RuntimeModality.sample_item:
        problems.append("sample_item() is not written")
    return problems
