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
model: {source: tiny-random, family: bert, max_seq_length: 64}
data: {calibration: wordnet-calibration, agreement: [wordnet-heldout], agreement_samples: 50, stsb_split: null, probe: null}
benchmark: {warmup: 1, min_runs: 5, speedup_rounds: 3, speedup_runs_per_round: 5, real_length_sentences: 32, real_length_batches: [1]}
targets:
  - target: x86-cpu
    budget: {seq_len: 64, min_speedup: null}
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
        def ready():  # the int8 variant's quantization step has its scratch folder: export done, quantizing
            return any((out / ".work").glob("step-*-ort-int8-dynamic-*"))
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


# Runs export-firmware in a fresh interpreter that SIGKILLs itself at one exact moment: halfway
# through writing the C array, or at the rename that publishes (or swaps in) the folder.
_KILL_AT = """
import ctypes, os, signal, sys, pathlib
moment, argv = sys.argv[1], sys.argv[2:]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if moment == "writing":
    write_text = pathlib.Path.write_text
    def half_then_die(self, data, *args, **kwargs):
        if self.suffix == ".c" and self.name != "model_check.c":
            write_text(self, data[: len(data) // 2], *args, **kwargs)
            die()
        return write_text(self, data, *args, **kwargs)
    pathlib.Path.write_text = half_then_die
else:
    import edgeslim.outputs as outputs
    replace, exchange = os.replace, outputs._exchange
    def before(function):
        def wrapped(source, target):
            if pathlib.Path(target).name.startswith("fw") or pathlib.Path(source).name.startswith("fw"):
                if moment == "publishing":
                    die()
                result = function(source, target)
                if moment == "after-swap":
                    die()
                return result
            return function(source, target)
        return wrapped
    os.replace = before(replace)
    outputs._exchange = before(exchange)
from edgeslim.cli import main
sys.exit(main(argv))
"""


@pytest.mark.parametrize("moment", ["writing", "publishing", "after-swap"])
def test_sigkill_during_firmware_export_leaves_the_old_or_the_new_folder(arm_run, tmp_path, moment):
    bundle = arm_run["out"] / "bundles" / "litert-int8-dynamic"
    expected = ["litert_int8_dynamic.c", "litert_int8_dynamic.h", "model_check.c"]
    for replacing in (False, True):
        out = tmp_path / f"fw-{replacing}"
        if replacing:  # an older export is there and the user passes --force
            out.mkdir()
            (out / "old.txt").write_text("the previous export")
        argv = ["export-firmware", str(bundle), "--out", str(out)] + (["--force"] if replacing else [])
        proc = subprocess.run([sys.executable, "-c", _KILL_AT, moment, *argv], capture_output=True, text=True)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        seen = sorted(p.name for p in out.iterdir()) if out.exists() else None
        if moment == "after-swap":
            assert seen == expected  # the new folder is in place (the old one only in hidden scratch)
        elif replacing:
            assert seen == ["old.txt"]  # the old folder, untouched
        else:
            assert seen is None
        assert [p.name for p in tmp_path.iterdir() if not p.name.startswith((".", "fw-"))] == []
        done = subprocess.run([sys.executable, "-m", "edgeslim.cli", *argv[:4], "--force"], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert sorted(p.name for p in out.iterdir()) == expected
