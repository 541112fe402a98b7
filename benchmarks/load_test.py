"""Load test of the runtime: N threads in each of M processes encode at once, for a bounded time,
on one shared Encoder per process. Every result is compared with the serial result of the same
batch (same batch composition, so dynamic int8 must match exactly too); throughput and latency
percentiles are printed, never asserted.

    python -m edgeslim.benchmarks.load_test BUNDLE --threads 4 --processes 2 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import numpy as np

from edgeslim.errors import InputError

# Real sentences of varied length; batch i is a fixed slice, so its serial result is known.
_WORDS = ("the device encodes a sentence while other threads send theirs and every answer must be the one a "
          "single caller gets for the same batch of text").split()


def batches(count: int = 16) -> list[list[str]]:
    return [[" ".join(_WORDS[(i + j) % len(_WORDS):][: 3 + (i * 5 + j) % 20]) or "word" for j in range(1 + i % 4)]
            for i in range(count)]


def _worker(bundle: str, threads: int, seconds: float, encoder_threads: int, queue) -> None:
    from edgeslim.runtime import load

    encoder = load(bundle, threads=encoder_threads)
    work = batches()
    serial = [encoder.encode(batch) for batch in work]
    lock = threading.Lock()
    latencies: list[float] = []
    mismatches = errors = 0
    deadline = time.perf_counter() + seconds

    def loop(offset: int) -> None:
        nonlocal mismatches, errors
        index = offset
        while time.perf_counter() < deadline:
            batch = index % len(work)
            start = time.perf_counter()
            try:
                out = encoder.encode(work[batch])
            except Exception:  # counted, reported: a load test must not stop at the first failure
                with lock:
                    errors += 1
                continue
            elapsed = (time.perf_counter() - start) * 1000
            same = np.array_equal(out, serial[batch])
            with lock:
                latencies.append(elapsed)
                mismatches += not same
            index += 1

    pool = [threading.Thread(target=loop, args=(i * 3,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    queue.put({"pid": os.getpid(), "calls": len(latencies), "mismatches": mismatches, "errors": errors,
               "latencies": latencies, "texts": sum(len(work[i % len(work)]) for i in range(len(latencies)))})


def load_test(bundle: Path, threads: int = 4, processes: int = 2, seconds: float = 10.0,
              encoder_threads: int = 1) -> dict:
    """Run the load; return calls, texts/s, p50/p90/p99 per call, mismatches and errors."""
    for flag, value in (("--threads", threads), ("--processes", processes), ("--encoder-threads", encoder_threads)):
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{flag} must be an integer >= 1, got {value!r}")
    if not 0 < seconds <= 3600:
        raise InputError(f"--seconds must be in (0, 3600], got {seconds!r}")
    context = multiprocessing.get_context("spawn")  # no forked copies of backend threads
    queue = context.Queue()
    workers = [context.Process(target=_worker, args=(str(bundle), threads, seconds, encoder_threads, queue))
               for _ in range(processes)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=seconds + 300) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    wall = time.perf_counter() - started
    latencies = np.array([x for r in results for x in r["latencies"]])
    calls = int(latencies.size)
    return {
        "bundle": str(bundle), "processes": processes, "threads_per_process": threads,
        "encoder_threads": encoder_threads, "seconds": seconds, "calls": calls,
        "texts_per_s": round(sum(r["texts"] for r in results) / seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 3) if calls else None,
        "p90_ms": round(float(np.percentile(latencies, 90)), 3) if calls else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 3) if calls else None,
        "mismatches": sum(r["mismatches"] for r in results), "errors": sum(r["errors"] for r in results),
        "wall_s": round(wall, 2), "cpu_count": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--threads", type=int, default=4, help="threads per process sharing one Encoder")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--encoder-threads", type=int, default=1, help="intra-op threads of each backend")
    args = parser.parse_args(argv)
    result = load_test(Path(args.bundle), args.threads, args.processes, args.seconds, args.encoder_threads)
    print(f"{result['bundle']}: {result['processes']} process(es) x {result['threads_per_process']} thread(s), "
          f"{result['encoder_threads']} backend thread(s) each, {result['seconds']} s on {result['cpu_count']} CPUs "
          f"(measured here): {result['calls']} calls, {result['texts_per_s']} texts/s, per call p50 "
          f"{result['p50_ms']} ms, p90 {result['p90_ms']} ms, p99 {result['p99_ms']} ms; "
          f"{result['mismatches']} results differ from serial, {result['errors']} errors")
    print(json.dumps(result))
    return 0 if result["mismatches"] == 0 and result["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
