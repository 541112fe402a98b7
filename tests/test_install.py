"""The install: extras that name what they serve, locks in step with pyproject.toml, and a step
whose extra is missing stopping before any model loads with the extra to install.

`.ci/lock --check` (run by .ci/run) re-resolves the locks; these tests are the offline part."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from edgeslim.compress.configs import StepBase
from edgeslim.extras import EXTRAS
from edgeslim.runtime.backends import BACKEND_EXTRAS, BACKEND_MODULES, device_lock
from edgeslim.targets import TARGETS

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
OPTIONAL = PYPROJECT["project"]["optional-dependencies"]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pins(lock: Path) -> dict[str, list[str]]:
    pins: dict[str, list[str]] = {}
    for line in lock.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line):
            pins.setdefault(match[1].lower().replace("_", "-"), []).append(match[2])
    return pins


def test_extras_table_matches_pyproject():
    assert set(EXTRAS) == set(OPTIONAL) - {"all", "dev"}
    assert set(OPTIONAL["all"][0].split("[")[1].rstrip("]").split(",")) == set(EXTRAS)


def test_every_step_and_target_names_a_known_extra():
    steps = StepBase.__subclasses__()
    assert len(steps) >= 13
    for step in steps:
        assert step.extra in EXTRAS, step
    for target in TARGETS.values():
        assert set(target.extras) <= set(EXTRAS), target.name


@pytest.mark.parametrize("lock", ["requirements.lock", *[f"runtime/locks/{e}.txt" for e in ("runtime", "litert",
                                                                                             "openvino")]])
def test_lock_pins_every_dependency_with_hashes(lock):
    path = REPO / lock
    text = path.read_text()
    pins = _pins(path)
    assert pins, lock
    # pip installs in hash-checking mode: every pinned requirement needs its sha256
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
        if "==" in block.split("\n")[0]:
            assert "--hash=sha256:" in block, block.split("\n")[0]


def test_full_lock_covers_every_extra_and_keeps_torch_on_the_cpu_build():
    pins = _pins(REPO / "requirements.lock")
    wanted = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    for extra, requirements in OPTIONAL.items():
        wanted |= {_name(r) for r in requirements if not r.startswith("edgeslim")}
    assert wanted - set(pins) == set()
    assert pins["torch"] == ["2.13.0+cpu"]
    assert not [name for name in pins if name.startswith("nvidia-")]
    assert "setuptools" in pins  # the editable install runs with --no-build-isolation


@pytest.mark.parametrize("backend", sorted(BACKEND_MODULES))
def test_device_lock_of_each_backend_is_lean(backend):
    pins = _pins(device_lock(backend))
    assert {"numpy", "tokenizers", "pydantic", "pyyaml"} <= set(pins)
    heavy = {"torch", "transformers", "jax", "jaxlib", "tensorflow", "litert-torch", "onnx"}
    assert heavy & set(pins) == set(), backend
    assert BACKEND_EXTRAS[backend] in OPTIONAL


def _hide(modules: tuple[str, ...]) -> str:
    """Python source that makes `modules` unimportable in a fresh interpreter, as when the extra
    that provides them was not installed."""
    return textwrap.dedent(f"""
        import importlib.abc, sys
        class Hide(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {modules!r}:
                    raise ModuleNotFoundError(name)
                return None
        sys.meta_path.insert(0, Hide())
        import importlib.util
        _find = importlib.util.find_spec
        def find_spec(name, package=None):
            return None if name.split(".")[0] in {modules!r} else _find(name, package)
        importlib.util.find_spec = find_spec
    """)


def test_step_without_its_extra_names_the_extra_before_running(tmp_path):
    script = _hide(("litert_torch", "ai_edge_quantizer")) + textwrap.dedent("""
        from pathlib import Path
        from edgeslim.compress import LiteRtConvertConfig, OnnxModel, StepContext, apply_step
        from edgeslim.errors import MissingExtraError
        try:
            apply_step(OnnxModel(Path("missing.onnx")), LiteRtConvertConfig(), None)
        except MissingExtraError as exc:
            print("MissingExtraError:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert "MissingExtraError: step 'litert_convert' needs the extra [litert-export]" in out.stdout, out.stderr
    assert "litert_torch" in out.stdout and "pip install" in out.stdout


def test_recipe_needing_a_missing_extra_fails_before_any_model_loads(tmp_path):
    script = _hide(("ethosu",)) + textwrap.dedent("""
        import sys
        from edgeslim.cli import main
        code = main(["recipe", "check", "arm"])
        print("check exit", code)
        code = main(["run", "arm", "--out", sys.argv[1]])
        print("run exit", code)
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "out")], capture_output=True, text=True,
                         cwd=tmp_path)
    assert "needs extras: compress, ethos-u, litert-export" in out.stdout, out.stdout + out.stderr
    assert "NOT installed here: ethos-u" in out.stdout
    assert "check exit 0" in out.stdout
    assert "MissingExtraError: recipe 'arm' needs the extra [ethos-u] (missing: ethosu)" in out.stderr
    assert "run exit 1" in out.stdout and "teacher" not in out.stdout  # stopped before the model loaded
    assert not (tmp_path / "out").exists()
