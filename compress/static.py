"""Static token embeddings distilled from an encoder with model2vec: the extreme size/speed
point. At run time a text's embedding is the mean of its tokens' vectors (numpy only)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from edgeslim.compress.artifacts import StaticTable
from edgeslim.compress.configs import StaticEmbeddingConfig
from edgeslim.runtime.text import tokenize


@dataclass
class StaticEncoder:
    """What the pipeline needs of a static model: its tokenizer and shape."""

    tokenizer: Tokenizer
    max_seq_length: int
    hidden_size: int
    pooling: str = "mean"
    normalize: bool = True

    def tokenize(self, texts, pad_to: int | None = None):
        return tokenize(self.tokenizer, texts, pad_to)

    @property
    def runtime_modality(self):
        from edgeslim.runtime.text import TEXT

        return TEXT

    @property
    def preprocessor(self):
        return self.tokenizer

    def model_inputs(self, items, pad_to: int | None = None) -> dict:
        ids, mask = self.tokenize(items, pad_to)
        return {"input_ids": ids, "attention_mask": mask}


def make_static(model, cfg: StaticEmbeddingConfig, workdir: Path):
    """Return (StaticTable artifact, StaticEncoder, record) for an EncoderModel."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from model2vec.distill import distill as model2vec_distill
    from transformers import PreTrainedTokenizerFast

    with tempfile.TemporaryDirectory(prefix="edgeslim-static-") as folder:
        # model2vec reads a Hugging Face folder: write this model (teacher or student) as one.
        model.module.save_pretrained(folder)
        PreTrainedTokenizerFast(tokenizer_object=model.tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
        static = model2vec_distill(model_name=folder, pca_dims=None, device="cpu", quantize_to=cfg.dtype,
                                   sif_coefficient=cfg.sif_coefficient)
    table = np.asarray(static.embedding).astype(cfg.dtype)
    path = Path(workdir) / "embeddings.npy"
    np.save(path, table)
    tokenizer = static.tokenizer
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=model.max_seq_length)
    encoder = StaticEncoder(tokenizer=tokenizer, max_seq_length=model.max_seq_length, hidden_size=table.shape[1])
    record = {"library": "model2vec", "vocabulary": int(table.shape[0]), "dim": int(table.shape[1]),
              "dtype": cfg.dtype, "size_mb": round(path.stat().st_size / 1e6, 3),
              "pca": None, "note": "tokens encoded one by one through the source model, then SIF-weighted"}
    return StaticTable(path), encoder, record
