"""Self-supervised distillation: a student (initialised from the teacher, optionally with fewer
layers) learns to reproduce the teacher's pooled embeddings on unlabeled sentences or images.

    student, record = distill(teacher, DistillConfig(keep_layers=(0, 2, 4)), texts, workdir)

- The batches come from the teacher's modality (`Modality.distillation_batches`). Text: teacher
  embeddings cached on disk, keyed by the teacher's weights and the texts. Images and audio:
  prepared once; with `augment` each batch is changed (images: flipped and shifted; audio:
  shifted in time, gain changed; a fixed function of seed and step) and the teacher embeds the
  same augmented batch, so the student learns the teacher on more than the stored items. No
  labels are read.
- A checkpoint is written atomically every `checkpoint_every` steps; a new call with the same
  config and data resumes from it (after a crash or SIGKILL), losing at most that many steps.
  Resumption is exact: data order and RNG state are restored.
- Under torch.distributed (torchrun, or `distill_distributed` here) each rank trains on its
  shard of every global batch and DDP averages gradients: the same updates as one process.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edgeslim.cache import cache_dir  # noqa: F401  (where callers put distillation checkpoints)
from edgeslim.compress.configs import DistillConfig
from edgeslim.errors import StepError


def make_student(origin, keep_layers):
    """A copy of `origin`'s module (an EncoderModel's) keeping the blocks `keep_layers`."""
    student = copy.deepcopy(origin.module)
    if keep_layers is not None:
        count = len(origin.family.blocks(student))
        bad = [i for i in keep_layers if not 0 <= i < count]
        if bad:
            raise StepError(f"distill.keep_layers {bad} out of range: the teacher has layers 0..{count - 1}")
        origin.family.keep_blocks(student, tuple(keep_layers))
    return student


def _set_dropout(module: torch.nn.Module, p: float) -> None:
    for sub in module.modules():
        if isinstance(sub, torch.nn.Dropout):
            sub.p = p


def _loss(student_emb: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    student_emb = F.normalize(student_emb, dim=-1)
    cosine = 1.0 - (student_emb * target).sum(-1).mean()
    mse = F.mse_loss(student_emb, target) * target.shape[-1]  # per-dimension MSE scaled to O(1)
    return {"cosine": cosine, "mse": mse, "cosine+mse": cosine + mse}[kind]


def _run_key(cfg: DistillConfig, teacher_sha: str, texts_sha: str, world_size: int) -> str:
    body = json.dumps([cfg.model_dump(mode="json", exclude={"checkpoint_every"}), teacher_sha, texts_sha, world_size])
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def _save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint intact


def _checkpoint_lock(checkpoint: Path, world_size: int, log):
    """One process at a time trains a run key (two workers of a search may want the same
    student): the second waits, then resumes from the finished checkpoint, which is a load. Under
    DDP the ranks are one training and rank 0 alone writes, so they take no lock."""
    if world_size > 1:
        return contextlib.nullcontext()
    from edgeslim.outputs import exclusive_lock

    return exclusive_lock(checkpoint.with_suffix(".lock"),
                          lambda other: log(f"    distill: waiting for {other}, which is training this student"))


def distill(teacher, cfg: DistillConfig, texts: list[str], workdir: Path, log=print,
            rank: int = 0, world_size: int = 1, progress: bool = True, student=None):
    """Train a student to reproduce `teacher` (an EncoderModel); return (student EncoderModel, record).

    `texts` are sentences, or image paths for an image teacher. The student starts from
    `student` (e.g. a pruned model; default: the teacher), keeping the layers `cfg.keep_layers`."""
    origin = student or teacher
    if cfg.batch_size % world_size:
        raise StepError(f"distill.batch_size {cfg.batch_size} must divide evenly over {world_size} processes")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    from edgeslim.modalities import get_modality

    modality = get_modality(teacher.modality)
    batches = modality.distillation_batches(teacher, origin, texts, cfg, log)
    texts_sha = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    run_key = _run_key(cfg, teacher.weights_sha256 + origin.weights_sha256, texts_sha, world_size)
    checkpoint = workdir / f"distill-{run_key}.pt"
    with _checkpoint_lock(checkpoint, world_size, log):  # one process trains a key; others wait, then load it
        device = torch.device("cuda", rank % torch.cuda.device_count()) if torch.cuda.is_available() else torch.device("cpu")
        torch.manual_seed(cfg.seed)
        student = make_student(origin, cfg.keep_layers).to(device)
        _set_dropout(student, cfg.dropout)
        model = student
        if world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)
        steps_per_epoch = len(texts) // cfg.batch_size  # incomplete last batches are dropped
        if steps_per_epoch == 0:
            raise StepError(f"distill has {len(texts)} sentences, fewer than one batch of {cfg.batch_size}")
        total_steps = max(1, int(steps_per_epoch * cfg.epochs))
        optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
        warmup = max(1, int(total_steps * cfg.warmup_fraction))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup))))

        step, resumed_from, losses, trained_before = 0, None, [], 0.0
        if checkpoint.is_file():
            # weights_only: tensors and plain containers only, a checkpoint cannot run code when loaded
            try:
                state = torch.load(checkpoint, map_location=device, weights_only=True)
            except Exception as exc:  # torch raises UnpicklingError/RuntimeError for foreign content
                raise StepError(f"distillation checkpoint {checkpoint} holds more than tensors and plain data, or is "
                                f"damaged ({type(exc).__name__}); it was not loaded. Delete it to start over.") from None
            student.load_state_dict(state["student"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            step, losses, resumed_from = state["step"], state["losses"], state["step"]
            trained_before = state.get("train_seconds", 0.0)
            log(f"    distill: resuming from step {step}/{total_steps} ({checkpoint.name})")

        bar = None
        if progress and rank == 0:
            from tqdm import tqdm

            bar = tqdm(total=total_steps, initial=step, desc="distill", unit="step", dynamic_ncols=True)
        started, start_step = time.perf_counter(), step
        model.train()
        while step < total_steps:
            epoch, index = divmod(step, steps_per_epoch)
            order = np.random.default_rng(cfg.seed + epoch).permutation(len(texts))  # fixed per epoch: resumable
            batch = order[index * cfg.batch_size : (index + 1) * cfg.batch_size]
            shard = batch[rank::world_size] if world_size > 1 else batch
            feeds, mask, target = batches.batch(shard, step, device)
            hidden = origin.family.hidden_states(model, **feeds)
            loss = _loss(batches.pool(hidden, mask, teacher.pooling), target, cfg.loss)
            loss.backward()  # equal shards: DDP's gradient average is the full batch's gradient
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            losses.append(float(loss.detach()))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if rank == 0 and (step % cfg.checkpoint_every == 0 or step == total_steps):
                _save_checkpoint(checkpoint, {"step": step, "student": student.state_dict(), "losses": losses,
                                              "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                              "rng": torch.get_rng_state(),
                                              "train_seconds": trained_before + time.perf_counter() - started})
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - started
        student = student.cpu().eval()
        from edgeslim.models import weights_digest

        layers = len(origin.family.blocks(student))
        result = origin.replace(
            name=f"{origin.name}-student{layers}L", module=student, pooling=teacher.pooling, normalize=teacher.normalize,
            max_seq_length=teacher.max_seq_length, weights_sha256=weights_digest(student), license=teacher.license,
        )
        record = {
            "layers": layers,
            "keep_layers": list(cfg.keep_layers) if cfg.keep_layers is not None else None,
            "modality": teacher.modality,
            modality.noun: len(texts),  # sentences, images, clips
            "texts_sha256": texts_sha,
            "steps": total_steps,
            "resumed_from_step": resumed_from,
            "final_loss": float(np.mean(losses[-20:])) if losses else None,
            "train_seconds_this_call": round(seconds, 1),
            # All calls together, also when this one only loaded a finished checkpoint from the cache.
            "train_seconds_total": round(trained_before + seconds, 1),
            "steps_per_second": round((step - start_step) / seconds, 2) if seconds > 0 and step > start_step else None,
            "processes": world_size,
            "device": str(device),
        }
        return result, record


def distributed_worker(rank: int, world_size: int, init_method: str, model_spec: dict, cfg: dict,
                       texts: list[str], workdir: str, out: str | None) -> None:
    """One rank of a multi-process distillation (gloo on CPU, NCCL on GPU). Rank 0 saves the
    student's state dict to `out`. Also the body of `python -m edgeslim.compress.distill`."""
    import torch.distributed as dist

    from edgeslim.models import load_encoder
    from edgeslim.models.spec import ModelSpec

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
    try:
        teacher = load_encoder(ModelSpec(**model_spec))
        student, record = distill(teacher, DistillConfig(**cfg), texts, Path(workdir), log=lambda _: None,
                                  rank=rank, world_size=world_size, progress=False)
        if rank == 0 and out:
            torch.save({"state_dict": student.module.state_dict(), "record": record}, out)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":  # torchrun --nproc-per-node N -m edgeslim.compress.distill SPEC.json
    import sys

    spec = json.loads(Path(sys.argv[1]).read_text())
    distributed_worker(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", spec["model"],
                       spec["config"], spec["texts"], spec["workdir"], spec.get("out"))
