"""BERT and everything shaped like it (MiniLM, BGE, E5, GTE): embeddings + encoder.layer."""

from __future__ import annotations

from edgeslim.models._hf_text import HfTextFamily, wordpiece_tokenizer
from edgeslim.models.base import PruneSites, Surgery


class BertFamily(HfTextFamily):
    name = "bert"
    model_types = ("bert",)
    surgery = Surgery(frozenset({"layers", "heads", "ffn", "vocabulary", "npu_body"}))
    load_kwargs = {"add_pooling_layer": False}  # sentence encoders do not use the pooler

    def tiny_random(self, max_seq_length: int):
        import torch
        from transformers import BertConfig, BertModel

        tokenizer = wordpiece_tokenizer()
        torch.manual_seed(0)
        config = BertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=4, intermediate_size=64,
                            max_position_embeddings=max(max_seq_length, 128))
        return BertModel(config, add_pooling_layer=False).eval(), tokenizer

    def embed(self, module, input_ids):
        import torch

        return module.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))

    def blocks(self, module):
        return module.encoder.layer

    def _set_blocks(self, module, blocks) -> None:
        module.encoder.layer = blocks

    def prune_sites(self, block) -> PruneSites:
        attention = block.attention.self
        return PruneSites(attention.query, attention.key, attention.value, block.attention.output.dense,
                          block.intermediate.dense, block.output.dense, attention.attention_head_size)


FAMILY = BertFamily()
