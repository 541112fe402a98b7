"""Making keys and signing bundles (the device checks with `edgeslim.runtime.signing` alone).

    edgeslim keys new --out keys/            keys/edgeslim.key (private, 0600) + keys/edgeslim.pub
    edgeslim sign BUNDLE --key keys/edgeslim.key
    edgeslim verify BUNDLE --trusted-keys keys/   (or EDGESLIM_TRUSTED_KEYS=keys/ on the device)
"""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

from edgeslim.errors import InputError, OutputError
from edgeslim.outputs import check_new_file, write_atomic
from edgeslim.runtime.bundle import BundleReader, read_manifest
from edgeslim.runtime.signing import SIGNATURE_FORMAT, SIGNATURE_NAME, key_id, signed_message

__all__ = ["new_key", "sign_bundle"]

_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAX_PRIVATE_KEY_BYTES = 16384


def new_key(out_dir: Path, name: str = "edgeslim", force: bool = False) -> tuple[Path, Path, str]:
    """A new ed25519 key pair: OUT/NAME.key (PKCS#8 PEM, mode 0600) and OUT/NAME.pub. Returns
    (private path, public path, key id). Never replaces a key unless `force`."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if not _KEY_NAME.fullmatch(name):
        raise InputError(f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter "
                         "or digit")
    out_dir = Path(out_dir)
    private_path, public_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    for path in (private_path, public_path):
        check_new_file(path, force)
    private = ed25519.Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    out_dir.mkdir(parents=True, exist_ok=True)
    staged = out_dir / f".{name}.key.tmp-{os.getpid()}"
    # created 0600: the private key is never readable by others, not even for a moment
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        os.replace(staged, private_path)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    write_atomic(public_path, public_pem, force=True)
    return private_path, public_path, key_id(private.public_key())


def _private_key(key_path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key_path = Path(key_path)
    if not key_path.is_file():
        raise InputError(f"--key {key_path}: no such key file (edgeslim keys new writes one)")
    data = key_path.read_bytes()[: _MAX_PRIVATE_KEY_BYTES + 1]
    try:
        if len(data) > _MAX_PRIVATE_KEY_BYTES:
            raise ValueError("too large for a private key")
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"--key {key_path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError(f"--key {key_path}: a {type(key).__name__}; edgeslim signs with ed25519 keys")
    return key


def sign_bundle(bundle_dir: Path, key_path: Path, force: bool = False) -> dict:
    """Check the bundle (manifest and every file), then write its signature.json atomically.
    An existing signature is replaced only with `force`."""
    bundle_dir = Path(bundle_dir)
    key = _private_key(key_path)
    manifest = read_manifest(bundle_dir)
    BundleReader(bundle_dir, manifest).verify_all()  # never sign a bundle that is already broken
    target = bundle_dir / SIGNATURE_NAME
    if (target.exists() or target.is_symlink()) and not force:
        raise OutputError(f"{target} exists (the bundle is signed); pass --force to sign it again")
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise OutputError(f"{target} is not a regular file; remove it first")
    document = {"format": SIGNATURE_FORMAT, "key_id": key_id(key.public_key()),
                "manifest_sha256": manifest.manifest_sha256,
                "signature": base64.b64encode(key.sign(signed_message(manifest.manifest_sha256))).decode("ascii")}
    write_atomic(target, json.dumps(document, indent=2) + "\n", force=True)
    return document


