"""The health check a device runs after a deploy: the bundle encodes its modality's
health-check items, and each embedding must reach `min_cosine` against the reference the kit
stored in the manifest when it built the bundle (the same bundle, run on the build host).

A bundle without a reference (written before bundle/3) gets the basic check only: a finite
vector of the manifest's size, unit length when the bundle normalises.
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_health", "reference"]

DEFAULT_MIN_COSINE = 0.95


def reference(encoder, min_cosine: float | None = None) -> dict:
    """The manifest's `health_check` entry for this encoder's bundle. `min_cosine`: the floor a
    device must reach (default: the budget's teacher-cosine floor, else 0.95); int8 kernels
    differ between CPUs, so a device is held to the accuracy floor, not to identical numbers."""
    floor = min_cosine or (encoder.manifest.budget or {}).get("min_teacher_cosine") or DEFAULT_MIN_COSINE
    items = encoder.modality_plugin.health_items(encoder.preprocessor)
    vectors = encoder.encode_items(items)
    return {"items": len(items), "embeddings": [[round(float(v), 6) for v in row] for row in vectors],
            "min_cosine": float(floor)}


def check_health(encoder) -> dict:
    """`ok` and what was found: per-item cosine to the reference, or the basic check's problems."""
    items = encoder.modality_plugin.health_items(encoder.preprocessor)
    vectors = encoder.encode_items(items)
    problems = []
    if vectors.shape != (len(items), encoder.dim):
        problems.append(f"shape {vectors.shape}, expected ({len(items)}, {encoder.dim})")
    elif not np.isfinite(vectors).all():
        problems.append("non-finite values")
    result: dict = {}
    reference_entry = encoder.manifest.health_check
    if not problems and reference_entry is not None:
        expected = np.asarray(reference_entry.embeddings, dtype=np.float64)
        got = vectors.astype(np.float64)
        cosines = (got * expected).sum(1) / np.clip(
            np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1), 1e-12, None)
        result.update({"cosines": [round(float(c), 6) for c in cosines], "min_cosine": reference_entry.min_cosine})
        if cosines.min() < reference_entry.min_cosine:
            problems.append(f"cosine to the build's reference {cosines.min():.4f} on item {int(cosines.argmin())}, "
                            f"below the bundle's floor {reference_entry.min_cosine}")
    elif not problems:
        norms = np.linalg.norm(vectors, axis=1)
        if encoder.manifest.normalize and np.abs(norms - 1).max() > 1e-3:
            problems.append(f"norm {norms.min():.4f}, a normalised bundle gives 1")
        result["reference"] = "none in the manifest (a bundle written before edgeslim.bundle/3): basic check only"
    return {"ok": not problems, **result, **({"error": "health check: " + "; ".join(problems)} if problems else {})}
