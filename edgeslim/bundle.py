"""Writing bundles: staged in a hidden folder, published with one rename, then archived.

A reader sees either no bundle or a complete one; a crash leaves only a `.staging-*` folder
that the next run of the same variant removes.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from edgeslim import __version__
from edgeslim.errors import ExportError
from edgeslim.outputs import publish_dir, write_atomic
from edgeslim.runtime.bundle import BUNDLE_FORMAT, MANIFEST_NAME, manifest_digest, sha256_file
from edgeslim.runtime.manifest import parse_manifest

MODEL_CARD = "MODEL_CARD.md"


def staging_dir(bundles_root: Path, name: str) -> Path:
    path = bundles_root / f".staging-{name}"  # the kit's own scratch: a leftover is a crashed build
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def bundle_files(staging: Path) -> list[str]:
    """Every file in the folder, subfolders included, as relative POSIX names (the manifest's own
    file and hidden scratch excluded). A bundle holds regular files only: links are refused."""
    names = []
    for path in sorted(staging.rglob("*")):
        relative = path.relative_to(staging)
        if relative.as_posix() == MANIFEST_NAME or any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_symlink():
            raise ExportError(f"{path} is a symbolic link; a bundle holds regular files only")
        if path.is_file():
            names.append(relative.as_posix())
    return names


def complete_manifest(staging: Path, manifest: dict) -> dict:
    """The manifest with the sha256 and size of every file now in the folder and its own digest,
    checked against the schema the runtime parses (nothing is written)."""
    files = bundle_files(staging)
    manifest = {"format": BUNDLE_FORMAT, "created_by": f"edgeslim {__version__}", **manifest,
                "files": {name: sha256_file(staging / name) for name in files},
                "file_sizes": {name: (staging / name).stat().st_size for name in files}}
    manifest.pop("manifest_sha256", None)
    manifest = json.loads(json.dumps(manifest))  # what a reader will see (tuples become lists)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    parse_manifest(manifest, f"the manifest written for {staging.name}")
    return manifest


def write_manifest(staging: Path, manifest: dict) -> dict:
    """Complete the manifest (`complete_manifest`) and write it into the folder."""
    manifest = complete_manifest(staging, manifest)
    write_atomic(staging / MANIFEST_NAME, json.dumps(manifest, indent=2))
    return manifest


def publish(staging: Path, final: Path) -> Path:
    """Move a finished staging folder to its final name inside the run's bundles folder (one of
    an interrupted run's is replaced: the run owns that folder) and write `<final>.tar.gz`."""
    publish_dir(staging, final, force=True)
    archive = final.with_name(final.name + ".tar.gz")
    fd, tmp = tempfile.mkstemp(prefix=f".{archive.name}.", suffix=".tmp", dir=archive.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(final, arcname=final.name)
        os.replace(tmp, archive)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return archive


def render_model_card(manifest: dict, result: dict | None) -> str:
    from edgeslim.benchmarks.report import Result
    from edgeslim.modalities import get_modality

    modality = get_modality(manifest["modality"])
    lines = [
        f"# {manifest['name']} ({manifest['target']}, {manifest['backend']})",
        "",
        f"Compressed from **{manifest['source_model']['name']}** (weights sha256 "
        f"`{manifest['source_model']['weights_sha256'][:16]}...`) by edgeslim {__version__}.",
        "",
        "## Use",
        "",
        "```python",
        "from edgeslim.runtime import load",
        "encoder = load('path/to/this/folder')",
        modality.card_usage(manifest),
        "```",
        "",
        modality.card_input(manifest) + f" Output: {manifest['embedding_dim']}-d "
        f"{manifest['pooling']}-pooled embedding{', L2-normalised' if manifest['normalize'] else ''}.",
        "",
        "## What was done",
        "",
    ]
    for step in manifest["steps"]:
        details = ", ".join(f"{k}={v}" for k, v in step.items() if k not in ("step", "config") and not isinstance(v, (list, dict)))
        lines.append(f"- `{step['step']}`: {details}")
    calibration = manifest.get("calibration") or {}
    lines += ["", f"Calibration data: {calibration.get('corpus')} ({calibration.get('sentences')} {modality.noun}, "
                  f"items sha256 `{str(calibration.get('sha256'))[:16]}...`).", ""]
    if result:
        r = Result.model_validate(result)
        lat, acc = r.latency_ms, r.accuracy
        point = modality.runtime.operating_point(lat.seq_len)
        lines += [
            "## Measured",
            "",
            f"- latency ({lat.kind}, {lat.where}): p50 {lat.p50:.2f} ms, p95 {lat.p95:.2f} ms, "
            f"p99 {lat.p99:.2f} ms at batch {lat.batch}, {point}, {lat.threads} thread(s), {lat.runs} runs",
            (f"- {r.speedup_vs_baseline:.2f}x the teacher's p50 in the same run"
             if r.speedup_vs_baseline is not None else "- no speedup figure: the latency is an estimate "
             "for another device, the teacher was measured on this host"),
            f"- size {r.size_mb:.1f} MB; peak RSS {r.peak_rss_mb:.0f} MB",
            f"- cosine to the teacher on {acc.eval_set} ({acc.eval_sentences} items, disjoint from "
            f"calibration: {acc.disjoint_from_calibration}): mean {acc.teacher_cosine_mean:.4f}, "
            f"min {acc.teacher_cosine_min:.4f}",
            *[f"- {m.label}: " + (f"{m.value:.2f}" if m.value is not None else "not measured") for m in acc.metrics],
            *[f"- probe {p.train} -> {p.test} ({p.label}): kNN top-1 {p.knn_top1:.2f}"
              + (f" ({p.knn_top1_drop:.2f} points below the teacher)" if p.knn_top1_drop is not None else "")
              + f", linear probe top-1 {p.linear_probe_top1:.2f}" for p in acc.probes],
            *(["- probe: not measured"] if not acc.probes else []),
            "",
        ]
    lines += [
        "## Limits",
        "",
        modality.card_limits(manifest) + " Figures hold for the hardware named above; re-measure on the device.",
        f"Source model license: {manifest['source_model'].get('license', 'unknown')}.",
        "",
    ]
    return "\n".join(lines)
