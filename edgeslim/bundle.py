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


def write_manifest(staging: Path, manifest: dict) -> dict:
    """Hash every file in the folder into the manifest, check it against the schema the runtime
    parses, and write it."""
    files = bundle_files(staging)
    manifest = {"format": BUNDLE_FORMAT, "created_by": f"edgeslim {__version__}", **manifest,
                "files": {name: sha256_file(staging / name) for name in files},
                "file_sizes": {name: (staging / name).stat().st_size for name in files}}
    manifest = json.loads(json.dumps(manifest))  # what a reader will see (tuples become lists)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    parse_manifest(manifest, f"the manifest written for {staging.name}")
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
        "vectors = encoder.encode(['a sentence'])" if manifest.get("modality", "text") == "text"
        else "vectors = encoder.encode_images(['photo.jpg'])  # paths, PIL images or HxWxC uint8 arrays",
        "```",
        "",
        (f"Input: text, tokenized by `tokenizer.json`, at most {manifest.get('max_seq_length')} tokens "
         f"(longer texts are {manifest.get('truncation')}d and counted)." if manifest.get("modality", "text") == "text"
         else f"Input: RGB images, preprocessed on the device as the manifest says: {manifest.get('preprocessing')}.")
        + f" Output: {manifest['embedding_dim']}-d "
        f"{manifest['pooling']}-pooled embedding{', L2-normalised' if manifest['normalize'] else ''}.",
        "",
        "## What was done",
        "",
    ]
    for step in manifest["steps"]:
        details = ", ".join(f"{k}={v}" for k, v in step.items() if k not in ("step", "config") and not isinstance(v, (list, dict)))
        lines.append(f"- `{step['step']}`: {details}")
    calibration = manifest.get("calibration") or {}
    lines += ["", f"Calibration data: {calibration.get('corpus')} ({calibration.get('sentences')} sentences, "
                  f"texts sha256 `{str(calibration.get('sha256'))[:16]}...`).", ""]
    if result:
        lat, acc = result["latency_ms"], result["accuracy"]
        lines += [
            "## Measured",
            "",
            f"- latency ({lat['kind']}, {lat['where']}): p50 {lat['p50']:.2f} ms, p95 {lat['p95']:.2f} ms, "
            f"p99 {lat['p99']:.2f} ms at batch {lat['batch']}, "
            f"{str(lat['seq_len']) + ' tokens' if lat['seq_len'] else 'one image'}, {lat['threads']} thread(s), "
            f"{lat['runs']} runs",
            (f"- {result['speedup_vs_baseline']:.2f}x the PyTorch fp32 teacher's p50 in the same run"
             if result["speedup_vs_baseline"] is not None else "- no speedup figure: the latency is an estimate "
             "for another device, the teacher was measured on this host"),
            f"- size {result['size_mb']:.1f} MB; peak RSS {result['peak_rss_mb']:.0f} MB",
            f"- cosine to the teacher on {acc['eval_set']} ({acc['eval_sentences']} items, disjoint from "
            f"calibration: {acc['disjoint_from_calibration']}): mean {acc['teacher_cosine_mean']:.4f}, "
            f"min {acc['teacher_cosine_min']:.4f}",
            f"- STS-B {acc.get('stsb_split') or ''} Spearman x100: "
            + (f"{acc['stsb_spearman']:.2f}" if acc["stsb_spearman"] is not None else "not measured"),
            (f"- probe {acc['probe']['train']} -> {acc['probe']['test']}: kNN top-1 {acc['probe']['knn_top1']:.2f}"
             + (f" ({acc['probe']['knn_top1_drop']:.2f} points below the teacher)"
                if acc["probe"].get("knn_top1_drop") is not None else "")
             + f", linear probe top-1 {acc['probe']['linear_probe_top1']:.2f}" if acc.get("probe") else "- probe: not measured"),
            "",
        ]
    lines += [
        "## Limits",
        "",
        ("The teacher's languages only (all-MiniLM-L6-v2: English). " if manifest.get("modality", "text") == "text" else
         "The teacher's image domain only (its training images and size; see the teacher's datasheet). ")
        + "Figures hold for the hardware named above; re-measure on the device.",
        f"Source model license: {manifest['source_model'].get('license', 'unknown')}.",
        "",
    ]
    return "\n".join(lines)
