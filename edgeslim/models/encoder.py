"""A loaded encoder: a family's module plus what it reads (a tokenizer for text) and how it
pools. What the pipeline, the steps and the benchmark worker pass around."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from edgeslim.models.base import ModelFamily, pool_states


@dataclass
class EncoderModel:
    name: str
    family: ModelFamily
    module: object  # a torch.nn.Module in eval mode
    pooling: str
    normalize: bool
    weights_sha256: str
    license: str = "unknown: see the source model's documentation"
    tokenizer: object | None = None  # tokenizers.Tokenizer, truncation at max_seq_length (text)
    max_seq_length: int | None = None
    preprocessing: dict | None = None  # images: the manifest's preprocessing, run by edgeslim.runtime.image

    reference = "PyTorch fp32"  # what the baseline runs on

    @property
    def modality(self) -> str:
        return self.family.modality

    @property
    def transformer(self) -> bool:
        return self.family.transformer

    @property
    def hidden_size(self) -> int:
        return self.family.hidden_size(self.module)

    def replace(self, **changes) -> "EncoderModel":
        return dataclasses.replace(self, **changes)

    def parameters_mb(self) -> float:
        return sum(p.numel() * p.element_size() for p in self.module.parameters()) / 1e6

    # -- text -----------------------------------------------------------------------------
    def tokenize(self, texts, pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        from edgeslim.runtime.text import tokenize

        return tokenize(self.tokenizer, texts, pad_to)

    def embed(self, texts, batch_size: int = 32) -> np.ndarray:
        """Reference embeddings: the plain PyTorch model, as its source library runs it."""
        from edgeslim.runtime.text import encodings_to_arrays

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

    def embed_tokens(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        hidden = self.states({"input_ids": input_ids, "attention_mask": attention_mask})
        return pool_states(hidden, attention_mask, self.pooling, self.normalize)

    def exportable(self):
        return self.family.exportable(self.module)

    def inputs(self):
        return self.family.inputs(self.module)

    def output(self):
        return self.family.output(self.hidden_size)

    def example_inputs(self) -> tuple:
        """Inputs to trace the exportable module with: two text rows of different lengths, or
        two images at the model's input size."""
        import torch

        if self.modality == "text":
            ids, mask = self.tokenize(["an example sentence to trace the graph", "short"])
            return torch.from_numpy(ids), torch.from_numpy(mask)
        (spec,) = self.family.inputs(self.module)
        return (torch.zeros((2, *spec.shape[1:]), dtype=torch.float32),)

    # -- images ---------------------------------------------------------------------------
    def pixel_values(self, images) -> np.ndarray:
        from edgeslim.runtime.image import ImagePreprocessing, preprocess

        return preprocess(images, ImagePreprocessing.model_validate(self.preprocessing))

    def embed_pixels(self, pixel_values: np.ndarray) -> np.ndarray:
        return pool_states(self.states({"pixel_values": pixel_values}), None, self.pooling, self.normalize)

    def embed_images(self, images, batch_size: int = 32) -> np.ndarray:
        """Reference embeddings of images (paths, PIL images or HxWxC uint8 arrays): the same
        preprocessing as the runtime, then the plain PyTorch model."""
        images = list(images)
        parts = [self.embed_pixels(self.pixel_values(images[i : i + batch_size]))
                 for i in range(0, len(images), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.hidden_size), np.float32)

    def feeds(self, items) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """The exported graph's inputs for a batch of texts or images, and the token mask (None:
        every position counts)."""
        if self.modality == "text":
            ids, mask = self.tokenize(items)
            return {"input_ids": ids, "attention_mask": mask}, mask
        return {"pixel_values": self.pixel_values(items)}, None

    def states(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Token / patch states of the PyTorch model for `feeds` (numpy in and out)."""
        import torch

        with torch.inference_mode():
            hidden = self.family.hidden_states(self.module, **{k: torch.from_numpy(v) for k, v in feeds.items()})
        return hidden.float().numpy()

    def embed_items(self, items, batch_size: int = 32) -> np.ndarray:
        """Texts or images, by the model's modality: what evaluation embeds."""
        return self.embed(items, batch_size) if self.modality == "text" else self.embed_images(items, batch_size)
