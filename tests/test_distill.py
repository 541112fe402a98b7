import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from edgeslim.calibration_data import load_corpus
from edgeslim.compress.configs import DistillConfig
from edgeslim.compress.distill import distill, distributed_worker

TINY = {"source": "tiny-random", "family": "bert", "max_seq_length": 64}


@pytest.fixture(scope="module")
def texts():
    return list(load_corpus("wordnet-calibration").texts[:256])


@pytest.fixture(scope="module")
def strong_teacher(tiny_model):
    """The tiny model with its encoder weights scaled up: its random layers then change the
    embedding a lot (cosine ~0.56 between it and its own 1-layer copy), so learning shows."""
    import copy

    teacher = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for name, param in teacher.module.encoder.named_parameters():
            if name.endswith("weight") and "LayerNorm" not in name:
                param.mul_(8)
    teacher.weights_sha256 = "tiny-random-bert-scaled-x8"
    return teacher


def _cosine_to_teacher(student, teacher, sentences):
    return float((student.embed(sentences) * teacher.embed(sentences)).sum(1).mean())


def test_distilling_a_one_layer_student_moves_it_towards_the_teacher(strong_teacher, texts, tmp_path):
    cfg = DistillConfig(keep_layers=(1,), epochs=4, batch_size=16, learning_rate=1e-3, checkpoint_every=1000)
    held_out = list(load_corpus("wordnet-heldout").texts[:64])  # never trained on
    untrained, _ = distill(strong_teacher, cfg.model_copy(update={"epochs": 0.001}), texts, tmp_path / "a",
                           log=lambda _: None, progress=False)
    student, record = distill(strong_teacher, cfg, texts, tmp_path / "b", log=lambda _: None, progress=False)
    assert record["layers"] == 1 and len(student.module.encoder.layer) == 1
    assert record["steps"] == 4 * (256 // 16) and record["resumed_from_step"] is None
    before = _cosine_to_teacher(untrained, strong_teacher, held_out)
    after = _cosine_to_teacher(student, strong_teacher, held_out)
    assert before < 0.8 and after > 0.95, (before, after)


def test_bad_layer_index_is_a_step_error(tiny_model, texts, tmp_path):
    from edgeslim.errors import StepError

    with pytest.raises(StepError, match=r"out of range: the teacher has layers 0..1"):
        distill(tiny_model, DistillConfig(keep_layers=(0, 5)), texts, tmp_path, log=lambda _: None)


def test_teacher_embeddings_are_cached(tiny_model, texts, tmp_path, monkeypatch):
    from edgeslim.cache import cache_dir
    from edgeslim.modalities.text import teacher_embeddings

    monkeypatch.setenv("EDGESLIM_CACHE", str(tmp_path / "own-cache"))
    first = teacher_embeddings(tiny_model, texts[:32], 64, log=lambda _: None)
    files = list((cache_dir() / "teacher-embeddings").glob("*.npy"))
    assert len(files) == 1
    np.testing.assert_array_equal(teacher_embeddings(tiny_model, texts[:32], 64, log=lambda _: None), first)
    teacher_embeddings(tiny_model, texts[:33], 64, log=lambda _: None)
    assert len(list((cache_dir() / "teacher-embeddings").glob("*.npy"))) == 2


_KILL_SCRIPT = """
import json, sys
from edgeslim.compress.configs import DistillConfig
from edgeslim.compress.distill import distill
from edgeslim.models import load_encoder
from edgeslim.recipe import ModelSpec
spec = json.loads(sys.argv[1])
teacher = load_encoder(ModelSpec(**spec["model"]))
distill(teacher, DistillConfig(**spec["config"]), spec["texts"], spec["workdir"], log=print, progress=False)
"""


def test_sigkill_then_resume_loses_at_most_one_checkpoint_interval(tiny_model, texts, tmp_path):
    cfg = DistillConfig(keep_layers=(0,), epochs=30, batch_size=8, checkpoint_every=10)  # 960 steps
    workdir = tmp_path / "killed"
    spec = {"model": TINY, "config": cfg.model_dump(mode="json"), "texts": texts, "workdir": str(workdir)}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, json.dumps(spec)], env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    checkpoint_step = 0
    while time.time() < deadline and proc.poll() is None:
        checkpoints = list(workdir.glob("distill-*.pt"))
        if checkpoints:
            try:
                checkpoint_step = torch.load(checkpoints[0], weights_only=True)["step"]
            except Exception:  # caught between os.replace and a read: try again
                checkpoint_step = 0
            if checkpoint_step >= 50:
                break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 50 <= checkpoint_step < 960

    resumed, record = distill(tiny_model, cfg, texts, workdir, log=lambda _: None, progress=False)
    assert record["resumed_from_step"] >= checkpoint_step  # nothing before the last checkpoint is redone
    assert record["train_seconds_total"] > record["train_seconds_this_call"]
    # The lost work is what ran after the last checkpoint: under checkpoint_every steps by construction.
    assert record["steps"] == 960
    straight, _ = distill(tiny_model, cfg, texts, tmp_path / "straight", log=lambda _: None, progress=False)
    for (name, a), b in zip(resumed.module.state_dict().items(), straight.module.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name} differs after resume")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_process_gloo_matches_one_process(tiny_model, texts, tmp_path):
    cfg = DistillConfig(keep_layers=(0, 1), epochs=1, batch_size=16, learning_rate=5e-4)
    out = tmp_path / "ddp.pt"
    torch.multiprocessing.spawn(
        distributed_worker,
        args=(2, f"tcp://127.0.0.1:{_free_port()}", TINY, cfg.model_dump(mode="json"), texts,
              str(tmp_path / "ddp"), str(out)),
        nprocs=2, join=True,
    )
    ddp = torch.load(out, weights_only=True)
    assert ddp["record"]["processes"] == 2
    single, record = distill(tiny_model, cfg, texts, tmp_path / "single", log=lambda _: None, progress=False)
    assert record["steps"] == ddp["record"]["steps"] == 16
    for name, tensor in single.module.state_dict().items():
        torch.testing.assert_close(ddp["state_dict"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
