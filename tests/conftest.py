"""Two tiers: fast (tiny random models, the default) and real (the packaged MiniLM, CI-sized
image and audio teachers).

    pytest                # fast tier
    pytest --tier all     # both tiers: what the README and CI run
    pytest --tier real    # real tier only

Tests of the other tier are deselected (pytest reports how many), never silently skipped.
The suite runs on two pytest-xdist workers (pyproject's addopts), each file on one worker; the
runs that several files use (`tiny_run`, `image_run`, ...) are built once per test session and
shared by both workers (`shared`: a file lock and a JSON record of the result).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeslim.benchmarks.loopback_sshd import free_port, sshd_available, start_loopback_sshd  # noqa: F401
from edgeslim.calibration_data import corpus_available


def pytest_addoption(parser):
    parser.addoption("--tier", choices=("fast", "real", "all"), default="fast",
                     help="fast: tiny random models (default); real: the packaged MiniLM; all: both")


# Hypothesis examples per property test: fewer in the fast tier, enough in the real tier (and
# `--tier all`, what CI runs) for >= 10,000 across tests/test_properties.py.
PROPERTY_EXAMPLES = {"fast": 60, "real": 2600, "all": 2600}
PROPERTY_COUNTS: collections.Counter = collections.Counter()  # examples run, per property


def pytest_configure(config):
    from hypothesis import HealthCheck, settings

    settings.register_profile("edgeslim", max_examples=PROPERTY_EXAMPLES[config.getoption("--tier")], deadline=None,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
                              derandomize=True)
    settings.load_profile("edgeslim")


def pytest_sessionfinish(session):
    """An xdist worker hands its Hypothesis example counts to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["property_counts"] = dict(PROPERTY_COUNTS)


def pytest_testnodedown(node, error):
    PROPERTY_COUNTS.update(getattr(node, "workeroutput", {}).get("property_counts", {}))


def pytest_terminal_summary(terminalreporter):
    if PROPERTY_COUNTS:
        counts = ", ".join(f"{name} {n}" for name, n in sorted(PROPERTY_COUNTS.items()))
        terminalreporter.write_line(f"hypothesis examples: {counts}; total {sum(PROPERTY_COUNTS.values())}")


def pytest_collection_modifyitems(config, items):
    tier = config.getoption("--tier")
    if tier == "all":
        return
    keep, drop = [], []
    for item in items:
        if item.get_closest_marker("property") is not None:  # every tier, with the tier's example count
            keep.append(item)
            continue
        # aarch64 (qemu-user) and browser (headless Chromium) tests need system packages: real tier.
        is_real = any(item.get_closest_marker(m) is not None for m in ("real", "aarch64", "browser"))
        (keep if is_real == (tier == "real") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


needs_stsb = pytest.mark.skipif(
    not corpus_available("stsb-test"),
    reason="STS-B test not found: set EDGESLIM_DATA to the shared data folder",
)

TINY_RECIPE = """
name: tiny
model: {source: tiny-random, family: bert, max_seq_length: 64}
data: {calibration: wordnet-calibration, agreement: [wordnet-heldout], agreement_samples: 200, stsb_split: null, probe: {train_samples: 500, test_samples: 300}}
benchmark: {warmup: 3, min_runs: 20, speedup_rounds: 3, speedup_runs_per_round: 5}
targets:
  - target: x86-cpu
    required: [ort-int8-dynamic]
    budget: {seq_len: 64, p95_ms: 1000, min_speedup: null, max_size_mb: 5, max_peak_rss_mb: 2000, min_teacher_cosine: 0.95}
    variants:
      - {name: ort-fp32, backend: onnxruntime}
      - {name: ort-int8-dynamic, backend: onnxruntime, steps: [{step: int8_dynamic}]}
      - {name: ort-int8-static, backend: onnxruntime, steps: [{step: int8_static, calibration_samples: 32, sensitivity_samples: 16}]}
      - {name: ov-int8, backend: openvino, steps: [{step: openvino_int8, calibration_samples: 32}]}
      - name: student-int8
        backend: onnxruntime
        steps:
          - {step: distill, keep_layers: [0], corpus: [wordnet], sentences: 400, batch_size: 16, epochs: 1}
          - {step: int8_dynamic}
      - name: small-vocab-student
        backend: onnxruntime
        steps:
          - {step: vocab_prune, corpus: [wordnet-calibration], max_tokens: 200}
          - {step: distill, keep_layers: [0], corpus: [wordnet], sentences: 400, batch_size: 16, epochs: 1}
          - {step: int8_dynamic}
"""


def encode_in_fresh_process(bundle) -> str:
    """Load `bundle` and encode one sentence in a new interpreter; prints the vector's shape, the
    providers and the heavy frameworks that got imported (the runtime must import none)."""
    import subprocess
    import sys

    script = (
        "import sys; from edgeslim.runtime import load; "
        f"e = load({str(bundle)!r}); v = e.encode(['a small test']); "
        "heavy = [m for m in ('torch', 'transformers', 'tensorflow', 'jax') if m in sys.modules]; "
        "print(v.shape, e.providers, heavy)"
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout


def compile_firmware_check(folder: Path, symbol: str, werror: bool = True) -> Path:
    """Build export-firmware's model_check.c with the generated array; returns the executable."""
    import shutil
    import subprocess

    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc, "a C compiler is part of the dev set-up (gcc)"
    exe = folder / "model_check"
    flags = ["-O2", "-Wall", "-Werror"] if werror else ["-O2"]
    subprocess.run([cc, *flags, f"-DMODEL_SYMBOL={symbol}", f'-DMODEL_HEADER="{symbol}.h"',
                    str(folder / "model_check.c"), str(folder / f"{symbol}.c"), "-o", str(exe)], check=True, cwd=folder)
    return exe


def _session_dir(tmp_path_factory) -> Path:
    """A folder of this test session that every xdist worker sees (the workers' common parent)."""
    import os

    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared(tmp_path_factory, name: str, build) -> dict:
    """`build()` once per test session across xdist workers: the first worker to ask builds (the
    others wait on a file lock) and records the result; later callers read the record. The result
    is a dict of JSON values and Paths."""
    from filelock import FileLock

    root = _session_dir(tmp_path_factory)
    record = root / f"shared-{name}.json"
    with FileLock(str(root / f"shared-{name}.lock")):
        if record.is_file():
            stored = json.loads(record.read_text())
            return {key: Path(value["path"]) if isinstance(value, dict) and set(value) == {"path"} else value
                    for key, value in stored.items()}
        result = build()
        record.write_text(json.dumps({key: {"path": str(value)} if isinstance(value, Path) else value
                                      for key, value in result.items()}))
        return result


def run_recipe_cli(tmp_path_factory, name: str, recipe_text: str) -> dict:
    """`edgeslim run` on a recipe text in a fresh folder, once per test session (`shared`): exit
    code, output folder, report."""
    from edgeslim.cli import main

    def build():
        folder = _session_dir(tmp_path_factory) / name
        folder.mkdir()
        out = folder / "out"
        code = main(["run", str(write_recipe(folder, recipe_text)), "--out", str(out)])
        return {"exit_code": code, "out": out, "report": json.loads((out / "report.json").read_text())}

    return shared(tmp_path_factory, name, build)


def write_recipe(folder: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="session", autouse=True)
def private_edgeslim_cache(tmp_path_factory):
    """Distillation checkpoints and teacher embeddings go to a per-session folder."""
    import os

    os.environ["EDGESLIM_CACHE"] = str(tmp_path_factory.mktemp("edgeslim-cache"))


@pytest.fixture(scope="session")
def tiny_model():
    from edgeslim.models import load_encoder
    from edgeslim.recipe import ModelSpec

    return load_encoder(ModelSpec(source="tiny-random", family="bert", max_seq_length=64))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole pipeline on the tiny model, once per session, through the CLI."""
    run = run_recipe_cli(tmp_path_factory, "tiny-run", TINY_RECIPE)
    return {**run, "recipe": run["out"].parent / "recipe.yaml"}


@pytest.fixture
def tiny_bundle(tiny_run, tmp_path):
    """A private copy of the tiny int8 bundle that a test may damage."""
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_run["out"] / "bundles" / "ort-int8-dynamic", copy)
    return copy


@pytest.fixture(scope="session")
def real_run(tmp_path_factory):
    """The packaged default recipe on all-MiniLM-L6-v2, once per session."""
    from edgeslim.benchmarks.report import Report
    from edgeslim.pipeline import run_recipe
    from edgeslim.recipe import load_recipe

    def build():
        recipe, path = load_recipe("default")
        out = _session_dir(tmp_path_factory) / "real-run" / "out"
        run_recipe(recipe, path, out)
        return {"out": out}

    out = shared(tmp_path_factory, "real-run", build)["out"]
    return {"report": Report.model_validate_json((out / "report.json").read_text()), "out": out}


ETHOS_RECIPE = """
name: tiny-ethos
model: {source: tiny-random, family: bert, max_seq_length: 64}
data: {calibration: wordnet-calibration, agreement: [wordnet-heldout], agreement_samples: 100, stsb_split: null, probe: null}
benchmark: {warmup: 2, min_runs: 10, speedup_rounds: 3, speedup_runs_per_round: 5}
targets:
  - target: ethos-u65-256
    required: [npu-int16-mixed]
    budget: {seq_len: 64, min_teacher_cosine: 0.97}
    variants:
      - {name: npu-int16-mixed, backend: litert-body, steps: [{step: npu_body_quantize, calibration_samples: 32}]}
  - target: ethos-u85-256
    budget: {seq_len: 64, min_teacher_cosine: 0.9}
    variants:
      - {name: u85-int8, backend: litert-body, steps: [{step: npu_body_quantize, activations: int8, calibration_samples: 32}]}
"""


@pytest.fixture(scope="session")
def ethos_run(tmp_path_factory):
    """The tiny model through the Ethos-U targets (integer body, Vela), once per session."""
    return run_recipe_cli(tmp_path_factory, "ethos-run", ETHOS_RECIPE)


NPU_JETSON_RECIPE = """
name: tiny-npu-jetson
model: {source: tiny-random, family: bert, max_seq_length: 64}
data: {calibration: wordnet-calibration, agreement: [wordnet-heldout], agreement_samples: 100, stsb_split: null, probe: null}
benchmark: {warmup: 2, min_runs: 10, speedup_rounds: 3, speedup_runs_per_round: 5}
targets:
  - target: intel-npu
    budget: {seq_len: 64, min_teacher_cosine: 0.95}
    variants:
      - name: npu-int8
        backend: openvino
        steps:
          - {step: openvino_int8, target_device: NPU, calibration_samples: 16}
          - {step: openvino_static_shapes, seq_lengths: [16, 32, 64]}
  - target: jetson-orin-nano
    budget: {seq_len: 64, min_teacher_cosine: 0.95}
    variants:
      - {name: trt-fp16, backend: onnxruntime, steps: [{step: onnx_fp16}]}
      - name: trt-int8-qdq
        backend: onnxruntime
        steps:
          - {step: int8_static, activation_type: int8, symmetric_activations: true, calibration_samples: 16,
             sensitivity_samples: 16, cosine_floor: 0.95}
"""


@pytest.fixture(scope="session")
def npu_jetson_run(tmp_path_factory):
    """The tiny model through the Intel NPU and Jetson targets, once per session."""
    return run_recipe_cli(tmp_path_factory, "npu-jetson-run", NPU_JETSON_RECIPE)


ARM_RECIPE = """
name: tiny-arm
model: {source: tiny-random, family: bert, max_seq_length: 64}
data: {calibration: wordnet-calibration, agreement: [wordnet-heldout], agreement_samples: 100, stsb_split: null, probe: null}
benchmark: {warmup: 2, min_runs: 10, speedup_rounds: 3, speedup_runs_per_round: 5}
targets:
  - target: rpi5
    required: [litert-int8-dynamic]
    budget: {seq_len: 64, max_size_mb: 5, max_peak_rss_mb: 2000, min_teacher_cosine: 0.95}
    variants:
      - {name: litert-fp32, backend: litert, steps: [{step: litert_convert}]}
      - {name: litert-int8-dynamic, backend: litert, steps: [{step: litert_convert}, {step: litert_int8_dynamic}]}
      - {name: ort-fp32, backend: onnxruntime}
"""


@pytest.fixture(scope="session")
def arm_run(tmp_path_factory):
    return run_recipe_cli(tmp_path_factory, "arm-run", ARM_RECIPE)


STATIC_RECIPE = """
name: tiny-static
model: {source: tiny-random, family: bert, max_seq_length: 64}
data: {calibration: wordnet-calibration, agreement: [wordnet-heldout], agreement_samples: 100, stsb_split: null, probe: null}
benchmark: {warmup: 2, min_runs: 10, speedup_rounds: 3, speedup_runs_per_round: 5, real_length_batches: [1]}
targets:
  - target: x86-cpu
    budget: {seq_len: 64, min_speedup: null, min_teacher_cosine: 0.5}
    variants:
      - {name: static, backend: static, steps: [{step: static_embeddings}]}
"""


@pytest.fixture(scope="session")
def static_run(tmp_path_factory):
    from edgeslim.pipeline import run_recipe
    from edgeslim.recipe import load_recipe

    folder = tmp_path_factory.mktemp("static")
    recipe, path = load_recipe(write_recipe(folder, STATIC_RECIPE))
    report = run_recipe(recipe, path, folder / "out", log=lambda _: None)
    return report, folder / "out" / "bundles" / "static"


# -- a real OpenSSH server on loopback (deploy, device status, bench --on) --------------------

needs_sshd = pytest.mark.skipif(not sshd_available(),
                                reason="needs OpenSSH (apt install openssh-server openssh-client; .ci/run does)")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on 127.0.0.1 (benchmarks/loopback_sshd.py): key-only login as this user,
    throwaway keys; stopped after the module."""
    server = start_loopback_sshd(tmp_path_factory.mktemp("sshd"))
    yield {"port": server.port, "identity": server.identity, "known_hosts": server.known_hosts, "user": server.user}
    server.stop()


def drift_scores(run: dict, variant: str, shift_names: list[str], count: int = 200) -> dict:
    """Drift scores of a run's bundle on an in-domain sample outside its drift reference (the
    agreement corpus's rest, else calibration items) and on the named shifted sets of its
    modality (Modality.drift_shifts)."""
    from edgeslim.evaldata import load_eval_data
    from edgeslim.recipe import load_recipe
    from edgeslim.runtime import load

    encoder = load(run["out"] / "bundles" / variant)
    data = load_eval_data(load_recipe(run["out"].parent / "recipe.yaml")[0], encoder.modality)
    in_reference = set(data.drift_items)
    rest = [t for t in data.agreement.texts if t not in in_reference and t not in set(data.calibration.texts)]
    pool = rest if len(rest) >= count else list(data.calibration.texts)
    rng = np.random.default_rng(0)  # corpora are ordered by class: a slice would be one class
    in_domain = [pool[i] for i in rng.permutation(len(pool))[:count]]
    shifts = data.modality.drift_shifts([data.drift_items[i] for i in rng.permutation(len(data.drift_items))[:count]])
    scores = {"in-domain": encoder.score_drift(in_domain)}
    scores.update({name: encoder.score_drift(shifts[name]) for name in shift_names})
    return scores


@pytest.fixture(scope="session")
def device_venv(tmp_path_factory) -> Path:
    """As on a Raspberry Pi: a venv with the runtime extra's hashed lock and a wheel of the kit
    installed with no index (no torch). Its python, built once per session."""
    import sys
    import venv

    repo = Path(__file__).resolve().parents[1]

    def build():
        folder = _session_dir(tmp_path_factory) / "device-venv"
        dist = folder / "dist"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                        str(dist), str(repo)], check=True, cwd=folder.parent)
        wheel = next(dist.glob("edgeslim-*.whl"))
        venv.create(folder / "venv", with_pip=True)
        python = folder / "venv" / "bin" / "python"
        pip = [python, "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--require-hashes", "-r", str(repo / "runtime" / "locks" / "runtime.txt")], check=True,
                       cwd=folder)
        subprocess.run([*pip, "--no-index", f"{wheel}[runtime]"], check=True, cwd=folder)
        return {"python": python, "wheel": wheel}

    return shared(tmp_path_factory, "device-venv", build)
