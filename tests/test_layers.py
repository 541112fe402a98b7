"""The kit's layers import downwards only, lazily or not: no import cycle between them.

    base (errors, schema, extras, outputs, cache, budget's schema sits above the modalities)
    runtime  calibration_data  ->  modalities  ->  models  ->  compress  ->  targets
    ->  benchmarks  ->  the orchestration core (recipe, plan, evaldata, build, measure, pipeline,
    bundle, firmware, aarch64, cli)

Every `import edgeslim...` in every module counts, function-level ones too: a lazy import keeps
start-up light but still ties the layers together."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"compress": "edgeslim.compress", "runtime": "edgeslim.runtime", "targets": "edgeslim.targets",
           "benchmarks": "edgeslim.benchmarks", "calibration_data": "edgeslim.calibration_data",
           "edgeslim": "edgeslim"}
BASE = {"edgeslim", "edgeslim.errors", "edgeslim.schema", "edgeslim.extras", "edgeslim.outputs", "edgeslim.cache"}
ORDER = ["base", "runtime", "calibration_data", "modalities", "budget", "models", "compress", "targets", "benchmarks",
         "core"]


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    if module == "edgeslim.budget":
        return "budget"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("runtime", "calibration_data", "modalities", "models", "compress", "targets",
                                       "benchmarks"):
        return parts[1]
    return "core"


def imports() -> list[tuple[str, str, str]]:
    """(importing module, imported module, layer pair) for every edgeslim import in the kit."""
    found = []
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            module = ".".join([package, *path.relative_to(ROOT / folder).with_suffix("").parts]).removesuffix(
                ".__init__")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                         [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                found += [(module, name) for name in names if name.startswith("edgeslim")]
    return found


def upward(pairs) -> list[str]:
    return [f"{a} ({layer(a)}) imports {b} ({layer(b)})" for a, b in pairs
            if ORDER.index(layer(b)) > ORDER.index(layer(a))]


def test_layers_import_downwards_only():
    found = imports()
    assert len(found) > 100  # the walk saw the kit's imports
    assert not upward(found), "\n".join(sorted(upward(found)))


def test_the_check_can_fail():
    # The cycles this redesign removed, planted back: each is found.
    planted = [("edgeslim.targets.x86_cpu", "edgeslim.benchmarks.host"), ("edgeslim.compress.distill", "edgeslim.recipe"),
               ("edgeslim.models.onnx_source", "edgeslim.compress.distill")]
    assert len(upward(planted)) == 3
    assert not upward([("edgeslim.pipeline", "edgeslim.runtime.encoder")])
