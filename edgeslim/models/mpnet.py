"""MPNet (all-mpnet-base-v2 and kin): BERT-like blocks that add a relative position bias the
encoder computes once and every block reads."""

from __future__ import annotations

from edgeslim.models._hf_text import HfTextFamily, wordpiece_tokenizer
from edgeslim.models.base import PruneSites, Surgery


class MpnetFamily(HfTextFamily):
    name = "mpnet"
    model_types = ("mpnet",)
    load_kwargs = {"add_pooling_layer": False}  # sentence encoders do not use the pooler
    surgery = Surgery(frozenset({"layers", "ffn", "vocabulary"}), {
        "heads": "one relative-position bias table is shared by every block, one column per head, so a head "
                 "cannot be removed from one block alone",
        "npu_body": "the NPU body has no relative position bias"})

    def tiny_random(self, max_seq_length: int):
        import torch
        from transformers import MPNetConfig, MPNetModel

        tokenizer = wordpiece_tokenizer(specials=("<pad>", "<unk>", "<s>", "</s>", "<mask>"), cls="<s>", sep="</s>")
        torch.manual_seed(0)
        config = MPNetConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=64, pad_token_id=0,
                             max_position_embeddings=max(max_seq_length, 128) + 2)
        return MPNetModel(config, add_pooling_layer=False).eval(), tokenizer

    def embed(self, module, input_ids):
        return module.embeddings(input_ids=input_ids)

    def run_blocks(self, module, hidden, additive_mask):
        bias = module.encoder.compute_position_bias(hidden)
        for block in self.blocks(module):
            hidden = block(hidden, attention_mask=additive_mask, position_bias=bias)[0]
        return hidden

    def blocks(self, module):
        return module.encoder.layer

    def _set_blocks(self, module, blocks) -> None:
        module.encoder.layer = blocks

    def prune_sites(self, block) -> PruneSites:
        attention = block.attention.attn
        return PruneSites(attention.q, attention.k, attention.v, attention.o, block.intermediate.dense,
                          block.output.dense, attention.attention_head_size)


FAMILY = MpnetFamily()
