"""What the Hugging Face vision-transformer families share: pixel_values in, patch states out
(CLS first), exported through their own forward with eager attention (no mask to keep finite)."""

from __future__ import annotations

import json
from pathlib import Path

from edgeslim.errors import RecipeError
from edgeslim.models.base import InputSpec, ModelFamily, PruneSites, eager_forward

# Hugging Face image-processor `resample` codes (PIL's) -> the manifest's interpolation names.
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def image_inputs(height: int, width: int) -> tuple[InputSpec, ...]:
    return (InputSpec("pixel_values", "float32", ("batch", 3, height, width)),)


def preprocessing_from_hf(folder: Path, image_size: int) -> dict:
    """The manifest's image preprocessing from a folder's preprocessor_config.json (ViT:
    resize to a square; DINOv2/BiT: resize the shortest edge, then center-crop)."""
    path = folder / "preprocessor_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RecipeError(f"{path}: an image model folder needs its preprocessor_config.json ({exc})") from None
    size = config.get("size") or {}
    spec = {"interpolation": _RESAMPLE.get(config.get("resample", 2), "bilinear"),
            "rescale": float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0,
            "mean": [float(v) for v in config.get("image_mean", [0.5] * 3)] if config.get("do_normalize", True)
            else [0.0] * 3,
            "std": [float(v) for v in config.get("image_std", [0.5] * 3)] if config.get("do_normalize", True)
            else [1.0] * 3}
    if "shortest_edge" in size:
        crop = config.get("crop_size") or {"height": image_size, "width": image_size}
        return {**spec, "resize_shortest_edge": int(size["shortest_edge"]),
                "crop": [int(crop["height"]), int(crop["width"])] if config.get("do_center_crop", True) else None}
    return {**spec, "resize": [int(size.get("height", image_size)), int(size.get("width", image_size))]}


_INTERPOLATION_CODES = {name: code for code, name in _RESAMPLE.items()}


def write_hf_preprocessing(spec: dict, folder: Path) -> None:
    """The manifest's image preprocessing as a Hugging Face preprocessor_config.json (what
    `preprocessing_from_hf` reads back)."""
    config = {"do_resize": True, "resample": _INTERPOLATION_CODES[spec["interpolation"]],
              "do_rescale": True, "rescale_factor": spec["rescale"], "do_normalize": True,
              "image_mean": spec["mean"], "image_std": spec["std"]}
    if spec.get("resize"):
        config["size"] = {"height": spec["resize"][0], "width": spec["resize"][1]}
    else:
        config["size"] = {"shortest_edge": spec["resize_shortest_edge"]}
        config["do_center_crop"] = spec.get("crop") is not None
        if spec.get("crop"):
            config["crop_size"] = {"height": spec["crop"][0], "width": spec["crop"][1]}
    (Path(folder) / "preprocessor_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


class HfImageFamily(ModelFamily):
    modality = "image"
    poolings = ("cls", "mean")

    def image_size(self, module) -> int:
        return int(module.config.image_size)

    def inputs(self, module) -> tuple[InputSpec, ...]:
        size = self.image_size(module)
        return image_inputs(size, size)

    def from_folder(self, folder: Path):
        from transformers import AutoModel

        try:
            return AutoModel.from_pretrained(folder, **self.load_kwargs).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise RecipeError(f"model folder {folder}: transformers cannot load it as {self.name}: {exc}") from None

    def preprocessing(self, module, folder: Path | None) -> dict:
        size = self.image_size(module)
        if folder is not None:
            return preprocessing_from_hf(folder, size)
        return {"resize": [size, size], "interpolation": "bilinear", "rescale": 1 / 255,
                "mean": [0.5] * 3, "std": [0.5] * 3}

    def save_preprocessing(self, preprocessing: dict, folder: Path) -> None:
        write_hf_preprocessing(preprocessing, folder)

    def hidden_states(self, module, pixel_values):
        return module(pixel_values=pixel_values).last_hidden_state

    def exportable(self, module):
        return eager_forward(self, module, ("pixel_values",))

    def blocks(self, module):
        return module.encoder.layer

    def _set_blocks(self, module, blocks) -> None:
        module.encoder.layer = blocks

    def macs(self, module, positions: int, batch: int = 1) -> float:
        # A ViT's positions are its patches plus CLS, whatever the text budget's seq_len says.
        size, patch = self.image_size(module), int(module.config.patch_size)
        patches = (size // patch) ** 2 + 1
        return super().macs(module, patches, batch) + batch * patches * 3 * patch * patch * self.hidden_size(module)

    def attention_sites(self, block):
        attention = block.attention.attention
        return attention.query, attention.key, attention.value, block.attention.output.dense, attention.attention_head_size

    def prune_sites(self, block) -> PruneSites:
        query, key, value, out, head_size = self.attention_sites(block)
        ffn_in, ffn_out = self.ffn_sites(block)
        return PruneSites(query, key, value, out, ffn_in, ffn_out, head_size)

    def ffn_sites(self, block):
        raise NotImplementedError

    def sync_heads(self, module) -> None:
        for block in self.blocks(module):  # ViT attention reshapes by num_attention_heads
            attention = block.attention.attention
            attention.all_head_size = attention.query.out_features
            attention.num_attention_heads = attention.all_head_size // attention.attention_head_size
