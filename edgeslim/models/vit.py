"""Vision Transformer (Hugging Face ViTModel): patch embeddings + encoder.layer, CLS token first."""

from __future__ import annotations

from edgeslim.models._hf_image import HfImageFamily
from edgeslim.models.base import Surgery


class VitFamily(HfImageFamily):
    name = "vit"
    model_types = ("vit",)
    load_kwargs = {"add_pooling_layer": False}  # sentence encoders do not use the pooler
    surgery = Surgery(frozenset({"layers", "heads", "ffn"}), {
        "vocabulary": "an image model has no token vocabulary",
        "npu_body": "the integer NPU body is built for BERT's block layout only"})

    def tiny_random(self, max_seq_length: int):
        import torch
        from transformers import ViTConfig, ViTModel

        torch.manual_seed(0)
        config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                           image_size=32, patch_size=8)
        return ViTModel(config, add_pooling_layer=False).eval(), None

    def ffn_sites(self, block):
        return block.intermediate.dense, block.output.dense


FAMILY = VitFamily()
