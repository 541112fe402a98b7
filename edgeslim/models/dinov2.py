"""DINOv2 (Hugging Face Dinov2Model): a ViT with LayerScale, self-supervised; CLS token first."""

from __future__ import annotations

from edgeslim.models._hf_image import HfImageFamily
from edgeslim.models.base import Surgery


class Dinov2Family(HfImageFamily):
    name = "dinov2"
    model_types = ("dinov2",)
    surgery = Surgery(frozenset({"layers", "heads", "ffn"}), {
        "vocabulary": "an image model has no token vocabulary",
        "npu_body": "the integer NPU body is built for BERT's block layout only"})

    def tiny_random(self, max_seq_length: int):
        import torch
        from transformers import Dinov2Config, Dinov2Model

        torch.manual_seed(0)
        config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2,
                              image_size=32, patch_size=8)
        return Dinov2Model(config).eval(), None

    def ffn_sites(self, block):
        return block.mlp.fc1, block.mlp.fc2


FAMILY = Dinov2Family()
