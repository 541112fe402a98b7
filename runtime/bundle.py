"""The bundle format on disk: a folder with `manifest.json` listing the sha256 of every file.

One rule for every file anything opens from a bundle (runtime backends, the firmware export, the
CLI): it is listed in the manifest with its sha256, it resolves inside the bundle folder after
symlinks are resolved, it is a regular file (no FIFO, device or folder), it is read with the
size bound the manifest states, and the bytes that are used are the bytes that were hashed.
`BundleReader` is that rule; nothing else opens bundle files.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from edgeslim.errors import BundleError
from edgeslim.runtime.manifest import BUNDLE_FORMAT, READABLE_FORMATS, Manifest, parse_manifest

__all__ = ["BUNDLE_FORMAT", "MANIFEST_NAME", "MAX_MANIFEST_BYTES", "BundleReader", "manifest_digest",
           "open_bundle_file", "read_manifest", "sha256_file", "verify_files"]

MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON, without its own `manifest_sha256` entry."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _confined(root: Path, name: str) -> Path:
    """`root / name` with symlinks resolved; BundleError unless it stays inside `root`."""
    path = (root / name).resolve()
    if root not in path.parents:
        raise BundleError(f"{root}: {name} resolves to {path}, outside the bundle folder")
    return path


def _open_regular(path: Path, shown: str, limit: int):
    """An open binary handle on a regular file of at most `limit` bytes. O_NONBLOCK: opening a
    FIFO must not hang; fstat then refuses it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise BundleError(f"{shown} is listed in the manifest but missing") from None
    except OSError as exc:
        raise BundleError(f"{shown} cannot be opened: {exc.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise BundleError(f"{shown} is not a regular file (a bundle holds regular files only)")
    if info.st_size > limit:
        os.close(fd)
        raise BundleError(f"{shown} is {info.st_size} bytes, over its bound of {limit} bytes")
    return os.fdopen(fd, "rb")


def _read_bounded(handle, limit: int, shown: str) -> bytes:
    data = handle.read(limit + 1)
    if len(data) > limit:
        raise BundleError(f"{shown} grew past its bound of {limit} bytes while being read")
    return data


def open_bundle_file(bundle_dir: Path, name: str, limit: int) -> bytes:
    """The bytes of a file that sits beside the manifest without being listed in it (the
    signature over the manifest): inside the folder, regular, at most `limit` bytes."""
    shown = f"{bundle_dir}: {name}"
    with _open_regular(_confined(Path(bundle_dir).resolve(), name), shown, limit) as handle:
        return _read_bounded(handle, limit, shown)


def read_manifest(bundle_dir: Path, manifest_path: Path | None = None) -> Manifest:
    """The bundle's manifest, parsed and checked (format, its own sha256, every field's type).
    `manifest_path`: a manifest kept outside the folder (the build's own, while the bundle is
    measured before its manifest is written into it)."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir}: not a bundle folder (it does not exist or is not a directory)")
    path = bundle_dir / MANIFEST_NAME if manifest_path is None else Path(manifest_path)
    if not path.exists() and not path.is_symlink():
        raise BundleError(f"{bundle_dir}: no {MANIFEST_NAME}; not an edgeslim bundle" if manifest_path is None
                          else f"{path}: no such manifest file")
    if manifest_path is None:
        raw = open_bundle_file(bundle_dir, MANIFEST_NAME, MAX_MANIFEST_BYTES)
    else:
        with _open_regular(path, str(path), MAX_MANIFEST_BYTES) as handle:
            raw = _read_bounded(handle, MAX_MANIFEST_BYTES, str(path))
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path}: not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise BundleError(f"{path}: JSON nested too deeply") from None
    if not isinstance(document, dict):
        raise BundleError(f"{path}: the manifest must be a JSON object")
    if document.get("format") not in READABLE_FORMATS:
        raise BundleError(f"{path}: bundle format {document.get('format')!r} is not supported by this runtime; "
                          f"supported: {', '.join(READABLE_FORMATS)}. Rebuild the bundle with this edgeslim "
                          "(`edgeslim run RECIPE`, the recipe is in the manifest) or use the edgeslim that made it")
    try:
        intact = document.get("manifest_sha256") == manifest_digest(document)
    except (TypeError, ValueError, RecursionError):
        intact = False
    if not intact:
        raise BundleError(f"{path}: checksum mismatch for {MANIFEST_NAME}: its content does not match its "
                          "manifest_sha256; the manifest was edited or corrupted, re-copy the bundle")
    return parse_manifest(document, str(path))


class BundleReader:
    """Opens the files of one bundle under the rule above. `read` returns verified bytes;
    `verify_all` checks every listed file not read yet. Safe to share across threads."""

    def __init__(self, bundle_dir: Path, manifest: Manifest | None = None):
        self.bundle_dir = Path(bundle_dir)
        self.root = self.bundle_dir.resolve()
        self.manifest = manifest if manifest is not None else read_manifest(self.bundle_dir)
        self._verified: set[str] = set()

    def _listed(self, name: str) -> str:
        if name not in self.manifest.files:
            raise BundleError(f"{self.bundle_dir}: {name} is not listed in the manifest's files (with a sha256); "
                              "a bundle opens listed files only")
        return name

    def _mismatch(self, name: str, actual: str) -> BundleError:
        return BundleError(f"{self.bundle_dir}: checksum mismatch for {name}: sha256 {actual}, manifest says "
                           f"{self.manifest.files[name]}; the file was modified or corrupted, re-copy the bundle")

    def read(self, name: str) -> bytes:
        """The bytes of a listed file, after checking them against its sha256."""
        shown = f"{self.bundle_dir}: {self._listed(name)}"
        limit = self.manifest.max_bytes(name)
        with _open_regular(_confined(self.root, name), shown, limit) as handle:
            data = _read_bounded(handle, limit, shown)
        actual = hashlib.sha256(data).hexdigest()
        if actual != self.manifest.files[name]:
            raise self._mismatch(name, actual)
        if self.manifest.file_sizes is not None and len(data) != self.manifest.file_sizes[name]:
            raise BundleError(f"{shown} is {len(data)} bytes, the manifest says {self.manifest.file_sizes[name]}")
        self._verified.add(name)
        return data

    def read_text(self, name: str) -> str:
        try:
            return self.read(name).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleError(f"{self.bundle_dir}: {name} is not UTF-8 text ({exc})") from None

    def verify(self, name: str) -> None:
        """Check one listed file against its sha256 without keeping its bytes (streamed)."""
        shown = f"{self.bundle_dir}: {self._listed(name)}"
        limit = self.manifest.max_bytes(name)
        digest = hashlib.sha256()
        size = 0
        with _open_regular(_confined(self.root, name), shown, limit) as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                size += len(chunk)
                if size > limit:
                    raise BundleError(f"{shown} grew past its bound of {limit} bytes while being read")
                digest.update(chunk)
        if digest.hexdigest() != self.manifest.files[name]:
            raise self._mismatch(name, digest.hexdigest())
        self._verified.add(name)

    def verify_all(self) -> None:
        for name in self.manifest.files:
            if name not in self._verified:
                self.verify(name)


def verify_files(bundle_dir: Path, manifest: Manifest) -> None:
    """Every listed file is inside the bundle, regular, within its bound and matches its sha256."""
    BundleReader(bundle_dir, manifest).verify_all()
