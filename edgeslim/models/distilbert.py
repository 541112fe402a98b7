"""DistilBERT: embeddings + transformer.layer, attention q_lin/k_lin/v_lin/out_lin, FFN lin1/lin2."""

from __future__ import annotations

from edgeslim.models._hf_text import HfTextFamily, wordpiece_tokenizer
from edgeslim.models.base import PruneSites, Surgery


class DistilBertFamily(HfTextFamily):
    name = "distilbert"
    model_types = ("distilbert",)
    surgery = Surgery(frozenset({"layers", "heads", "ffn", "vocabulary"}),
                      {"npu_body": "the integer NPU body is built for BERT's block layout only"})

    def tiny_random(self, max_seq_length: int):
        import torch
        from transformers import DistilBertConfig, DistilBertModel

        tokenizer = wordpiece_tokenizer()
        torch.manual_seed(0)
        config = DistilBertConfig(vocab_size=tokenizer.get_vocab_size(), dim=32, n_layers=2, n_heads=4,
                                  hidden_dim=64, max_position_embeddings=max(max_seq_length, 128))
        return DistilBertModel(config).eval(), tokenizer

    def embed(self, module, input_ids):
        return module.embeddings(input_ids)

    def blocks(self, module):
        return module.transformer.layer

    def _set_blocks(self, module, blocks) -> None:
        module.transformer.layer = blocks
        module.transformer.n_layers = len(blocks)

    def prune_sites(self, block) -> PruneSites:
        attention = block.attention
        return PruneSites(attention.q_lin, attention.k_lin, attention.v_lin, attention.out_lin,
                          block.ffn.lin1, block.ffn.lin2, attention.attention_head_size)


FAMILY = DistilBertFamily()
