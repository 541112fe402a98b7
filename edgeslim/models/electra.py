"""ELECTRA (discriminator as an encoder): BERT's blocks, with a projection from a narrower
embedding to the hidden size."""

from __future__ import annotations

from edgeslim.models._hf_text import wordpiece_tokenizer
from edgeslim.models.base import Surgery
from edgeslim.models.bert import BertFamily


class ElectraFamily(BertFamily):
    name = "electra"
    model_types = ("electra",)
    load_kwargs = {}  # ELECTRA has no pooler
    surgery = Surgery(frozenset({"layers", "heads", "ffn", "vocabulary"}),
                      {"npu_body": "the NPU prelude has no embedding projection"})

    def tiny_random(self, max_seq_length: int):
        import torch
        from transformers import ElectraConfig, ElectraModel

        tokenizer = wordpiece_tokenizer()
        torch.manual_seed(0)
        config = ElectraConfig(vocab_size=tokenizer.get_vocab_size(), embedding_size=16, hidden_size=32,
                               num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                               max_position_embeddings=max(max_seq_length, 128))
        return ElectraModel(config).eval(), tokenizer

    def embed(self, module, input_ids):
        hidden = super().embed(module, input_ids)
        projected = module.config.embedding_size != module.config.hidden_size  # ELECTRA adds the layer only then
        return module.embeddings_project(hidden) if projected else hidden


FAMILY = ElectraFamily()
