"""Deploy over a real OpenSSH server on loopback: slots, health checks, the atomic switch and
rollback. The fixture starts Debian's sshd with throwaway host and user keys on 127.0.0.1 and
stops it afterwards; the "device" runs `python -m edgeslim.runtime.device` with this Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port as _free_port
from conftest import needs_sshd

from edgeslim.cli import main
from edgeslim.deploy import DeployError, deploy, device_command, parse_device
from edgeslim.errors import BundleError, InputError
from edgeslim.runtime import MANIFEST_NAME, load, read_manifest
from edgeslim.runtime.bundle import manifest_digest
from edgeslim.runtime.device import CRASH_ENV, CRASH_STEPS
from edgeslim.runtime.encoder import bundle_identity
from edgeslim.signing import new_key, sign_bundle

def _device(sshd, root: Path):
    root.mkdir(parents=True, exist_ok=True)
    return parse_device(f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}{root}", sshd["identity"],
                        sshd["known_hosts"], sys.executable)


def _cli_device_args(sshd) -> list[str]:
    return ["--identity", str(sshd["identity"]), "--known-hosts", str(sshd["known_hosts"]),
            "--remote-python", sys.executable]


@pytest.mark.parametrize("url, match", [
    ("scp://host/x", "give ssh://"), ("ssh://host", "absolute folder"), ("ssh://host/", "absolute folder"),
    ("ssh://host:99999/x", "port must be a number"), ("ssh://us er@host/x", "not a plain login name"),
    ("ssh://u:pw@host/x", "no password"), ("ssh://host/a/../b", "absolute folder"),
])
def test_a_bad_device_url_says_what_is_wrong(url, match):
    with pytest.raises(InputError, match=match):
        parse_device(url)


def wrong_reference(bundle: Path) -> None:
    """A deliberately wrong health-check reference (the embeddings negated), the manifest's
    digest recomputed: a bundle that is well-formed and signable but fails its health check."""
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    manifest["health_check"]["embeddings"] = [[-v for v in row] for row in manifest["health_check"]["embeddings"]]
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))


@needs_sshd
def test_deploy_status_refusal_and_rollback_on_a_real_sshd(sshd, tiny_run, tmp_path, capsys):
    """keys -> sign -> deploy -> status -> a second bundle -> a third whose health check fails
    (a deliberately wrong reference) is refused and the device stays on the second -> one signed
    by a key the device does not trust is refused too -> rollback to the first."""
    bundles = tiny_run["out"] / "bundles"
    first, second, third, fourth = (tmp_path / n for n in ("first", "second", "third", "fourth"))
    shutil.copytree(bundles / "ort-int8-dynamic", first)
    shutil.copytree(bundles / "ort-fp32", second)
    shutil.copytree(bundles / "ort-int8-static", third)
    shutil.copytree(bundles / "ort-int8-dynamic", fourth)
    wrong_reference(third)
    _, _, ours = new_key(tmp_path / "keys", "release")
    _, _, theirs = new_key(tmp_path / "other-keys", "intruder")
    for bundle in (first, second, third):
        sign_bundle(bundle, tmp_path / "keys" / "release.key")
    sign_bundle(fourth, tmp_path / "other-keys" / "intruder.key")
    root = tmp_path / "device"
    device = _device(sshd, root)
    url = device.url
    options = _cli_device_args(sshd) + ["--trusted-keys", str(tmp_path / "keys")]

    assert main(["deploy", str(first), url, *options]) == 0
    first_id = bundle_identity(read_manifest(first))
    assert f"current -> {first_id} (was None); health check ok" in capsys.readouterr().out
    assert main(["device", "status", url, *_cli_device_args(sshd)]) == 0
    out = capsys.readouterr().out
    assert f"current {first_id}" in out and "last health check: " in out and " ok at " in out

    assert main(["deploy", str(second), url, *options]) == 0
    second_id = bundle_identity(read_manifest(second))
    assert f"current -> {second_id} (was {first_id})" in capsys.readouterr().out

    assert main(["deploy", str(third), url, *options]) == 1
    err = capsys.readouterr().err
    assert "health failed: health check: cosine to the build's reference -1.0000" in err, err
    assert f"current stays {second_id}" in err
    assert main(["device", "status", url, *_cli_device_args(sshd)]) == 0
    assert "FAILED" in capsys.readouterr().out
    assert main(["deploy", str(fourth), url, *options]) == 1
    err = capsys.readouterr().err
    assert f"signed by key {theirs}, which is not trusted here" in err and f"current stays {second_id}" in err
    assert os.readlink(root / "current") == f"slots/{second_id}"
    assert sorted(p.name for p in (root / "slots").iterdir()) == sorted([first_id, second_id])
    assert load(root / "current", trusted_keys=tmp_path / "keys").signed_by == ours

    assert main(["device", "rollback", url, *options]) == 0
    assert f"rolled back, current -> {first_id} (was {second_id})" in capsys.readouterr().out
    assert load(root / "current").identity == first_id


@needs_sshd
def test_keep_prunes_old_slots_but_never_the_current_one(sshd, tiny_run, tmp_path):
    bundles = tiny_run["out"] / "bundles"
    device = _device(sshd, tmp_path / "device")
    names = ["ort-int8-dynamic", "ort-fp32", "ort-int8-dynamic"]
    results = [deploy(bundles / name, device, keep=1) for name in names]
    assert results[1]["removed"] == [results[0]["slot"]]
    assert results[2]["current"] == results[0]["slot"]  # the same bundle again: a fresh slot of the same name
    status = device_command(device, "status")
    assert status["slots"] == [results[2]["slot"]] and status["incoming"] == []


# Where a SIGKILL leaves the device: on the old bundle until `current` is renamed, on the new one after.
KILL_OUTCOMES = {"uploading": "old", "uploaded": "old", "checked": "old", "slotted": "old", "link-staged": "old",
                 "switched": "new", "state-written": "new", "pruning": "new"}


@needs_sshd
@pytest.mark.parametrize("step", CRASH_STEPS)
def test_a_deploy_killed_at_any_step_leaves_the_old_or_the_new_bundle_whole(sshd, tiny_run, tmp_path, step):
    """SIGKILL at each step: the client mid-upload and after it (the `edgeslim deploy` process),
    the device agent after its checks, after the slot appears, with the new link staged, after
    the switch, after the state, while pruning. `current` then names a whole bundle that loads,
    `device status` answers, and the next deploy of the same bundle succeeds and cleans up."""
    assert set(KILL_OUTCOMES) == set(CRASH_STEPS)
    bundles = tiny_run["out"] / "bundles"
    old, new = bundles / "ort-int8-dynamic", bundles / "ort-fp32"
    old_id, new_id = (bundle_identity(read_manifest(b)) for b in (old, new))
    root = tmp_path / "device"
    device = _device(sshd, root)
    deploy(old, device, keep=1)
    if step in ("uploading", "uploaded"):  # the kit's process dies; ssh and the device's tar see it go
        env = {**os.environ, CRASH_ENV: step}
        killed = subprocess.run([sys.executable, "-m", "edgeslim.cli", "deploy", str(new), device.url, "--keep", "1",
                                 *_cli_device_args(sshd)], env=env, capture_output=True, timeout=300)
    else:  # the device agent dies: its Python is a wrapper that sets the crash step
        wrapper = tmp_path / "device-python"
        wrapper.write_text(f"#!/bin/sh\n{CRASH_ENV}={step} exec {sys.executable} \"$@\"\n")
        wrapper.chmod(0o755)
        dying = parse_device(device.url, sshd["identity"], sshd["known_hosts"], str(wrapper))
        with pytest.raises(DeployError, match="the device agent gave no result") as killed:
            deploy(new, dying, keep=1)
    if step in ("uploading", "uploaded"):
        assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    expected = old_id if KILL_OUTCOMES[step] == "old" else new_id
    assert os.readlink(root / "current") == f"slots/{expected}"
    assert load(root / "current").identity == expected
    assert device_command(device, "status")["current"] == expected

    again = deploy(new, device, keep=1)
    assert again["current"] == new_id and load(root / "current").identity == new_id
    leftovers = sorted(p.name for p in root.iterdir() if p.name.startswith((".current.", ".state.json.")))
    assert leftovers == []
    assert sorted(p.name for p in (root / "slots").iterdir()) == [new_id]


@needs_sshd
def test_an_inventory_deploys_to_every_device_and_one_failing_host_stops_none(sshd, tiny_run, tmp_path, capsys):
    """Four devices: two good ones, one whose port has no sshd, one without the agent. Both good
    ones get the bundle, each failure is reported with its reason, the exit status is 1."""
    bundle = tiny_run["out"] / "bundles" / "ort-fp32"
    bundle_id = bundle_identity(read_manifest(bundle))
    base = f"ssh://{sshd['user']}@127.0.0.1"
    for name in ("a", "b", "gone", "bare"):
        (tmp_path / name).mkdir()
    shutil.copyfile(sshd["identity"], tmp_path / "fleet_key")
    (tmp_path / "fleet_key").chmod(0o600)
    inventory = tmp_path / "fleet.yaml"
    inventory.write_text(f"""
defaults:
  identity: fleet_key
  known_hosts: {sshd['known_hosts']}
  remote_python: {sys.executable}
devices:
  - {{name: pi-a, url: "{base}:{sshd['port']}{tmp_path / 'a'}"}}
  - {{name: pi-gone, url: "{base}:{_free_port()}{tmp_path / 'gone'}"}}
  - {{name: pi-bare, url: "{base}:{sshd['port']}{tmp_path / 'bare'}", remote_python: /nonexistent/python3}}
  - {{name: pi-b, url: "{base}:{sshd['port']}{tmp_path / 'b'}"}}
""")
    assert main(["deploy", str(bundle), "--inventory", str(inventory), "--parallel", "4"]) == 1
    out = capsys.readouterr().out
    assert f"pi-a ({base}:{sshd['port']}{tmp_path / 'a'}): current -> {bundle_id}" in out
    assert f"pi-b ({base}:{sshd['port']}{tmp_path / 'b'}): current -> {bundle_id}" in out
    assert "pi-gone" in out and "FAILED: DeployError" in out and "cannot make an upload folder" in out
    assert "pi-bare" in out and "the device agent gave no result" in out
    assert "2 of 4 devices ok; failed: pi-gone, pi-bare" in out
    for name in ("a", "b"):
        assert load(tmp_path / name / "current").identity == bundle_id
    assert not (tmp_path / "bare" / "current").exists()
    assert main(["device", "status", "--inventory", str(inventory)]) == 1
    out = capsys.readouterr().out
    assert out.count(f"current {bundle_id}") == 2 and "2 of 4 devices ok" in out


@pytest.mark.parametrize("text, match", [
    ("devices: []", "devices: List should have at least 1 item"),
    ("devices: [{name: a, url: 'ssh://h/x', port: 22}]", r"unknown key\(s\) \['port'\]"),
    ("devices: [{name: a, url: 'ssh://h/x'}, {name: a, url: 'ssh://g/x'}]", "repeated: a"),
    ("devices: [{name: a, url: 'http://h/x'}]", "devices.0.url: .*give ssh://"),
    ("devices: [{name: a, url: 'ssh://h/x', identity: missing.key}]", "device a: --identity .*missing.key: no such"),
    ("- just a list", "a YAML mapping with keys"),
])
def test_a_bad_inventory_names_the_file_and_the_key(tmp_path, text, match):
    from edgeslim.inventory import load_inventory

    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=f"inventory {path}: .*{match}"):
        load_inventory(path)


def test_a_device_url_and_an_inventory_together_are_refused(tmp_path, capsys):
    (tmp_path / "fleet.yaml").write_text("devices: [{name: a, url: 'ssh://h/x'}]")
    assert main(["deploy", str(tmp_path), "ssh://h/x", "--inventory", str(tmp_path / "fleet.yaml")]) == 2
    assert "name one device" in capsys.readouterr().err
    assert main(["device", "status"]) == 2
    capsys.readouterr()
    for flag, value in (("--identity", "key"), ("--trusted-keys", "/etc/keys"), ("--remote-python", "/opt/py")):
        assert main(["device", "status", "--inventory", str(tmp_path / "fleet.yaml"), flag, value]) == 2
        assert f"with --inventory, set {flag} in the file" in capsys.readouterr().err


@needs_sshd
def test_an_unreachable_device_or_missing_agent_is_a_deploy_error(sshd, tiny_run, tmp_path):
    bundle = tiny_run["out"] / "bundles" / "ort-fp32"
    wrong_python = parse_device(f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}{tmp_path}", sshd["identity"],
                                sshd["known_hosts"], "/nonexistent/python3")
    with pytest.raises(DeployError, match="the device agent gave no result"):
        deploy(bundle, wrong_python)
    closed = parse_device(f"ssh://{sshd['user']}@127.0.0.1:{_free_port()}{tmp_path}", sshd["identity"],
                          sshd["known_hosts"], sys.executable)
    with pytest.raises(DeployError, match="cannot make an upload folder"):
        deploy(bundle, closed)


def test_the_health_check_compares_with_the_reference_built_into_the_manifest(tiny_bundle):
    from edgeslim.runtime.health import check_health

    manifest = read_manifest(tiny_bundle)
    assert manifest.format == "edgeslim.bundle/3" and manifest.health_check.items == 3
    found = check_health(load(tiny_bundle))
    assert found["ok"] and min(found["cosines"]) > 0.9999  # the same bundle on the same host
    wrong_reference(tiny_bundle)
    found = check_health(load(tiny_bundle))
    assert not found["ok"] and "below the bundle's floor" in found["error"]


def test_a_bundle_2_without_a_reference_gets_the_basic_check(tiny_bundle):
    from edgeslim.runtime.health import check_health

    manifest = json.loads((tiny_bundle / MANIFEST_NAME).read_text())
    manifest["format"] = "edgeslim.bundle/2"
    del manifest["health_check"], manifest["drift"]
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (tiny_bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    found = check_health(load(tiny_bundle))
    assert found["ok"] and "basic check only" in found["reference"]
    manifest["health_check"] = {"items": 1, "embeddings": [[0.0] * 32], "min_cosine": 0.9}
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (tiny_bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="health_check needs format edgeslim.bundle/3"):
        load(tiny_bundle)


def _signed_pair(tiny_run, tmp_path):
    bundles = tiny_run["out"] / "bundles"
    first, second = tmp_path / "first", tmp_path / "second"
    shutil.copytree(bundles / "ort-int8-dynamic", first)
    shutil.copytree(bundles / "ort-fp32", second)
    new_key(tmp_path / "keys", "release")
    for bundle in (first, second):
        sign_bundle(bundle, tmp_path / "keys" / "release.key")
    return first, second


def _deploy_bench_rollback(sshd, tiny_run, tmp_path, python: str, runs: int) -> dict:
    """The device's side entirely in `python`: two signed deploys, a bench of the current
    bundle, a rollback; what the bench returned."""
    from edgeslim.deploy import bench_on_device

    first, second = _signed_pair(tiny_run, tmp_path)
    root = tmp_path / "device"
    root.mkdir()
    device = parse_device(f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}{root}", sshd["identity"],
                          sshd["known_hosts"], python)
    keys = str(tmp_path / "keys")
    assert deploy(first, device, trusted_keys=keys)["health"]["signed_by"]
    second_id = deploy(second, device, trusted_keys=keys)["current"]
    measured = bench_on_device(second, device, keys, runs=runs, warmup=2, seconds=0)
    assert measured["bundle_id"] == second_id and measured["slot"] == second_id and measured["health"]["ok"]
    rolled = device_command(device, "rollback", keys)
    assert rolled["current"] == bundle_identity(read_manifest(first))
    return measured


@pytest.mark.real
@needs_sshd
def test_the_device_side_runs_from_a_torch_free_venv(sshd, tiny_run, device_venv, tmp_path):
    """The agent, its checks, the signature, the health check and the bench in the venv a device
    installs (runtime lock + wheel, no index): nothing there imports torch."""
    python = device_venv["python"]
    heavy = subprocess.run([python, "-c", "import importlib.util as u; print([m for m in ('torch', 'transformers', "
                            "'tensorflow', 'jax', 'onnx') if u.find_spec(m)])"], capture_output=True, text=True)
    assert heavy.stdout.strip() == "[]"
    measured = _deploy_bench_rollback(sshd, tiny_run, tmp_path, str(python), runs=100)
    assert "onnxruntime" in measured["device"]["packages"] and "torch" not in measured["device"]["packages"]
    assert measured["device"]["executable"] == str(python)  # the agent ran in that venv


@pytest.mark.aarch64
@needs_sshd
def test_the_device_side_runs_on_an_emulated_arm64_userland(sshd, tiny_run, tmp_path):
    """The same on arm64: the userland `verify --arch aarch64` builds, under qemu-user, with the
    aarch64 wheels of the runtime lock and the kit's runtime, reached over sshd."""
    from edgeslim.aarch64 import emulated_device_python

    python = emulated_device_python(tmp_path / "pi", "onnxruntime")
    measured = _deploy_bench_rollback(sshd, tiny_run, tmp_path, str(python), runs=100)
    print(measured["device"], measured["latency_ms"]["p50"])
    assert measured["device"]["arch"] == "aarch64" and "asimddp" in measured["device"]["isa_features"]
