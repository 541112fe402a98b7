"""RoBERTa and XLM-R: BERT's blocks, positions counted from the padding id, BPE / Unigram
tokenizers (so vocabulary pruning, written for WordPiece, does not apply)."""

from __future__ import annotations

from edgeslim.models._hf_text import bpe_tokenizer, unigram_tokenizer
from edgeslim.models.base import Surgery
from edgeslim.models.bert import BertFamily

_NOT_WORDPIECE = {"vocabulary": "its tokenizer is not WordPiece (vocab_prune rewrites WordPiece vocabularies only)",
                  "npu_body": "the NPU prelude computes BERT's absolute positions, not RoBERTa's offset ones"}


class RobertaFamily(BertFamily):
    name = "roberta"
    model_types = ("roberta",)
    surgery = Surgery(frozenset({"layers", "heads", "ffn"}), _NOT_WORDPIECE)

    def _tokenizer(self):
        return bpe_tokenizer()

    def _config_class(self):
        from transformers import RobertaConfig

        return RobertaConfig

    def tiny_random(self, max_seq_length: int):
        import torch
        from transformers import AutoModel

        tokenizer = self._tokenizer()
        torch.manual_seed(0)
        # Positions start after the padding id (1), so the table needs two more rows.
        config = self._config_class()(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=4, intermediate_size=64, pad_token_id=1,
                                      bos_token_id=0, eos_token_id=2, max_position_embeddings=max(max_seq_length, 128) + 2)
        return AutoModel.from_config(config, add_pooling_layer=False).eval(), tokenizer

    def embed(self, module, input_ids):
        return module.embeddings(input_ids=input_ids)


class XlmRobertaFamily(RobertaFamily):
    name = "xlm-roberta"
    model_types = ("xlm-roberta",)
    languages = "multilingual: the ~100 languages of XLM-R's pretraining data (CC-100); check the source model"

    def _tokenizer(self):
        return unigram_tokenizer()

    def _config_class(self):
        from transformers import XLMRobertaConfig

        return XLMRobertaConfig


ROBERTA = RobertaFamily()
XLM_ROBERTA = XlmRobertaFamily()
