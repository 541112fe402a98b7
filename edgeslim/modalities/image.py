"""Images: preprocessed as the manifest states (resize/crop, rescale, mean/std, layout). Task
metrics are the generic kNN / linear probes (CIFAR-10 classes); distillation flips and shifts
each batch and the teacher embeds the same augmented batch."""

from __future__ import annotations

from pathlib import Path

from edgeslim.modalities.base import Batches, Modality
from edgeslim.runtime.image import IMAGE


def flip_and_shift(x, generator, pad: int = 4):
    """Random horizontal flips and translations of up to `pad` pixels (reflect-padded), per image."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = x.shape
    flips = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


def tensor_batches(teacher, student, items: list, cfg, log, augment) -> Batches:
    """Batches of one fixed-size input tensor per item, prepared once as the runtime does;
    `augment(x, generator)` per step when cfg.augment, the teacher embedding each augmented
    batch itself (under its own input name; the student may name its input differently). No
    labels are read."""
    import numpy as np
    import torch

    (teacher_input,), (student_input,) = teacher.inputs(), student.inputs()
    log(f"    distill: preparing {len(items)} inputs")
    prepared = torch.from_numpy(np.concatenate(
        [teacher.model_inputs(items[i:i + 256])[teacher_input.name] for i in range(0, len(items), 256)]))

    def embed(x):
        return teacher.embed_inputs({teacher_input.name: x.numpy()})

    fixed = None if cfg.augment else torch.from_numpy(
        np.concatenate([embed(prepared[i:i + 256]) for i in range(0, len(prepared), 256)]))

    def batch(shard, step, device):
        x = prepared[torch.as_tensor(shard)]
        if fixed is not None:
            return {student_input.name: x.to(device)}, None, fixed[shard].to(device)
        x = augment(x, torch.Generator().manual_seed(cfg.seed * 1_000_003 + step))
        return {student_input.name: x.to(device)}, None, torch.from_numpy(embed(x)).to(device)

    return Batches(batch=batch)


class ImageModalityKit(Modality):
    name = "image"
    runtime = IMAGE
    default_label = "class"

    def drift_shifts(self, in_domain, seed=0):
        import numpy as np
        from PIL import Image, ImageFilter

        rng = np.random.default_rng(seed)
        images = [np.asarray(Image.open(path).convert("RGB")) for path in in_domain]
        noisy = [np.clip(i + rng.normal(0, 40, i.shape), 0, 255).astype(np.uint8) for i in images]
        blurred = [np.asarray(Image.fromarray(i).filter(ImageFilter.GaussianBlur(1.5))) for i in images]
        dark = [(i * 0.35).astype(np.uint8) for i in images]
        shifts = {"the same images, Gaussian noise sigma 40": noisy, "the same images, Gaussian blur radius 1.5": blurred,
                  "the same images at 35% brightness": dark,
                  "uniform random pixels": [rng.integers(0, 256, i.shape, dtype=np.uint8) for i in images]}
        fashion = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")  # Debian: dataset-fashion-mnist
        if fashion.is_file():
            import gzip

            raw = np.frombuffer(gzip.decompress(fashion.read_bytes())[16:], np.uint8).reshape(-1, 28, 28)
            size = images[0].shape[:2][::-1] if images else (32, 32)
            picks = raw[rng.permutation(len(raw))[:max(len(images), 1)]]
            shifts["Fashion-MNIST test images (Debian dataset-fashion-mnist)"] = [
                np.asarray(Image.fromarray(p).resize(size).convert("RGB")) for p in picks]
        return shifts

    def verify_items(self, count: int, scratch: Path):
        """CIFAR-10 held-out images, or random-pixel PNGs where the shared data is absent."""
        from edgeslim.calibration_data import corpus_available, load_corpus

        if corpus_available("cifar10-heldout"):
            return list(load_corpus("cifar10-heldout").texts[:count]), "held-out CIFAR-10 images"
        import numpy as np
        from PIL import Image

        rng, paths = np.random.default_rng(0), []
        for i in range(count):
            paths.append(str(scratch / f"image{i}.png"))
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(paths[-1])
        return paths, "random-pixel PNGs (no CIFAR-10 here)"

    def distillation_batches(self, teacher, student, items, cfg, log):
        return tensor_batches(teacher, student, items, cfg, log, flip_and_shift)

    def card_usage(self, manifest):
        return "vectors = encoder.encode_images(['photo.jpg'])  # paths, PIL images or HxWxC uint8 arrays"

    def card_input(self, manifest):
        return f"Input: RGB images, preprocessed on the device as the manifest says: {manifest.get('preprocessing')}."

    def card_limits(self, manifest):
        return "The teacher's image domain only (its training images and size; see the teacher's datasheet)."

    def firmware_lines(self, manifest, symbol, inputs, outputs):
        """What the application CPU does to a camera frame before the model, and to its output."""
        pre = manifest.frontend
        size = pre.resize or [pre.resize_shortest_edge, pre.resize_shortest_edge]
        height, width = pre.output_size
        s = symbol.upper()
        fmt = lambda values: ", ".join(f"{float(v)!r}f" for v in values)  # noqa: E731
        quantized = bool(inputs) and inputs[0]["scale"] != 0.0
        return [
            "/* Image preprocessing, on the application CPU (the manifest's, exactly):",
            f"   1. decode to {pre.channel_order} uint8; resize to {size[0]}x{size[1]} ({pre.interpolation})"
            + (f" then center-crop {height}x{width}" if pre.crop else "") + ";",
            f"   2. x = (pixel * RESCALE - MEAN[c]) / STD[c] per channel c, laid out {pre.layout};",
            "   3. " + ("quantize: q = clamp(round(x / INPUT0_SCALE) + INPUT0_ZERO_POINT, -128, 127) as int8."
                       if quantized else "feed x as float32.") + " */",
            f"#define {s}_IMAGE_HEIGHT {height}u",
            f"#define {s}_IMAGE_WIDTH {width}u",
            f"#define {s}_IMAGE_CHANNELS 3u",
            f'#define {s}_IMAGE_LAYOUT "{pre.layout}"',
            f"#define {s}_RESCALE {float(pre.rescale)!r}f",
            f"#define {s}_MEAN {{{fmt(pre.mean)}}}",
            f"#define {s}_STD {{{fmt(pre.std)}}}",
            *embedding_lines(manifest, s),
        ]


def embedding_lines(manifest, s: str) -> list[str]:
    """The output: a pooled embedding to dequantize and normalise (image and audio graphs)."""
    return [f"/* Output: the pooled embedding ({manifest.embedding_dim} values); dequantize with OUTPUT0_SCALE /",
            f"   OUTPUT0_ZERO_POINT, then {'L2-normalise it' if manifest.normalize else 'use it as is'} "
            f"(pooling {manifest.pooling} is inside the graph). */",
            f"#define {s}_EMBEDDING_DIM {manifest.embedding_dim}u"]


IMAGE_KIT = ImageModalityKit()
