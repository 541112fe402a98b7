"""Why OpenVINO int8 is (or is not) faster than float on this host: the same model in fp32 and
int8, compiled as the bundles are (f32 inference precision, 1 thread), timed, and OpenVINO's own
per-layer profile summed by layer type and kernel.

    python -m edgeslim.benchmarks.openvino_isa RUN/bundles/ort-fp32/model.onnx RUN/bundles/ov-int8/model.xml
    ONEDNN_MAX_CPU_ISA=AVX2 python -m edgeslim.benchmarks.openvino_isa ...   # a CPU without VNNI, on this one

The kernel names say which path oneDNN took: `brgemm_avx512_amx`, `brgemm_avx512` (VNNI) or
`jit_gemm` (its older int8 GEMM, the path without an int8 dot product).
"""

from __future__ import annotations

import argparse
import collections
import sys

import numpy as np

from edgeslim.runtime.bench import measure_latency


def profile(model_path: str, threads: int, runs: int, tokens: int) -> dict:
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
              "PERF_COUNT": "YES"}
    compiled = ov.Core().compile_model(model_path, "CPU", config)
    request = compiled.create_infer_request()
    ids = np.random.default_rng(0).integers(1000, 8000, size=(1, tokens))
    ids[0, 0] = 101
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    stats = measure_latency(lambda: request.infer(feeds), 10, runs)
    by_kind: dict = collections.defaultdict(float)
    for layer in request.get_profiling_info():  # the last call's per-layer times
        by_kind[layer.node_type, layer.exec_type] += layer.real_time.total_seconds() * 1e3
    top = sorted(by_kind.items(), key=lambda kv: -kv[1])[:4]
    return {"p50": stats["p50"], "p95": stats["p95"], "runs": stats["runs"], "layers_ms": sum(by_kind.values()),
            "top": [(f"{kind} {kernel}", round(ms, 2)) for (kind, kernel), ms in top]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fp32_model", help="the float model (the ort-fp32 bundle's model.onnx, or an IR)")
    parser.add_argument("int8_model", help="the int8 IR (the ov-int8 bundle's model.xml)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args(argv)
    from edgeslim.targets.host import isa_summary, read_host_profile

    host = read_host_profile()
    summary = isa_summary()
    print(f"host: {host.name}, ISA {', '.join(host.isa_features)}; oneDNN cap {summary['onednn_isa_cap'] or 'none'}, "
          f"int8 dot product for oneDNN: {'yes' if summary['int8_dot_product'] else 'no'}")
    print(f"batch 1, {args.tokens} tokens, {args.threads} thread(s), f32 inference precision, "
          f"10 warm-up + {args.runs} runs (measured)")
    found = {}
    for name, path in (("fp32", args.fp32_model), ("int8", args.int8_model)):
        found[name] = result = profile(path, args.threads, args.runs, args.tokens)
        print(f"  {name}: p50 {result['p50']:.2f} ms, p95 {result['p95']:.2f} ms; per-layer profile "
              f"{result['layers_ms']:.1f} ms, most: " + "; ".join(f"{kind} {ms} ms" for kind, ms in result["top"]))
    print(f"  int8 / fp32 p50: {found['int8']['p50'] / found['fp32']['p50']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
