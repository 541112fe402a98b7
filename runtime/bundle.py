"""The bundle format on disk: a folder with `manifest.json` listing the sha256 of every file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgeslim.errors import BundleError

MANIFEST_NAME = "manifest.json"
BUNDLE_FORMAT = "edgeslim.bundle/1"
SUPPORTED_FORMATS = (BUNDLE_FORMAT,)
_REQUIRED_KEYS = ("format", "name", "target", "backend", "model_file", "files", "inputs", "outputs",
                  "pooling", "normalize", "max_seq_length", "embedding_dim")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON, without its own `manifest_sha256` entry."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_manifest(bundle_dir: Path) -> dict:
    bundle_dir = Path(bundle_dir)
    path = bundle_dir / MANIFEST_NAME
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir}: not a bundle folder (it does not exist or is not a directory)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{bundle_dir}: no {MANIFEST_NAME}; not an edgeslim bundle") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: the manifest must be a JSON object")
    if manifest.get("format") not in SUPPORTED_FORMATS:
        raise BundleError(
            f"{path}: bundle format {manifest.get('format')!r} is not supported by this runtime; "
            f"supported: {', '.join(SUPPORTED_FORMATS)}"
        )
    if manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise BundleError(
            f"{path}: checksum mismatch for {MANIFEST_NAME}: its content does not match its manifest_sha256; "
            "the manifest was edited or corrupted, re-copy the bundle"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise BundleError(f"{path}: manifest lacks {missing}")
    return manifest


def verify_files(bundle_dir: Path, manifest: dict) -> None:
    """Every listed file exists and matches its sha256; the model file is among them."""
    bundle_dir = Path(bundle_dir)
    files = manifest["files"]
    if manifest["model_file"] not in files:
        raise BundleError(f"{bundle_dir}: model file {manifest['model_file']} is not covered by a checksum")
    for name, expected in files.items():
        path = bundle_dir / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{bundle_dir}: manifest names a file outside the bundle: {name}")
        if not path.is_file():
            raise BundleError(f"{bundle_dir}: {name} is listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"{bundle_dir}: checksum mismatch for {name}: sha256 {actual}, manifest says {expected}; "
                "the file was modified or corrupted, re-copy the bundle"
            )
