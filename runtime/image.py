"""Image preprocessing as the bundle's manifest states it: numpy + Pillow, the same code on the
host and on the device (no torch).

    pixels = preprocess(["cat.jpg", pil_image, uint8_array], spec)   # (n, 3, H, W) float32

Order, as Hugging Face's image processors and torchvision's evaluation transforms do it: decode
to RGB -> resize (to a fixed size, or the shortest edge to N keeping the aspect ratio) -> center
crop -> x * rescale -> (x - mean) / std -> channel order and layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgeslim.errors import InputError
from edgeslim.runtime.modality import RuntimeModality

MAX_IMAGE_PIXELS = 64_000_000  # a decompression bomb is refused, not decoded
Size = Annotated[list[Annotated[int, Field(ge=1, le=16384)]], Field(min_length=2, max_length=2)]
Triple = Annotated[list[float], Field(min_length=3, max_length=3)]


class ImagePreprocessing(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    resize: Size | None = None  # [height, width]: resize to exactly this
    resize_shortest_edge: Annotated[int, Field(ge=1, le=16384)] | None = None  # or: shorter side to N
    crop: Size | None = None  # center crop [height, width] after the resize
    interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear"
    rescale: float = Field(1 / 255, gt=0)
    mean: Triple = [0.0, 0.0, 0.0]
    std: Triple = [1.0, 1.0, 1.0]
    channel_order: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    @model_validator(mode="after")
    def _one_resize(self):
        if (self.resize is None) == (self.resize_shortest_edge is None):
            raise ValueError("give exactly one of resize [height, width] and resize_shortest_edge")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        return self

    @property
    def output_size(self) -> tuple[int, int]:
        if self.crop is not None:
            return tuple(self.crop)
        if self.resize is not None:
            return tuple(self.resize)
        raise ValueError("resize_shortest_edge without crop gives images of varying size; add a crop")


def _resample(name: str):
    from PIL import Image

    return {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC}[name]


def _to_pil(item, index: int):
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        image = item
    elif isinstance(item, (str, Path)):
        try:
            with Image.open(item) as opened:
                if opened.width * opened.height > MAX_IMAGE_PIXELS:
                    raise InputError(f"image {index} ({item}) has {opened.width}x{opened.height} pixels; at most "
                                     f"{MAX_IMAGE_PIXELS} are decoded")
                opened.load()
                image = opened.copy()
        except FileNotFoundError:
            raise InputError(f"image {index}: no such file {item}") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise InputError(f"image {index} ({item}) is not a readable image: {exc}") from None
    elif isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise InputError(f"image {index}: arrays must be uint8 HxWxC (0-255), got dtype {item.dtype}")
        if item.ndim != 3 or item.shape[2] not in (1, 3, 4) or min(item.shape[:2]) < 1:
            raise InputError(f"image {index}: arrays must be HxWxC with C in 1, 3, 4, got shape {item.shape}")
        image = Image.fromarray(item[:, :, 0] if item.shape[2] == 1 else item)
    else:
        raise InputError(f"image {index}: expected a file path, a PIL.Image or an HxWxC uint8 array, got "
                         f"{type(item).__name__}")
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise InputError(f"image {index} has {image.width}x{image.height} pixels; at most {MAX_IMAGE_PIXELS}")
    return image.convert("RGB")


def _shortest_edge_size(height: int, width: int, edge: int) -> tuple[int, int]:
    """(height, width) with the shorter side `edge`, the longer scaled and truncated (as
    transformers' get_resize_output_image_size with default_to_square=False)."""
    short, long = (height, width) if height <= width else (width, height)
    new_short, new_long = edge, int(edge * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


def _center_crop(array: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = array.shape[:2]
    if height > h or width > w:  # pad with zeros first, as the processors do
        padded = np.zeros((max(h, height), max(w, width), array.shape[2]), array.dtype)
        top, left = (padded.shape[0] - h) // 2, (padded.shape[1] - w) // 2
        padded[top : top + h, left : left + w] = array
        array, h, w = padded, padded.shape[0], padded.shape[1]
    top, left = (h - height) // 2, (w - width) // 2
    return array[top : top + height, left : left + width]


def preprocess_one(item, spec: ImagePreprocessing, index: int = 0) -> np.ndarray:
    image = _to_pil(item, index)
    if spec.resize is not None:
        height, width = spec.resize
    else:
        height, width = _shortest_edge_size(image.height, image.width, spec.resize_shortest_edge)
    if (image.height, image.width) != (height, width):
        image = image.resize((width, height), resample=_resample(spec.interpolation))
    array = np.asarray(image, np.uint8)
    if spec.crop is not None:
        array = _center_crop(array, *spec.crop)
    pixels = array.astype(np.float64) * spec.rescale
    pixels = ((pixels - np.asarray(spec.mean)) / np.asarray(spec.std)).astype(np.float32)
    if spec.channel_order == "BGR":
        pixels = pixels[:, :, ::-1]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1) if spec.layout == "NCHW" else pixels)


def preprocess(images, spec: ImagePreprocessing) -> np.ndarray:
    """(n, 3, H, W) float32 (or NHWC) from a list of images; InputError says which one is bad."""
    images = IMAGE.check_items(images)
    arrays = [preprocess_one(item, spec, i) for i, item in enumerate(images)]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise InputError(f"images preprocess to different shapes {sorted(shapes)}; the bundle's preprocessing needs "
                         "a crop or a fixed resize")
    return np.stack(arrays)


class ImageModality(RuntimeModality):
    """Images (file paths, PIL images, HxWxC uint8 arrays) preprocessed as the manifest states."""

    name = "image"
    entry = "encode_images"
    argument = "images"
    noun = "images"
    item_suffixes = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
    preprocessing_model = ImagePreprocessing

    def check_manifest(self, manifest) -> None:
        super().check_manifest(manifest)
        try:
            self.preprocessing(manifest.preprocessing).output_size
        except ValueError as exc:
            raise ValueError(f"preprocessing: {exc}") from None

    def model_inputs(self, spec, items, input_names, pad_to=None):
        return {input_names[0]: preprocess(items, spec)}, None

    def sample_item(self, spec):
        """A 48x64 colour gradient (any size: the bundle's preprocessing resizes it)."""
        y, x = np.mgrid[0:48, 0:64]
        return np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).clip(0, 255).astype(np.uint8)


IMAGE = ImageModality()
