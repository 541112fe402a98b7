"""Measure one model in a fresh process, so its peak RSS is its own and backends never share
a process. Run by `run_worker`; by hand:

    python -m edgeslim.benchmarks.worker SPEC.json RESULT.json

SPEC: {"kind": "bundle", "path": ..., "manifest": ...}, {"kind": "teacher", "model": {ModelSpec
fields}} or {"kind": "interleaved", "model": ..., "path": ..., "rounds", "runs_per_round"} (teacher
and bundle timed in alternating rounds in this one process, pinned to the same cores), plus
"threads", "latency_input" (the modality's operating point: a token row, or one item), "batch",
"warmup", "min_runs", "min_seconds",
"texts" (a JSON file with lists of items to embed, each list in its own encode call) and
"embeddings" (.npy output path: the lists' embeddings, concatenated).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgeslim.benchmarks.harness import measure_latency, peak_rss_mb
from edgeslim.errors import EdgeslimError


@dataclass
class Opened:
    """One model, whatever it is or reads: `forward(feeds)` -> pooled embeddings, `embed(items)`,
    `model` (for the modality's latency feeds: anything with `model_inputs(items)`)."""

    model: object
    modality: object  # edgeslim.modalities.Modality
    forward: Callable
    embed: Callable
    providers: list[str]


def _open(spec: dict, kind: str | None = None) -> Opened:
    from edgeslim.modalities import get_modality

    if (kind or spec["kind"]) == "bundle":
        from edgeslim.runtime import load

        encoder = load(spec["path"], threads=spec["threads"], manifest_path=spec.get("manifest"))
        return Opened(encoder, get_modality(encoder.modality), encoder.embed_inputs,
                      lambda items: encoder.encode_items(items, batch_size=32), encoder.providers)
    import torch

    from edgeslim.models import load_encoder
    from edgeslim.models.spec import ModelSpec

    torch.set_num_threads(spec["threads"])
    model = load_encoder(ModelSpec(**spec["model"]))
    providers = ([f"torch {torch.__version__} CPU"] if model.family is not None
                 else ["onnxruntime CPUExecutionProvider (fp32 reference)"])
    return Opened(model, get_modality(model.modality), model.embed_inputs,
                  lambda items: model.embed_items(items, batch_size=32), providers)


def _throughput_embed(opened: Opened, spec: dict) -> Callable:
    """The accuracy pass on every core this process may use: the timings are taken by then, and
    the thread count changes the order of float sums, not what is computed (1e-7 level)."""
    cores = len(os.sched_getaffinity(0))
    if cores <= spec["threads"]:
        return opened.embed
    if spec["kind"] == "bundle":
        return _open({**spec, "threads": cores}).embed
    import torch

    torch.set_num_threads(cores)
    return opened.embed


def _latency_feeds(opened: Opened, spec: dict) -> dict:
    """The budget's operating point (a row of real tokens, one real image or clip), `batch` times."""
    return opened.modality.latency_feeds(opened.model, spec["latency_input"], spec["batch"])


def pin_to_cores(threads: int) -> list[int]:
    """Pin this process to `threads` of the cores it may use (the last ones: the first are where
    the system tends to put other work); returns them."""
    allowed = sorted(os.sched_getaffinity(0))
    cores = allowed[-threads:] if threads <= len(allowed) else allowed
    os.sched_setaffinity(0, cores)
    return cores


def _interleaved(spec: dict, teacher: Opened | None = None, cores: list[int] | None = None) -> dict:
    cores = cores or pin_to_cores(spec["threads"])
    teacher, bundle = teacher or _open(spec, "teacher"), _open(spec, "bundle")
    teacher_feeds = _latency_feeds(teacher, {**spec, "latency_input": spec["teacher_input"]})
    bundle_feeds = _latency_feeds(bundle, spec)
    runs = spec["runs_per_round"]
    teacher_p50, bundle_p50 = [], []
    for model, feeds in ((teacher, teacher_feeds), (bundle, bundle_feeds)):
        for _ in range(spec["warmup"]):
            model.forward(feeds)
    for _ in range(spec["rounds"]):
        teacher_p50.append(measure_latency(lambda: teacher.forward(teacher_feeds), 1, runs)["p50"])
        bundle_p50.append(measure_latency(lambda: bundle.forward(bundle_feeds), 1, runs)["p50"])
    return {"teacher_p50": teacher_p50, "bundle_p50": bundle_p50,
            "ratios": [t / b for t, b in zip(teacher_p50, bundle_p50)],
            "cpu": cores[0] if len(cores) == 1 else None, "latency": {}, "peak_rss_mb": round(peak_rss_mb(), 1),
            "providers": []}


def serve() -> None:
    """The interleaved worker of a whole run: the first stdin line is the teacher's spec; each
    next line a bundle's (path, manifest, latency input, rounds...), answered with one line of
    the same result `_interleaved` gives. The teacher is loaded once and stays; each bundle is
    loaded, timed against it in alternating rounds and dropped. Ends at end of input."""
    import gc

    first = json.loads(sys.stdin.readline())
    cores = pin_to_cores(first["threads"])
    teacher = _open(first, "teacher")
    print(json.dumps({"ready": True, "cpu": cores[0] if len(cores) == 1 else None}), flush=True)
    for line in sys.stdin:
        try:
            result = _interleaved({**first, **json.loads(line)}, teacher, cores)
        except Exception as exc:  # reported to the caller, which raises it with the bundle's name
            result = {"error": f"{type(exc).__name__}: {exc}"}
        gc.collect()
        print(json.dumps(result), flush=True)


class InterleavedWorker:
    """A `serve()` process for one run (the teacher loaded once for every bundle). Use as a
    context manager, or call close()."""

    def __init__(self, spec: dict):
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false"}
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([sys.executable, "-m", "edgeslim.benchmarks.worker", "--serve"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                      env=env)
        self._ask(spec, "the teacher")

    def _ask(self, request: dict, what: str) -> dict:
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self._stderr.seek(0)
            tail = self._stderr.read().decode(errors="replace")[-3000:]
            raise EdgeslimError(f"the interleaved benchmark worker died while timing {what} "
                                f"(exit {self._proc.poll()}):\n{tail}")
        answer = json.loads(line)
        if "error" in answer:
            raise EdgeslimError(f"the interleaved benchmark worker failed on {what}: {answer['error']}")
        return answer

    def time_bundle(self, request: dict) -> dict:
        return self._ask(request, request.get("path", "a bundle"))

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _write(result: dict, result_path: str) -> None:
    tmp = Path(result_path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, result_path)


def main(spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if spec["kind"] == "interleaved":
        np.save(spec["embeddings"], np.zeros((0, 0), np.float32))
        return _write(_interleaved(spec), result_path)
    opened = _open(spec)
    feeds = _latency_feeds(opened, spec)
    latency = measure_latency(lambda: opened.forward(feeds), spec["warmup"], spec["min_runs"], spec["min_seconds"])
    # Peak RSS at the budget's operating point, before the accuracy pass (batch 32) adds its own.
    peak_rss = peak_rss_mb()
    real = {}
    for batch in spec.get("real_batches", []) if opened.modality.runtime.variable_length else []:
        # Real items at their own length: each batch padded only to its longest item.
        items = spec["real_texts"]
        batches = [opened.model.model_inputs(items[i : i + batch]) for i in range(0, len(items), batch)]
        batches = [f for f in batches if next(iter(f.values())).shape[0] == batch]
        cycle = itertools.cycle(batches)
        stats = measure_latency(lambda: opened.forward(next(cycle)), spec["warmup"], spec["min_runs"],
                                spec["min_seconds"])
        tokens = [int(f["attention_mask"].sum()) / batch for f in batches]
        real[str(batch)] = {**stats, "batch": batch, "batches": len(batches),
                            "tokens_per_sentence_mean": round(float(np.mean(tokens)), 2)}
    groups = json.loads(Path(spec["texts"]).read_text())
    parts = []
    if any(groups):  # else the accuracy pass was done before (a search's first look)
        embed = _throughput_embed(opened, spec)
        parts = [embed(group) for group in groups if group]
    np.save(spec["embeddings"], np.concatenate(parts) if parts else np.zeros((0, 0), np.float32))
    _write({"latency": latency, "latency_real": real, "peak_rss_mb": round(peak_rss, 1), "providers": opened.providers},
           result_path)


def run_worker(spec: dict, groups: list[list[str]]) -> tuple[dict, np.ndarray]:
    """Run a worker process for `spec`; return (its result, the embeddings of the items of
    `groups`, concatenated; each group is embedded in its own call)."""
    with tempfile.TemporaryDirectory(prefix="edgeslim-worker-") as tmp:
        tmp = Path(tmp)
        (tmp / "texts.json").write_text(json.dumps(groups))
        spec = {**spec, "texts": str(tmp / "texts.json"), "embeddings": str(tmp / "embeddings.npy")}
        (tmp / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run(
            [sys.executable, "-m", "edgeslim.benchmarks.worker", str(tmp / "spec.json"), str(tmp / "result.json")],
            env=env, capture_output=True, text=True,
        )
        if proc.returncode != 0:
            what = spec.get("path") or spec["kind"]
            raise EdgeslimError(f"benchmark worker for {what} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads((tmp / "result.json").read_text()), np.load(tmp / "embeddings.npy")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve()
    else:
        main(*sys.argv[1:3])
