"""ModernBERT: rotary positions, alternating global / sliding-window attention, fused QKV and
gated FFN projections. Exported through its own forward (eager attention), not layer by layer."""

from __future__ import annotations

from edgeslim.models._hf_text import HfTextFamily, bpe_tokenizer
from edgeslim.models.base import Surgery, eager_forward


class ModernBertFamily(HfTextFamily):
    name = "modernbert"
    model_types = ("modernbert",)
    surgery = Surgery(frozenset({"layers"}), {
        "heads": "query, key and value live in one fused Wqkv projection; head pruning is not written for it",
        "ffn": "the gated FFN fuses both halves in one Wi projection; channel pruning is not written for it",
        "vocabulary": "its tokenizer is BPE, not WordPiece",
        "npu_body": "the NPU body has no rotary positions or sliding-window attention"})

    def tiny_random(self, max_seq_length: int):
        import torch
        from transformers import ModernBertConfig, ModernBertModel

        tokenizer = bpe_tokenizer()
        torch.manual_seed(0)
        config = ModernBertConfig(vocab_size=tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=3,
                                  num_attention_heads=4, intermediate_size=64, global_attn_every_n_layers=2,
                                  local_attention=16, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                  cls_token_id=0, sep_token_id=2, max_position_embeddings=max(max_seq_length, 128))
        return ModernBertModel(config).eval(), tokenizer

    def exportable(self, module):
        return eager_forward(self, module, ("input_ids", "attention_mask"))

    def blocks(self, module):
        return module.layers

    def keep_blocks(self, module, indices) -> None:
        import torch

        module.layers = torch.nn.ModuleList([module.layers[i] for i in indices])
        module.config.layer_types = [module.config.layer_types[i] for i in indices]
        module.config.num_hidden_layers = len(indices)

    def attention_width(self, block) -> int:
        return int(block.attn.Wo.in_features)


FAMILY = ModernBertFamily()
