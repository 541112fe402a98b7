"""Detached ed25519 signatures over a bundle's manifest, checked with the runtime alone.

The manifest pins every file's sha256 and its own canonical digest (`manifest_sha256`), so a
signature over that digest covers the whole bundle: change a file and its sha256 no longer
matches; change the manifest (even with a recomputed self-checksum) and the digest no longer
matches the signed one. The signature sits beside the manifest as `signature.json`:

    {"format": "edgeslim.signature/1", "key_id": "<16 hex>", "manifest_sha256": "<64 hex>",
     "signature": "<base64 of 64 bytes>"}

Keys are ed25519 (the `cryptography` package): a private key as PKCS#8 PEM, its public key as a
SubjectPublicKeyInfo PEM `<name>.pub`; a folder of `.pub` files is a set of trusted keys. The
key id is the first 16 hex digits of the sha256 of the raw 32-byte public key.

Trusted keys come from `load(..., trusted_keys=DIR)` or, device-wide, the environment variable
`EDGESLIM_TRUSTED_KEYS` (a folder). With neither, bundles load unsigned, as before.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgeslim.errors import BundleError, SignatureError

__all__ = ["SIGNATURE_FORMAT", "SIGNATURE_NAME", "TRUSTED_KEYS_ENV", "TrustedKeys", "check_signature",
           "key_id", "read_signature", "signed_message", "trusted_keys_from"]

SIGNATURE_NAME = "signature.json"
SIGNATURE_FORMAT = "edgeslim.signature/1"
TRUSTED_KEYS_ENV = "EDGESLIM_TRUSTED_KEYS"
_MAX_SIGNATURE_BYTES = 4096
_MAX_KEY_BYTES = 16384


def _ed25519():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # a base install has it; a hand-made environment may not
        raise SignatureError("checking signatures needs the `cryptography` package (pip install cryptography)") \
            from None
    return serialization, ed25519


def key_id(public_key) -> str:
    serialization, _ = _ed25519()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signed_message(manifest_sha256: str) -> bytes:
    """What a signature signs: the format tag and the manifest's canonical digest."""
    return f"{SIGNATURE_FORMAT}\n{manifest_sha256}\n".encode("ascii")


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys a device accepts, by key id, and the folder they came from."""

    folder: Path
    keys: dict  # key id -> Ed25519PublicKey

    def ids(self) -> list[str]:
        return sorted(self.keys)


def trusted_keys_from(folder: str | Path | None) -> TrustedKeys | None:
    """The `.pub` keys of `folder`; None means the environment's `EDGESLIM_TRUSTED_KEYS`, and
    neither means no signature checks. A folder that is named but unusable is an error, never
    a silent fallback to unsigned loading."""
    if folder is None:
        folder = os.environ.get(TRUSTED_KEYS_ENV) or None
        if folder is None:
            return None
        shown = f"{TRUSTED_KEYS_ENV}={folder}"
    else:
        if not isinstance(folder, (str, Path)):
            raise SignatureError(f"trusted_keys must be a folder path (str or Path), got {type(folder).__name__}")
        shown = str(folder)
    folder = Path(folder)
    if not folder.is_dir():
        raise SignatureError(f"trusted keys folder {shown} does not exist or is not a folder")
    serialization, ed25519 = _ed25519()
    keys = {}
    for path in sorted(folder.glob("*.pub")):
        data = path.read_bytes()[: _MAX_KEY_BYTES + 1]
        try:
            if len(data) > _MAX_KEY_BYTES:
                raise ValueError("too large for a public key")
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise SignatureError(f"{path}: not a PEM public key ({exc})") from None
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise SignatureError(f"{path}: a {type(key).__name__}; trusted keys are ed25519 (edgeslim keys new)")
        keys[key_id(key)] = key
    if not keys:
        raise SignatureError(f"trusted keys folder {shown} holds no .pub keys (edgeslim keys new writes them)")
    return TrustedKeys(folder, keys)


def read_signature(bundle_dir: Path) -> dict | None:
    """The bundle's signature document, or None when it has none. Read under the bundle rule:
    inside the folder, a regular file, bounded."""
    from edgeslim.runtime.bundle import open_bundle_file

    path = Path(bundle_dir) / SIGNATURE_NAME
    if not path.exists() and not path.is_symlink():
        return None
    shown = f"{bundle_dir}: {SIGNATURE_NAME}"
    try:
        raw = open_bundle_file(Path(bundle_dir), SIGNATURE_NAME, _MAX_SIGNATURE_BYTES)
    except BundleError as exc:
        raise SignatureError(str(exc)) from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SignatureError(f"{shown}: not a JSON signature document ({exc})") from None
    expected = {"format", "key_id", "manifest_sha256", "signature"}
    if not isinstance(document, dict) or set(document) != expected or not all(
            isinstance(document[k], str) for k in expected):
        raise SignatureError(f"{shown}: a signature document has exactly the string fields {sorted(expected)}")
    if document["format"] != SIGNATURE_FORMAT:
        raise SignatureError(f"{shown}: format {document['format']!r}; this runtime reads {SIGNATURE_FORMAT}")
    return document


def check_signature(bundle_dir: Path, manifest_sha256: str, trusted: TrustedKeys) -> str:
    """The key id that signed this manifest digest, or a SignatureError saying what is wrong."""
    document = read_signature(bundle_dir)
    if document is None:
        raise SignatureError(f"{bundle_dir}: unsigned bundle (no {SIGNATURE_NAME}); trusted keys are configured "
                             f"({trusted.folder}), so only bundles signed by one of them load (edgeslim sign)")
    signer = document["key_id"]
    if signer not in trusted.keys:
        raise SignatureError(f"{bundle_dir}: signed by key {signer}, which is not trusted here; trusted keys in "
                             f"{trusted.folder}: {', '.join(trusted.ids())}")
    try:
        signature = base64.b64decode(document["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{bundle_dir}: {SIGNATURE_NAME}: the signature is not base64") from None
    from cryptography.exceptions import InvalidSignature

    try:
        trusted.keys[signer].verify(signature, signed_message(document["manifest_sha256"]))
    except InvalidSignature:
        raise SignatureError(f"{bundle_dir}: the signature by key {signer} does not verify: {SIGNATURE_NAME} "
                             "was altered") from None
    if document["manifest_sha256"] != manifest_sha256:
        raise SignatureError(f"{bundle_dir}: the manifest changed after it was signed by key {signer} (signed "
                             f"digest {document['manifest_sha256'][:16]}..., now {manifest_sha256[:16]}...)")
    return signer
