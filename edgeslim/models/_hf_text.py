"""What the Hugging Face text families share: loading, the teacher forward, a layer-by-layer
export module with a finite mask, and offline tokenizers for tiny random models."""

from __future__ import annotations

import copy
from collections import Counter
from functools import lru_cache
from pathlib import Path

from edgeslim.errors import RecipeError
from edgeslim.models.base import MASK_VALUE, InputSpec, ModelFamily

TEXT_INPUTS = (InputSpec("input_ids", "int64", ("batch", "sequence")),
               InputSpec("attention_mask", "int64", ("batch", "sequence")))


def _export_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' eager attention written as the original BERT: scores / sqrt(d) + mask.
    Same numbers; with the Div (not a Mul) ONNX Runtime's attention fusion finds the mask."""
    import torch

    divisor = 1.0 / scaling if scaling else query.size(-1) ** 0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) / divisor
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = torch.nn.functional.softmax(scores, dim=-1)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


@lru_cache(maxsize=1)
def export_attention() -> str:
    from transformers import AttentionInterface

    AttentionInterface.register("edgeslim_export", _export_attention)
    return "edgeslim_export"


class HfTextFamily(ModelFamily):
    """A transformers encoder read through AutoModel; (input_ids, attention_mask) in."""

    modality = "text"

    def inputs(self, module=None) -> tuple[InputSpec, ...]:
        return TEXT_INPUTS

    def from_folder(self, folder: Path):
        from transformers import AutoModel

        try:
            return AutoModel.from_pretrained(folder, **self.load_kwargs).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise RecipeError(f"model folder {folder}: transformers cannot load it as {self.name}: {exc}") from None

    def hidden_states(self, module, input_ids, attention_mask):
        return module(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    # Layer-by-layer export: subclasses say how to embed and how to call one block.
    def embed(self, module, input_ids):
        raise NotImplementedError

    def run_blocks(self, module, hidden, additive_mask):
        for block in self.blocks(module):
            out = block(hidden, attention_mask=additive_mask)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def exportable(self, module):
        return LayerLoopEncoder(self, module)


def _layer_loop_module():
    import torch

    class LayerLoop(torch.nn.Module):
        """(input_ids, attention_mask) -> token states, with a finite additive mask and plain
        attention ops, so the ONNX graph holds MatMul/Softmax with stable names. Works on a
        copy: the teacher keeps its own attention."""

        def __init__(self, family: HfTextFamily, module):
            super().__init__()
            module = copy.deepcopy(module)
            module.config._attn_implementation = export_attention()
            self.model = module
            self._family = family

        def forward(self, input_ids, attention_mask):
            hidden = self._family.embed(self.model, input_ids)
            additive = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * MASK_VALUE
            return self._family.run_blocks(self.model, hidden, additive)

    return LayerLoop


def LayerLoopEncoder(family, module):  # noqa: N802 (a factory: torch imported only when used)
    return _layer_loop_module()(family, module)


# -- offline tokenizers for tiny random models --------------------------------------------------

def _corpus_words(limit: int) -> list[str]:
    from edgeslim.calibration_data import load_corpus

    words = Counter(w for t in load_corpus("wordnet").texts for w in t.lower().split() if w.isalpha())
    return [w for w, _ in words.most_common(limit)]


def wordpiece_tokenizer(specials=("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"), cls="[CLS]", sep="[SEP]"):
    """A WordPiece vocabulary of the shipped corpus' commonest words plus every letter."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab_list = list(specials) + letters + [f"##{c}" for c in letters] + _corpus_words(500)
    vocab = {token: i for i, token in enumerate(dict.fromkeys(vocab_list))}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=specials[1]))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    return tokenizer


def _training_text() -> list[str]:
    from edgeslim.calibration_data import load_corpus

    return list(load_corpus("wordnet").texts[:3000])


def bpe_tokenizer(vocab_size: int = 600):
    """A byte-level BPE (RoBERTa's kind) trained on the shipped corpus: <s>=0 <pad>=1 </s>=2 <unk>=3."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_training_text(), trainer)
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tokenizer


def unigram_tokenizer(vocab_size: int = 600):
    """A SentencePiece-style Unigram model (XLM-R's kind): <s>=0 <pad>=1 </s>=2 <unk>=3."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                      unk_token="<unk>", show_progress=False)
    tokenizer.train_from_iterator(_training_text(), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return tokenizer
