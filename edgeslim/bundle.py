"""Writing bundles: staged in a hidden folder, published with one rename, then archived.

A reader sees either no bundle or a complete one; a crash leaves only a `.staging-*` folder
that the next run of the same variant removes.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

from edgeslim import __version__
from edgeslim.runtime.bundle import BUNDLE_FORMAT, MANIFEST_NAME, manifest_digest, sha256_file

MODEL_CARD = "MODEL_CARD.md"


def staging_dir(bundles_root: Path, name: str) -> Path:
    path = bundles_root / f".staging-{name}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def write_manifest(staging: Path, manifest: dict) -> dict:
    """Hash every file in the folder into the manifest and write it."""
    files = sorted(p.name for p in staging.iterdir() if p.is_file() and p.name != MANIFEST_NAME)
    manifest = {"format": BUNDLE_FORMAT, "created_by": f"edgeslim {__version__}", **manifest,
                "files": {name: sha256_file(staging / name) for name in files}}
    manifest["manifest_sha256"] = manifest_digest(manifest)
    tmp = staging / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, staging / MANIFEST_NAME)
    return manifest


def publish(staging: Path, final: Path) -> Path:
    """Move a finished staging folder to its final name and write `<final>.tar.gz` next to it."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    archive = final.with_name(final.name + ".tar.gz")
    tmp = archive.with_name(f".{archive.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(final, arcname=final.name)
    os.replace(tmp, archive)
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
        "vectors = encoder.encode(['a sentence'])",
        "```",
        "",
        f"Input: text, tokenized by `tokenizer.json`, at most {manifest['max_seq_length']} tokens "
        f"(longer texts are {manifest['truncation']}d and counted). Output: {manifest['embedding_dim']}-d "
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
            f"p99 {lat['p99']:.2f} ms at batch {lat['batch']}, {lat['seq_len']} tokens, {lat['threads']} thread(s), "
            f"{lat['runs']} runs",
            (f"- {result['speedup_vs_baseline']:.2f}x the PyTorch fp32 teacher's p50 in the same run"
             if result["speedup_vs_baseline"] is not None else "- no speedup figure: the latency is an estimate "
             "for another device, the teacher was measured on this host"),
            f"- size {result['size_mb']:.1f} MB; peak RSS {result['peak_rss_mb']:.0f} MB",
            f"- cosine to the teacher on {acc['eval_set']} ({acc['eval_sentences']} sentences, disjoint from "
            f"calibration: {acc['disjoint_from_calibration']}): mean {acc['teacher_cosine_mean']:.4f}, "
            f"min {acc['teacher_cosine_min']:.4f}",
            f"- STS-B {acc.get('stsb_split') or ''} Spearman x100: "
            + (f"{acc['stsb_spearman']:.2f}" if acc["stsb_spearman"] is not None else "not measured (no data)"),
            "",
        ]
    lines += [
        "## Limits",
        "",
        "English only, as the teacher. Figures hold for the hardware named above; re-measure on the device.",
        f"Source model license: {manifest['source_model'].get('license', 'unknown')}.",
        "",
    ]
    return "\n".join(lines)
