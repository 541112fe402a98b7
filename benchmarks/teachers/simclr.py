"""Self-supervised pretraining of the image teacher (SimCLR), because no SSL image weights can
be fetched on these machines. A benchmark script, not a kit feature:

    python -m edgeslim.benchmarks.teachers.simclr --out ~/.cache/edgeslim/teachers/simclr-cifar10

- Data: the `cifar10-train` split of the kit (8,000 of the CIFAR-10 test JPEGs, by the sha256 of
  the path; every file verified). Labels are never read for training; they are read only at
  the end, to measure the features (kNN top-1 and a linear probe on `cifar10-heldout`, the
  other 2,000, which training never sees).
- Model: a ResNet of the kit's `resnet` family (CIFAR stem, `--width`, `--layers`), so the
  output folder loads with `source: local`; the projection head is dropped.
- Augmentations are vectorised on whole batches (random resized crop + flip through one
  affine grid, colour jitter, grayscale), so a CPU epoch costs about as much as its convolutions.
- Resumable: an atomic checkpoint (model, head, optimiser, schedule, epoch/step, loss history)
  every `--checkpoint-every` steps and at each epoch's end. Data order and augmentation are
  functions of (seed, epoch, step), so a resumed run makes the same updates as an unbroken one.
- Deterministic given the seed on one machine type, thread count and precision (`--precision
  bf16` uses the CPU's bfloat16 units, AMX or AVX-512 BF16; they round differently from fp32).
- Output: config.json, model.safetensors, preprocessor_config.json (what the kit's runtime
  does to an image), DATASHEET.md and datasheet.json (what it saw, how long, how good).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from edgeslim.benchmarks.teachers.common import atomic_torch_save, nt_xent, probe, run_key

# CIFAR-10 channel statistics (the usual published values); the preprocessing the runtime applies.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
TRAIN_SPLIT, PROBE_SPLIT = "cifar10-train", "cifar10-heldout"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m edgeslim.benchmarks.teachers.simclr", description=__doc__.split("\n")[0])
    default_out = Path(os.environ.get("EDGESLIM_CACHE", Path.home() / ".cache" / "edgeslim")) / "teachers" / "simclr-cifar10"
    p.add_argument("--out", type=Path, default=default_out, help="model folder to write (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=80)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--temperature", type=float, default=0.5)
    p.add_argument("--width", type=int, default=16, help="channels of the first stage (ResNet-18: 64)")
    p.add_argument("--layers", type=int, nargs=4, default=[2, 2, 2, 2], help="blocks per stage")
    p.add_argument("--projection-dim", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="auto: bf16 where the CPU has bfloat16 units or on a GPU, else fp32")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints")
    p.add_argument("--eval-every", type=int, default=10, help="epochs between kNN checks (0: only at the end)")
    p.add_argument("--limit-images", type=int, default=None, help="train on the first N images (smoke tests)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this many steps in all (checkpointed; run again to resume), e.g. to fit a time box")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def load_split(name: str, limit: int | None = None):
    """(uint8 array (n, 32, 32, 3), labels, corpus) of a kit split, each file sha256-verified."""
    from PIL import Image

    from edgeslim.calibration_data import load_corpus

    corpus = load_corpus(name)
    paths = list(corpus.items[:limit] if limit else corpus.items)
    images = np.stack([np.asarray(Image.open(p).convert("RGB"), np.uint8) for p in paths])
    return images, list(corpus.labels[: len(paths)]), corpus


def _bf16_capable(torch) -> bool:
    if torch.cuda.is_available():
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def augment(x, generator):
    """SimCLR's CIFAR augmentations on a batch (b, 3, h, w) in [0, 1], vectorised."""
    import torch
    import torch.nn.functional as F

    b, device = x.shape[0], x.device

    def uniform(low, high):
        return torch.rand(b, generator=generator).to(device) * (high - low) + low

    # Random resized crop (area 0.2-1, aspect 3/4-4/3) and horizontal flip as one affine sampling.
    area, log_ratio = uniform(0.2, 1.0), uniform(math.log(3 / 4), math.log(4 / 3))
    ratio = torch.exp(log_ratio)
    w, h = torch.sqrt(area * ratio).clamp(max=1.0), torch.sqrt(area / ratio).clamp(max=1.0)
    cx, cy = uniform(-1, 1) * (1 - w), uniform(-1, 1) * (1 - h)
    flip = torch.where(uniform(0, 1) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def gray(t):
        return (0.299 * t[:, 0:1] + 0.587 * t[:, 1:2] + 0.114 * t[:, 2:3])

    # Colour jitter with p=0.8: brightness, contrast, saturation 0.4; hue 0.1 (a rotation in YIQ).
    bright, contrast, sat, hue = uniform(0.6, 1.4), uniform(0.6, 1.4), uniform(0.6, 1.4), uniform(-0.1, 0.1)
    j = (x * bright.view(-1, 1, 1, 1)).clamp(0, 1)
    mean = gray(j).mean((1, 2, 3), keepdim=True)
    j = ((j - mean) * contrast.view(-1, 1, 1, 1) + mean).clamp(0, 1)
    g = gray(j)
    j = ((j - g) * sat.view(-1, 1, 1, 1) + g).clamp(0, 1)
    yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=device)
    angle = hue * 2 * math.pi
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(b, 3, 3, device=device)
    rot[:, 0, 0], rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = 1, cos, -sin, sin, cos
    transform = torch.linalg.inv(yiq) @ rot @ yiq
    j = torch.einsum("bij,bjhw->bihw", transform, j).clamp(0, 1)
    x = torch.where((uniform(0, 1) < 0.8).view(-1, 1, 1, 1), j, x)
    x = torch.where((uniform(0, 1) < 0.2).view(-1, 1, 1, 1), gray(x).expand_as(x), x)
    mean_t = torch.tensor(CIFAR_MEAN, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(CIFAR_STD, device=device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def build_encoder(args):
    from edgeslim.models.cnn import RESNET, CnnConfig

    config = CnnConfig(model_type="resnet18", image_size=32, width=args.width, layers=list(args.layers), stem="cifar")
    return RESNET.build(config)


def embed(encoder, images: np.ndarray, device, batch: int = 500) -> np.ndarray:
    """Mean-pooled features (the kit's `pooling: mean`) of uint8 images, eval mode, fp32."""
    import torch

    mean = np.asarray(CIFAR_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(CIFAR_STD, np.float32).reshape(1, 3, 1, 1)
    was_training = encoder.training
    encoder.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            x = (images[start:start + batch].transpose(0, 3, 1, 2).astype(np.float32) / 255 - mean) / std
            out.append(encoder(torch.from_numpy(x).to(device)).float().mean(1).cpu().numpy())
    encoder.train(was_training)
    return np.concatenate(out)


def train(args) -> dict:
    import torch
    from torch import nn

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = args.precision == "bf16" or (args.precision == "auto" and _bf16_capable(torch))
    images, _, corpus = load_split(TRAIN_SPLIT, args.limit_images)
    steps_per_epoch = len(images) // args.batch_size
    if steps_per_epoch == 0:
        raise SystemExit(f"{len(images)} images are fewer than one batch of {args.batch_size}")
    total = steps_per_epoch * args.epochs

    torch.manual_seed(args.seed)
    encoder = build_encoder(args)
    for m in encoder.modules():  # build() seeds 0 for reproducible tiny models; reseed by --seed
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d)):
            m.reset_parameters()
    hidden = encoder.out_channels
    head = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.BatchNorm1d(4 * hidden), nn.ReLU(),
                         nn.Linear(4 * hidden, args.projection_dim))
    encoder, head = encoder.to(device).train(), head.to(device).train()
    memory_format = torch.channels_last
    encoder = encoder.to(memory_format=memory_format)
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=args.learning_rate, weight_decay=1e-6)
    warmup = max(1, min(total // 10, 10 * steps_per_epoch))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))))

    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = args.out / f".simclr-{run_key(args)}.pt"
    step, losses, evals, seconds_before = 0, [], [], 0.0
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        encoder.load_state_dict(state["encoder"])
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, losses, evals, seconds_before = state["step"], state["losses"], state["evals"], state["seconds"]
        print(f"resuming from step {step}/{total} ({checkpoint})", file=sys.stderr)

    def save():
        atomic_torch_save({"encoder": encoder.state_dict(), "head": head.state_dict(), "step": step,
                            "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "losses": losses,
                            "evals": evals, "seconds": seconds_before + time.perf_counter() - started}, checkpoint)

    probe_cache = {}

    def knn_now() -> float:
        from edgeslim.benchmarks.harness import knn_top1

        if not probe_cache:
            probe_cache["train"] = load_split(TRAIN_SPLIT)[:2]
            probe_cache["test"] = load_split(PROBE_SPLIT)[:2]
        (tr, tr_y), (te, te_y) = probe_cache["train"], probe_cache["test"]
        return round(100 * knn_top1(embed(encoder, tr, device), tr_y, embed(encoder, te, device), np.asarray(te_y)), 2)

    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc="simclr", unit="step", dynamic_ncols=True)
    started = time.perf_counter()
    data = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # uint8 (n, 3, 32, 32)
    while step < total:
        if args.stop_after is not None and step >= args.stop_after:
            save()
            if bar is not None:
                bar.close()
            return {"stopped_at": step, "steps": total, "checkpoint": checkpoint}
        epoch, index = divmod(step, steps_per_epoch)
        order = np.random.default_rng([args.seed, epoch]).permutation(len(images))
        batch = torch.from_numpy(order[index * args.batch_size:(index + 1) * args.batch_size])
        x = (data[batch].float() / 255).to(device)
        generator = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        views = [augment(x, generator).contiguous(memory_format=memory_format) for _ in range(2)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            z1, z2 = (head(encoder(v).mean(1)) for v in views)
        loss = nt_xent(z1, z2, args.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        step += 1
        losses.append(round(float(loss.detach()), 4))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(losses[-steps_per_epoch:]):.3f}")
        end_of_epoch = step % steps_per_epoch == 0
        if end_of_epoch and args.eval_every and (step // steps_per_epoch) % args.eval_every == 0 and step < total:
            evals.append({"epoch": step // steps_per_epoch, "knn_top1": knn_now()})
            if bar is not None:
                bar.write(f"epoch {evals[-1]['epoch']}: kNN top-1 {evals[-1]['knn_top1']:.2f}%")
        if step % args.checkpoint_every == 0 or end_of_epoch:
            save()
    if bar is not None:
        bar.close()
    seconds = seconds_before + time.perf_counter() - started
    return {"encoder": encoder.to(memory_format=torch.contiguous_format).cpu().eval(), "losses": losses,
            "evals": evals, "seconds": seconds, "steps": total, "steps_per_epoch": steps_per_epoch, "bf16": bf16,
            "device": str(device), "corpus": corpus, "images": len(images), "checkpoint": checkpoint}


def evaluate(encoder, args) -> dict:
    """kNN top-1 (k=20, cosine) and linear probe on the held-out split: the SSL encoder, the same
    architecture at random init, and raw pixels."""
    import torch

    train_images, train_labels, train_corpus = load_split(TRAIN_SPLIT)
    test_images, test_labels, test_corpus = load_split(PROBE_SPLIT)
    overlap = set(train_corpus.items) & set(test_corpus.items)
    if overlap:
        raise SystemExit(f"{len(overlap)} images are in both splits")
    torch.manual_seed(args.seed + 1)
    random_init = build_encoder(args)
    for m in random_init.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d)):
            m.reset_parameters()
    pixels = lambda a: ((a.astype(np.float32) / 255 - CIFAR_MEAN) / CIFAR_STD).reshape(len(a), -1)  # noqa: E731
    cpu = torch.device("cpu")
    figures = {
        "ssl": probe(embed(encoder, train_images, cpu), train_labels, embed(encoder, test_images, cpu), test_labels),
        "random_init": probe(embed(random_init, train_images, cpu), train_labels,
                             embed(random_init, test_images, cpu), test_labels),
        "raw_pixels": probe(pixels(train_images), train_labels, pixels(test_images), test_labels),
    }
    return {"figures": figures, "probe_train": {"split": TRAIN_SPLIT, "images": len(train_images)},
            "probe_test": {"split": PROBE_SPLIT, "images": len(test_images)}, "overlap": 0}


def write_folder(out: Path, encoder, run: dict, quality: dict, args) -> None:
    from edgeslim.models.cnn import RESNET

    tmp = out / ".writing"
    tmp.mkdir(parents=True, exist_ok=True)
    RESNET.save(encoder, tmp)
    (tmp / "preprocessor_config.json").write_text(json.dumps({
        "do_resize": True, "size": {"height": 32, "width": 32}, "resample": 2, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(CIFAR_MEAN), "image_std": list(CIFAR_STD),
    }, indent=2), encoding="utf-8")
    corpus = run["corpus"]
    sheet = {
        "what": "SimCLR-pretrained ResNet (CIFAR stem) image encoder, trained by edgeslim/benchmarks/teachers/simclr.py",
        "training_data": {"split": corpus.name, "source": corpus.source, "images": run["images"],
                          "split_rule": "CIFAR-10 test JPEGs; sha256 of the relative path, first 32 bits mod 5 != 0",
                          # sha256 over the images' own sha256s, in training order: the same images give the same value
                          "images_sha256": hashlib.sha256("\n".join(
                              corpus.files_sha256[p] for p in corpus.items[:run["images"]]).encode()).hexdigest(),
                          "labels_used": False},
        "method": {"loss": "NT-Xent (SimCLR)", "temperature": args.temperature, "batch_size": args.batch_size,
                   "epochs": args.epochs, "steps": run["steps"], "optimizer": "Adam, weight decay 1e-6",
                   "learning_rate": args.learning_rate, "schedule": "linear warm-up, cosine decay",
                   "augmentations": "random resized crop (0.2-1, 3/4-4/3) + h-flip; colour jitter 0.4/0.4/0.4/0.1 "
                                    "p=0.8; grayscale p=0.2",
                   "projection_head": f"{encoder.out_channels}-{4 * encoder.out_channels}-{args.projection_dim} "
                                      "(dropped from the saved model)",
                   "seed": args.seed, "precision": "bf16 autocast" if run["bf16"] else "fp32"},
        "architecture": dict(encoder.config), "parameters": sum(p.numel() for p in encoder.parameters()),
        "macs_per_image": int(RESNET.macs(encoder, 0)),
        "training": {"device": run["device"], "seconds": round(run["seconds"], 1), "final_loss": run["losses"][-1],
                     "loss_per_epoch": [round(float(np.mean(run["losses"][i:i + run["steps_per_epoch"]])), 4)
                                        for i in range(0, len(run["losses"]), run["steps_per_epoch"])],
                     "knn_during_training": run["evals"]},
        "quality": quality,
    }
    (tmp / "datasheet.json").write_text(json.dumps(sheet, indent=2), encoding="utf-8")
    f = quality["figures"]
    (tmp / "DATASHEET.md").write_text("\n".join([
        "# SimCLR CIFAR-10 teacher (trained here)", "",
        f"- Trained on {run['images']} unlabeled images of `{corpus.name}` ({corpus.source}); labels never read.",
        f"- {args.epochs} epochs, {run['steps']} steps, batch {args.batch_size}, {sheet['training']['seconds']:.0f} s "
        f"on {run['device']}, {sheet['method']['precision']}, seed {args.seed}.",
        f"- Architecture: {sheet['architecture']}, {sheet['parameters']:,} parameters, "
        f"{sheet['macs_per_image'] / 1e6:.1f}M MACs per 32x32 image.",
        f"- Measured on `{PROBE_SPLIT}` ({quality['probe_test']['images']} images, disjoint from training), memory "
        f"bank / probe training = `{TRAIN_SPLIT}`:", "",
        "| features | kNN top-1 (k=20, cosine) | linear probe top-1 |", "|---|---|---|",
        *[f"| {name} | {v['knn_top1']:.2f} | {v['linear_probe_top1']:.2f} |"
          for name, v in (("SimCLR (this model)", f["ssl"]), ("same architecture, random init", f["random_init"]),
                          ("raw pixels", f["raw_pixels"]))], ""]), encoding="utf-8")
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "datasheet.json", "DATASHEET.md"):
        os.replace(tmp / name, out / name)
    tmp.rmdir()


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out = args.out.expanduser()
    run = train(args)
    if "stopped_at" in run:
        print(f"stopped at step {run['stopped_at']}/{run['steps']}; checkpoint {run['checkpoint']}; run the same "
              "command again (without --stop-after) to resume")
        return 3
    quality = evaluate(run["encoder"], args)
    write_folder(args.out, run["encoder"], run, quality, args)
    f = quality["figures"]
    print(f"SimCLR teacher written to {args.out} ({run['seconds']:.0f} s of training)")
    print(f"held-out {PROBE_SPLIT} ({quality['probe_test']['images']} images), kNN top-1 (k=20) / linear probe:")
    for name, key in (("SimCLR", "ssl"), ("random init", "random_init"), ("raw pixels", "raw_pixels")):
        print(f"  {name:12s} {f[key]['knn_top1']:6.2f}%  {f[key]['linear_probe_top1']:6.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
