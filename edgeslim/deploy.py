"""`edgeslim deploy`: a bundle onto a device over OpenSSH, into a new slot, switched atomically.

    edgeslim deploy BUNDLE ssh://user@host[:port]/path [--identity KEY] [--keep 3]
    edgeslim device status ssh://user@host[:port]/path
    edgeslim device rollback ssh://user@host[:port]/path

The transport is the system's `ssh` (OpenSSH: its config, agent, known hosts and host-key
checking apply; BatchMode, so nothing waits for a password). The bundle is checked here first,
streamed as a tar into a fresh `.incoming-*` folder under the device path, and handed to
`python -m edgeslim.runtime.device activate` there, which checks it again with the device's own
runtime (checksums, signature when the device trusts keys, a health check) before moving
`current`. What the device printed comes back as a dict; a failure anywhere leaves `current` on
the bundle it named before.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgeslim.errors import EdgeslimError, InputError
from edgeslim.runtime.bundle import MANIFEST_NAME, BundleReader, read_manifest
from edgeslim.runtime.device import INCOMING_PREFIX, crash_point
from edgeslim.runtime.signing import SIGNATURE_NAME

__all__ = ["DeployError", "Device", "bench_on_device", "deploy", "device_command", "parse_device"]

_HOST = re.compile(r"[A-Za-z0-9._:\-\[\]]+")
_USER = re.compile(r"[A-Za-z0-9._][A-Za-z0-9._-]*")


class DeployError(EdgeslimError):
    """SSH could not reach the device, or the device refused the bundle (what it said is kept)."""

    def __init__(self, message: str, result: dict | None = None):
        super().__init__(message)
        self.result = result or {}


@dataclass(frozen=True)
class Device:
    """Where a device's bundles live and how to reach it."""

    user: str | None
    host: str
    port: int
    path: str
    identity: Path | None = None
    known_hosts: Path | None = None
    remote_python: str = "python3"
    connect_timeout: int = 15

    @property
    def url(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"ssh://{user}{self.host}:{self.port}{self.path}"

    def ssh_args(self) -> list[str]:
        args = ["ssh", "-p", str(self.port), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "StrictHostKeyChecking=yes"]
        if self.identity is not None:
            args += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        if self.known_hosts is not None:
            args += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        return args + ["--", f"{self.user}@{self.host}" if self.user else self.host]


def parse_device(url: str, identity: str | Path | None = None, known_hosts: str | Path | None = None,
                 remote_python: str = "python3") -> Device:
    """ssh://[user@]host[:port]/absolute/path, or an InputError saying what is wrong."""
    if not isinstance(url, str) or not url.startswith("ssh://"):
        raise InputError(f"device {url!r}: give ssh://[user@]host[:port]/path (an absolute path on the device)")
    parts = urlsplit(url)
    try:
        port = parts.port or 22
    except ValueError:
        raise InputError(f"device {url!r}: the port must be a number from 1 to 65535") from None
    host, user, path = parts.hostname, parts.username, unquote(parts.path)
    if not host or not _HOST.fullmatch(host):
        raise InputError(f"device {url!r}: no host name")
    if user is not None and not _USER.fullmatch(user):
        raise InputError(f"device {url!r}: user name {user!r} is not a plain login name")
    if parts.password is not None or parts.query or parts.fragment:
        raise InputError(f"device {url!r}: no password, query or fragment (use --identity for the key)")
    if not path.startswith("/") or path == "/" or "\x00" in path or "/../" in f"{path}/":
        raise InputError(f"device {url!r}: the path must be an absolute folder below / on the device, got {path!r}")
    for name, value in (("--identity", identity), ("--known-hosts", known_hosts)):
        if value is not None and not Path(value).is_file():
            raise InputError(f"{name} {value}: no such file")
    return Device(user, host, port, path.rstrip("/"), Path(identity) if identity else None,
                  Path(known_hosts) if known_hosts else None, remote_python)


def _remote(device: Device, command: list[str], stdin=None, timeout: float = 600) -> subprocess.CompletedProcess:
    line = " ".join(shlex.quote(part) for part in command)
    try:
        return subprocess.run(device.ssh_args() + [line], input=stdin, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise DeployError("the `ssh` command is not installed here (OpenSSH client: apt install openssh-client)") \
            from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"{device.url}: no answer within {timeout:.0f} s") from None


def _agent(device: Device, *arguments: str) -> dict:
    """Run the device agent and return the JSON it printed, or raise DeployError."""
    done = _remote(device, [device.remote_python, "-m", "edgeslim.runtime.device", *arguments, "--root", device.path])
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if not isinstance(result, dict):
        detail = done.stderr.decode("utf-8", "replace").strip()[-800:]
        raise DeployError(f"{device.url}: the device agent gave no result (ssh exit {done.returncode}): {detail or 'no output'}; "
                          f"is edgeslim installed there for {device.remote_python}?")
    if not result.get("ok"):
        raise DeployError(f"{device.url}: {result.get('stage', 'device')} failed: {result.get('error')}; current "
                          f"stays {result.get('current')}", result)
    return result


def _upload(device: Device, bundle: Path, manifest) -> str:
    """Check the bundle's files here, then stream them (the manifest, every file it lists, the
    signature if any) as a tar into a new .incoming-* folder; its name."""
    BundleReader(bundle, manifest).verify_all()
    names = [MANIFEST_NAME, *manifest.files] + ([SIGNATURE_NAME] if (bundle / SIGNATURE_NAME).is_file() else [])
    made = _remote(device, ["sh", "-c", 'mkdir -p -- "$1" && cd -- "$1" && mktemp -d "$2XXXXXXXX"', "sh",
                            device.path, INCOMING_PREFIX])
    if made.returncode != 0:
        raise DeployError(f"{device.url}: cannot make an upload folder: "
                          f"{made.stderr.decode('utf-8', 'replace').strip()[-500:]}")
    incoming = made.stdout.decode().strip()
    if not incoming.startswith(INCOMING_PREFIX) or "/" in incoming:
        raise DeployError(f"{device.url}: unexpected upload folder name {incoming!r}")
    command = " ".join(shlex.quote(p) for p in ["tar", "-x", "-f", "-", "-C", f"{device.path}/{incoming}"])
    process = subprocess.Popen(device.ssh_args() + [command], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=process.stdin, mode="w|") as archive:
            for number, name in enumerate(names):  # listed files only, as regular files (BundleReader checked them)
                archive.add(bundle / name, arcname=name, recursive=False)
                if number == len(names) // 2:
                    process.stdin.flush()
                    crash_point("uploading")  # half the files sent
        process.stdin.close()
    except BrokenPipeError:
        pass  # the far end stopped reading: its exit status and stderr say why
    error = process.stderr.read()
    process.wait(timeout=600)
    if process.returncode != 0:
        raise DeployError(f"{device.url}: upload failed (ssh/tar exit {process.returncode}): "
                          f"{error.decode('utf-8', 'replace').strip()[-500:]}")
    return incoming


def deploy(bundle: Path, device: Device, keep: int = 3, trusted_keys: str | None = None) -> dict:
    """Check `bundle` here, upload it, and let the device activate it. The device's result."""
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise InputError(f"--keep must be an integer >= 1, got {keep!r}")
    bundle = Path(bundle)
    incoming = _upload(device, bundle, read_manifest(bundle))
    crash_point("uploaded")
    arguments = ["activate", "--incoming", incoming, "--keep", str(keep)]
    if trusted_keys:
        arguments += ["--trusted-keys", trusted_keys]
    return _agent(device, *arguments)


def device_command(device: Device, command: str, trusted_keys: str | None = None) -> dict:
    """`status` or `rollback` on the device."""
    arguments = [command] + (["--trusted-keys", trusted_keys] if trusted_keys and command == "rollback" else [])
    return _agent(device, *arguments)


def bench_on_device(bundle: Path, device: Device, trusted_keys: str | None = None, threads: int | None = None,
                    batch: int | None = None, seq_len: int | None = None, warmup: int = 10, runs: int = 100,
                    seconds: float = 10.0) -> dict:
    """`edgeslim bench` run by the device's own runtime on `bundle`: its deployed slot when the
    device has this exact bundle (same identity), else a checked upload deleted afterwards. The
    bench JSON, with `on` (the device URL) and the device's identity."""
    from edgeslim.runtime.encoder import bundle_identity

    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    identity = bundle_identity(manifest)
    arguments = ["bench", "--warmup", str(warmup), "--runs", str(runs), "--seconds", str(seconds)]
    for flag, value in (("--threads", threads), ("--batch", batch), ("--seq-len", seq_len)):
        if value is not None:
            arguments += [flag, str(value)]
    if trusted_keys:
        arguments += ["--trusted-keys", trusted_keys]
    if identity in _agent(device, "status")["slots"]:
        result = _agent(device, *arguments, "--slot", identity)
    else:
        result = _agent(device, *arguments, "--incoming", _upload(device, bundle, manifest))
    measured = result["bench"]
    if measured.get("bundle_id") != identity:
        raise DeployError(f"{device.url}: the device measured {measured.get('bundle_id')}, not {identity}", result)
    measured["latency_ms"]["where"] += f" --on {device.url}"
    return {**measured, "on": device.url, "slot": result.get("slot")}
