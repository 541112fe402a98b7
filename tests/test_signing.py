"""Signed bundles: ed25519 over the manifest digest, checked by the runtime alone.

The attack the manifest's self-checksum cannot stop: change a file, write its new sha256 into the
manifest and recompute `manifest_sha256`. Without keys that bundle loads; with trusted keys it is
refused, and every other way a signed bundle can be wrong says which way it is wrong."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from edgeslim.cli import main
from edgeslim.errors import BundleError, InputError, OutputError, SignatureError
from edgeslim.runtime import MANIFEST_NAME, load, read_manifest, sha256_file
from edgeslim.runtime.bundle import manifest_digest
from edgeslim.runtime.signing import SIGNATURE_NAME, TRUSTED_KEYS_ENV
from edgeslim.signing import new_key, sign_bundle


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two key pairs in two folders: `ours` (trusted) and `theirs` (not)."""
    root = tmp_path_factory.mktemp("keys")
    ours = new_key(root / "ours", "release")
    theirs = new_key(root / "theirs", "other")
    return {"ours": root / "ours", "key": ours[0], "id": ours[2], "theirs": root / "theirs", "their_key": theirs[0],
            "their_id": theirs[2]}


@pytest.fixture
def signed_bundle(tiny_bundle, keys):
    sign_bundle(tiny_bundle, keys["key"])
    return tiny_bundle


def _forge(bundle, name: str, data: bytes) -> None:
    """What anyone with write access can do: new file bytes, new sha256, new self-checksum."""
    (bundle / name).write_bytes(data)
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest["files"][name] = sha256_file(bundle / name)
    if manifest.get("file_sizes"):
        manifest["file_sizes"][name] = len(data)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_a_new_private_key_is_never_readable_by_others_and_is_never_replaced(tmp_path):
    private, public, identifier = new_key(tmp_path, "device-fleet")
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----") and len(identifier) == 16
    before = private.read_bytes()
    with pytest.raises(OutputError, match="exists; choose another path or pass --force"):
        new_key(tmp_path, "device-fleet")
    assert private.read_bytes() == before
    with pytest.raises(InputError, match="key name '../x'"):
        new_key(tmp_path, "../x")


def test_a_signed_bundle_loads_with_its_key_and_says_who_signed_it(signed_bundle, keys):
    encoder = load(signed_bundle, trusted_keys=keys["ours"])
    assert encoder.signed_by == keys["id"]
    manifest = read_manifest(signed_bundle)
    assert encoder.identity == f"{manifest.name}@{manifest.manifest_sha256[:16]}"
    unsigned_check = load(signed_bundle)  # no keys configured: loads as before, nothing claimed
    assert unsigned_check.signed_by is None
    np.testing.assert_array_equal(encoder.encode(["a sentence"]), unsigned_check.encode(["a sentence"]))


def test_the_forged_self_checksum_loads_without_keys_and_is_refused_with_them(signed_bundle, keys):
    _forge(signed_bundle, "tokenizer.json", (signed_bundle / "tokenizer.json").read_bytes() + b" ")
    load(signed_bundle)  # the self-checksum alone cannot see it: this is the attack
    with pytest.raises(SignatureError, match=f"manifest changed after it was signed by key {keys['id']}"):
        load(signed_bundle, trusted_keys=keys["ours"])


def test_a_changed_file_under_a_signed_manifest_is_refused_naming_the_file(signed_bundle, keys):
    card = signed_bundle / "MODEL_CARD.md"  # a file no backend reads: checked anyway, before loading
    data = bytearray(card.read_bytes())
    data[-2] ^= 1  # same size: only the sha256 can tell
    card.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match="changed after signing: .*checksum mismatch for MODEL_CARD.md"):
        load(signed_bundle, trusted_keys=keys["ours"])


@pytest.mark.parametrize("case", ["unsigned", "other-key", "altered-signature", "garbage", "symlink"])
def test_every_way_a_signature_can_be_wrong_is_a_signature_error_that_says_which(tiny_bundle, keys, case, tmp_path):
    matches = {"unsigned": "unsigned bundle \\(no signature.json\\)",
               "other-key": f"signed by key {keys['their_id']}, which is not trusted here; trusted keys in .*"
                            f"{keys['id']}",
               "altered-signature": "does not verify: signature.json was altered",
               "garbage": "not a JSON signature document",
               "symlink": "outside the bundle folder"}
    signature = tiny_bundle / SIGNATURE_NAME
    if case == "other-key":
        sign_bundle(tiny_bundle, keys["their_key"])
    elif case == "altered-signature":
        document = sign_bundle(tiny_bundle, keys["key"])
        other = sign_bundle(tiny_bundle, keys["key"], force=True)  # ed25519 is deterministic: same bytes
        assert other == document
        document["manifest_sha256"] = "0" * 64  # claims another manifest; the signature no longer covers it
        signature.write_text(json.dumps(document))
    elif case == "garbage":
        signature.write_bytes(b"\x00not json")
    elif case == "symlink":
        outside = tmp_path / "elsewhere.json"
        outside.write_text("{}")
        signature.symlink_to(outside)
    with pytest.raises(SignatureError, match=matches[case]):
        load(tiny_bundle, trusted_keys=keys["ours"])


def test_the_device_wide_setting_applies_and_a_broken_one_never_falls_back_to_unsigned(tiny_bundle, keys,
                                                                                         monkeypatch, tmp_path):
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(keys["ours"]))
    with pytest.raises(SignatureError, match="unsigned bundle"):
        load(tiny_bundle)
    sign_bundle(tiny_bundle, keys["key"])
    assert load(tiny_bundle).signed_by == keys["id"]
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(tmp_path / "no-such-folder"))
    with pytest.raises(SignatureError, match=f"{TRUSTED_KEYS_ENV}=.*does not exist"):
        load(tiny_bundle)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SignatureError, match="holds no .pub keys"):
        load(tiny_bundle, trusted_keys=tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.pub").write_text("not a key")
    with pytest.raises(SignatureError, match="x.pub: not a PEM public key"):
        load(tiny_bundle, trusted_keys=tmp_path / "bad")


def test_signing_refuses_a_broken_bundle_and_an_existing_signature(tiny_bundle, keys, tmp_path):
    card = tiny_bundle / "MODEL_CARD.md"
    original = card.read_bytes()
    card.write_bytes(original[:-1] + b"x")
    with pytest.raises(BundleError, match="checksum mismatch for MODEL_CARD.md"):
        sign_bundle(tiny_bundle, keys["key"])
    assert not (tiny_bundle / SIGNATURE_NAME).exists()
    card.write_bytes(original)
    sign_bundle(tiny_bundle, keys["key"])
    with pytest.raises(OutputError, match="the bundle is signed\\); pass --force"):
        sign_bundle(tiny_bundle, keys["their_key"])
    public = keys["ours"] / "release.pub"
    with pytest.raises(InputError, match="not an unencrypted PEM private key"):
        sign_bundle(tiny_bundle, public, force=True)
    with pytest.raises(InputError, match="no such key file"):
        sign_bundle(tiny_bundle, tmp_path / "missing.key", force=True)


def test_load_refuses_a_non_path_with_a_typed_error():
    for value in (5, None, b"bundle"):
        with pytest.raises(InputError, match="load\\(\\) takes a bundle folder path"):
            load(value)


def test_keys_sign_verify_on_the_command_line(tiny_bundle, tmp_path, capsys):
    assert main(["keys", "new", "--out", str(tmp_path / "k")]) == 0
    assert "keep it off devices" in capsys.readouterr().out
    assert main(["verify", str(tiny_bundle), "--trusted-keys", str(tmp_path / "k")]) == 2
    assert "SignatureError: " in capsys.readouterr().err
    assert main(["sign", str(tiny_bundle), "--key", str(tmp_path / "k" / "edgeslim.key")]) == 0
    identity = read_manifest(tiny_bundle)
    assert f"@{identity.manifest_sha256[:16]} signed by key" in capsys.readouterr().out
    assert main(["verify", str(tiny_bundle), "--trusted-keys", str(tmp_path / "k")]) == 0
    out = capsys.readouterr().out
    assert f"{identity.name}@{identity.manifest_sha256[:16]}" in out and "signed by trusted key" in out
