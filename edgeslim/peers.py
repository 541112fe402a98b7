"""`edgeslim peers`: the peers table's orchestration. The measuring parts (the peers' venv and
exports, one adapter per model, interleaved rounds, the GEMM roofline, the table and its plot)
live in `edgeslim.benchmarks.peers.side_by_side`; this module adds the run's evaluation data and
scoring, which belong to the core."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from edgeslim.benchmarks.peers.side_by_side import (OPERATING_POINTS, GEMM_SHAPE, log_progress, bundle_contender,
                                                    distill_model2vec, export_peers, host_isa_config,
                                                    measure_gemm_roofline, model2vec_peer, onnx_peer,
                                                    openvino_peer, plot, render_markdown, tabulate,
                                                    teacher_contender, time_rounds)
from edgeslim.benchmarks.worker import pin_to_cores
from edgeslim.errors import DataError, OutputError


def run_side_by_side(bundles: list[Path], threads: int = 1, rounds: int = 20, runs_per_round: int = 10,
                     warmup: int = 10) -> dict:
    from edgeslim.evaldata import load_eval_data
    from edgeslim.measure import accuracy_of, agreement_rows
    from edgeslim.recipe import load_recipe
    from edgeslim.targets.host import isa_summary, read_host_profile

    recipe, _ = load_recipe(None)  # the default recipe's evaluation data: STS-B test, Banking77 probe
    data = load_eval_data(recipe, "text")
    if not data.metrics or not data.probes:
        raise DataError("the peers table needs STS-B test and Banking77 (set EDGESLIM_DATA to the shared data "
                            f"folder); skipped: {'; '.join(data.skipped)}")
    teacher, teacher_dir, teacher_sha256 = teacher_contender(threads)
    calibration = list(data.calibration.texts[:400])
    isa = host_isa_config()
    export_dir, export = export_peers(teacher_dir, teacher_sha256, calibration, isa)
    contenders = [teacher, onnx_peer(export_dir, {**export, **export["exports"]["st-onnx-int8-dynamic"]}, threads),
                  openvino_peer(export_dir, {**export, **export["exports"]["st-openvino-int8-static"]}, threads),
                  model2vec_peer(distill_model2vec(teacher_dir, teacher_sha256))]
    contenders += [bundle_contender(Path(b), threads) for b in bundles]

    log_progress(f"peers: accuracy of {len(contenders)} models on {len(data.texts)} items")
    accuracy, teacher_rows = {}, None
    for c in contenders:
        embeddings = np.concatenate([c.embed(group) for group in data.item_sets if group])
        if teacher_rows is None:
            teacher_rows = agreement_rows(data, embeddings)
        same_space = embeddings.shape[1] == teacher_rows.shape[1]  # Model2Vec: PCA to its own width
        accuracy[c.name] = accuracy_of(data, embeddings, teacher_rows if same_space else
                                       agreement_rows(data, embeddings))
        if not same_space:  # no cosine to the teacher across two embedding spaces
            accuracy[c.name] = accuracy[c.name].model_copy(update={"teacher_cosine_mean": float("nan")})

    cores = pin_to_cores(threads)
    log_progress(f"peers: roofline and {rounds} interleaved rounds on core(s) {cores}")
    roofline = measure_gemm_roofline(threads)
    sentences = list(data.real_length_items[0][:320])
    timings = time_rounds(contenders, sentences, rounds, runs_per_round, warmup)

    rows = tabulate(contenders, accuracy, timings, roofline)
    profile = read_host_profile()
    from importlib.metadata import version

    return {
        "schema": "edgeslim.peers/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {**profile.to_dict(), **isa_summary(), "python": platform.python_version(), "machine": platform.machine()},
        "threads": threads, "pinned_cores": cores, "rounds": rounds, "runs_per_round": runs_per_round,
        "operating_points": [p["name"] for p in OPERATING_POINTS],
        "latency_what": "model forward + mean pooling on pre-tokenized input (tokenization excluded); each model "
                        "with its own tokenizer on the same text; real-length batches padded to their longest",
        "sentences": f"first {len(sentences)} sentences of STS-B test (real lengths)",
        "data": data.describe(),
        "peer_exports": export, "peer_isa_config": isa,
        "versions": {name: version(name) for name in ("onnxruntime", "openvino", "torch", "model2vec", "nncf")},
        "roofline_gemm_gmacs": roofline,
        "roofline_what": f"one {GEMM_SHAPE[0]}x{GEMM_SHAPE[1]} @ {GEMM_SHAPE[1]}x{GEMM_SHAPE[2]} GEMM, p50 over 200 "
                         "runs; a model's MAC/s counts its encoder layers' dense and attention MACs at 128 tokens",
        "results": rows,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundles", nargs="*", default=[], help="edgeslim bundle folders to put beside the peers")
    parser.add_argument("--out", required=True, help="folder for report.json, report.md and peers.png")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--runs-per-round", type=int, default=10)
    parser.add_argument("--force", action="store_true", help="replace a report already in --out")


def main(args: argparse.Namespace) -> int:
    """`edgeslim peers`: measure, then write report.json, report.md and peers.png into --out."""
    out = Path(args.out)
    if (out / "report.json").exists() and not args.force:
        raise OutputError(f"{out}/report.json exists; pass --force to replace it")
    for bundle in args.bundles:
        if not (Path(bundle) / "manifest.json").is_file():
            raise OutputError(f"--bundles {bundle}: not a bundle folder (no manifest.json)")
    if not 1 <= args.threads <= len(os.sched_getaffinity(0)):
        raise OutputError(f"--threads {args.threads}: this host allows 1..{len(os.sched_getaffinity(0))}")
    report = run_side_by_side([Path(b) for b in args.bundles], args.threads, args.rounds, args.runs_per_round)
    from edgeslim.outputs import write_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "report.json", json.dumps(report, indent=2, default=str))
    write_atomic(out / "report.md", render_markdown(report))
    plot(report, out)
    print(render_markdown(report))
    print(f"peers: {out}/report.json, report.md, peers.png")
    return 0
