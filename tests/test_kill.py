"""Kill tests: SIGKILL at any moment of a step that writes leaves the old state or the new one,
never a partial file where a user would look (hidden `.name.*` scratch may remain), and the
next run or `--resume` works. Distillation's own kill-and-resume test is in test_distill.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeslim.runtime import load

from conftest import write_recipe

KILL_RECIPE = """
name: kill
model: {source: tiny-random-bert, max_seq_length: 64}
data: {calibration: wordnet-calibration, agreement: [wordnet-heldout], agreement_samples: 50, stsb_split: null}
benchmark: {warmup: 1, min_runs: 5, real_length_sentences: 32, real_length_batches: [1]}
targets:
  - target: x86-cpu
    budget: {seq_len: 64}
    variants:
      - {name: ort-fp32, backend: onnxruntime}
      - {name: ort-int8-dynamic, backend: onnxruntime, steps: [{step: int8_dynamic}]}
      - {name: ov-int8, backend: openvino, steps: [{step: openvino_int8, calibration_samples: 16}]}
"""


def _visible(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def _kill_when(cmd: list[str], ready, timeout: float = 600) -> bool:
    """Start `cmd`, SIGKILL it as soon as `ready()` is true; False if it ended first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.01)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _check_run_folder(out: Path) -> None:
    """What a user sees in a run folder is whole: complete bundles and a valid report or none."""
    bundles = out / "bundles"
    for bundle in (bundles.iterdir() if bundles.is_dir() else []):
        if bundle.name.startswith("."):
            continue
        if bundle.suffix == ".gz":
            import tarfile

            with tarfile.open(bundle) as tar:
                assert tar.getnames()
            continue
        load(bundle)  # every file present and matching its sha256
    report = out / "report.json"
    if report.exists():
        json.loads(report.read_text())


@pytest.mark.parametrize("moment", ["during export and quantization", "during bundle publication"])
def test_sigkill_during_a_run_leaves_whole_files_and_resume_finishes(tmp_path, moment):
    recipe = write_recipe(tmp_path, KILL_RECIPE)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "edgeslim.cli", "run", str(recipe), "--out", str(out)]
    if moment == "during export and quantization":
        def ready():  # the int8 variant's scratch holds its first graph: export done, quantizing
            return any((out / ".work" / "ort-int8-dynamic").glob("*"))
    else:
        def ready():  # the first bundle has just been renamed into place; its archive is being written
            return (out / "bundles" / "ort-fp32").is_dir()
    assert _kill_when(cmd, ready), "the run ended before the moment to kill it"
    _check_run_folder(out)
    assert not (out / "report.json").exists()
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _check_run_folder(out)
    names = {p.name for p in (out / "bundles").iterdir() if not p.name.startswith(".")}
    assert {"ort-fp32", "ort-int8-dynamic", "ov-int8", "ort-fp32.tar.gz"} <= names


_WRITER = """
import sys
from edgeslim.outputs import write_atomic
path, rounds = sys.argv[1], int(sys.argv[2])
for i in range(rounds):
    write_atomic(path, str(i % 10) * 20_000_000)
    print(i, flush=True)
"""


def test_sigkill_during_report_writing_leaves_the_old_or_the_new_file(tmp_path):
    """The writer every report, manifest, page and bench result goes through (write_atomic),
    killed mid-write at several moments: the file is always one whole version."""
    target = tmp_path / "report.json"
    target.write_text("9" * 20_000_000)
    for delay in (0.05, 0.15, 0.3, 0.6):
        proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), "50"], stdout=subprocess.DEVNULL)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        text = target.read_text()
        assert len(text) == 20_000_000 and len(set(text)) == 1, f"partial file after a kill at {delay} s"
    assert [p.name for p in _visible(tmp_path)] == ["report.json"]


def test_sigkill_during_firmware_export_leaves_no_partial_folder(arm_run, tmp_path):
    """Killed when its staging folder appears (the C sources are being written), and at fixed
    moments besides: the output folder is absent or whole every time, and a rerun succeeds."""
    bundle = arm_run["out"] / "bundles" / "litert-int8-dynamic"
    expected = ["litert_int8_dynamic.c", "litert_int8_dynamic.h", "model_check.c"]
    mid_way = 0
    for trial, delay in enumerate([None, 1.0, 2.0, 3.0, 4.0]):
        out = tmp_path / f"fw{trial}"
        cmd = [sys.executable, "-m", "edgeslim.cli", "export-firmware", str(bundle), "--out", str(out)]
        if delay is None:
            killed = _kill_when(cmd, lambda: any(tmp_path.glob(f".fw{trial}.staging-*")))
        else:
            start = time.monotonic()
            killed = _kill_when(cmd, lambda: time.monotonic() - start > delay)
        if out.exists():
            assert sorted(p.name for p in out.iterdir()) == expected
        else:
            mid_way += killed
        done = subprocess.run(cmd, capture_output=True, text=True)
        if out.exists() and done.returncode == 2:  # finished before the kill: refuses to overwrite
            assert "not empty" in done.stderr
        else:
            assert done.returncode == 0, done.stderr[-2000:]
        assert sorted(p.name for p in out.iterdir()) == expected
    assert mid_way >= 1
    print(f"firmware export: {mid_way} of 5 kills landed before the output existed; every folder seen was whole")
