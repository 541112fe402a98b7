"""The device's side of `edgeslim deploy`: versioned slots, a health check, an atomic switch.

Runs on the device with the runtime alone (no torch), called over SSH by the kit:

    python -m edgeslim.runtime.device activate --root ROOT --incoming .incoming-XXXX [--keep 3]
    python -m edgeslim.runtime.device status   --root ROOT
    python -m edgeslim.runtime.device rollback --root ROOT
    python -m edgeslim.runtime.device bench    --root ROOT (--slot NAME@DIGEST | --incoming .incoming-XXXX)

Layout under ROOT (the folder the deploy URL names):

    slots/<name>@<digest>/   one bundle per slot, named by its identity (name + manifest digest)
    current -> slots/...     a symlink, replaced by one rename: it always names a whole slot
    state.json               activation history and the last health check (written by rename)
    .incoming-*/             uploads in progress; never current; an activate sweeps those an hour old

Activation: the upload is checked where it landed: `load` (every file's sha256, and the
signature when the device has trusted keys: EDGESLIM_TRUSTED_KEYS or --trusted-keys) and the
health check (runtime/health.py: the modality's health-check items encoded here against the
reference embeddings the kit stored in the manifest at build time, cosine >= the bundle's floor). Only then does it become its slot by one rename and
`current` move to it. A failed check deletes the upload and leaves `current` where it was. Every command prints one JSON object; exit 0 on success,
1 when the check or the switch failed, 2 on bad arguments. One deploy at a time per ROOT: a lock
file (flock) serialises activate and rollback; a bench holds it shared, so no deploy prunes the
slot it is timing. A bench of an upload (a bundle not deployed here) deletes the upload after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from edgeslim.errors import EdgeslimError

STATE_NAME = "state.json"
CURRENT_NAME = "current"
SLOTS_NAME = "slots"
INCOMING_PREFIX = ".incoming-"

# Fault injection for the kill-at-each-step test (tests/test_deploy.py): when this variable names
# one of CRASH_STEPS, the process SIGKILLs itself there, as a power cut or an OOM kill would.
CRASH_ENV = "EDGESLIM_CRASH_AT"
CRASH_STEPS = ("uploading", "uploaded", "checked", "slotted", "link-staged", "switched", "state-written", "pruning")


def crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _read_state(root: Path) -> dict:
    try:
        state = json.loads((root / STATE_NAME).read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(root: Path, state: dict) -> None:
    staged = root / f".{STATE_NAME}.{os.getpid()}"
    staged.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(staged, root / STATE_NAME)


def current_slot(root: Path) -> str | None:
    link = root / CURRENT_NAME
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


def _switch(root: Path, slot: str) -> None:
    """Point `current` at slots/<slot> with one rename of a new symlink (atomic on POSIX)."""
    staged = root / f".{CURRENT_NAME}.{os.getpid()}"
    if staged.is_symlink() or staged.exists():
        staged.unlink()
    os.symlink(f"{SLOTS_NAME}/{slot}", staged)
    crash_point("link-staged")
    os.replace(staged, root / CURRENT_NAME)


def health_check(bundle: Path, trusted_keys: str | None = None) -> dict:
    """Load (checksums, signature when keys are configured) and run the bundle's health check
    (runtime/health.py: its items against the reference embeddings in its manifest)."""
    from edgeslim.runtime.encoder import load
    from edgeslim.runtime.health import check_health

    started = time.perf_counter()
    try:
        encoder = load(bundle, trusted_keys=trusted_keys)
        found = check_health(encoder)
    except EdgeslimError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "at": _now()}
    return {**found, "identity": encoder.identity, "signed_by": encoder.signed_by,
            "seconds": round(time.perf_counter() - started, 3), "at": _now()}


def _slot_name(bundle: Path) -> str:
    from edgeslim.runtime.bundle import read_manifest
    from edgeslim.runtime.encoder import bundle_identity

    return bundle_identity(read_manifest(bundle))


def _prune(root: Path, state: dict, keep: int) -> list[str]:
    """Delete slots beyond the `keep` most recently activated (the current one always stays)."""
    recent: list[str] = []
    for slot in reversed(state.get("history", [])):
        if slot not in recent:
            recent.append(slot)
    keep_set = set(recent[:keep]) | {current_slot(root)}
    removed = []
    for path in sorted((root / SLOTS_NAME).iterdir()):
        if path.is_dir() and not path.is_symlink() and path.name not in keep_set:
            shutil.rmtree(path)
            removed.append(path.name)
            crash_point("pruning")
    return removed


STALE_UPLOAD_SECONDS = 3600


def _sweep_incoming(root: Path) -> None:
    """What a killed deploy left behind: uploads untouched for an hour (a live upload of another
    deploy may be in progress; they never became slots), and the staged link or state file of a
    killed agent (only the agent holding the lock writes those, and that is this one)."""
    cutoff = time.time() - STALE_UPLOAD_SECONDS
    for path in root.glob(f"{INCOMING_PREFIX}*"):
        if path.is_dir() and not path.is_symlink() and path.stat().st_mtime < cutoff:
            shutil.rmtree(path, ignore_errors=True)
    for path in [*root.glob(f".{CURRENT_NAME}.*"), *root.glob(f".{STATE_NAME}.*")]:
        if path.is_symlink() or path.is_file():
            path.unlink()


def activate(root: Path, incoming: str, keep: int, trusted_keys: str | None) -> dict:
    upload = root / incoming
    if not incoming.startswith(INCOMING_PREFIX) or "/" in incoming or not upload.is_dir():
        return {"ok": False, "stage": "arguments", "error": f"{upload} is not an upload folder of this root"}
    slots = root / SLOTS_NAME
    slots.mkdir(exist_ok=True)
    try:
        slot = _slot_name(upload)
    except EdgeslimError as exc:
        shutil.rmtree(upload, ignore_errors=True)
        return {"ok": False, "stage": "verify", "error": f"{type(exc).__name__}: {exc}", "current": current_slot(root)}
    # What was uploaded is what gets checked, even when a slot of the same digest exists: the
    # upload may carry another signature.
    health = health_check(upload, trusted_keys)
    crash_point("checked")
    state = _read_state(root)
    state["last_health"] = {"slot": slot, **health}
    if not health["ok"]:
        shutil.rmtree(upload, ignore_errors=True)  # never a slot, never current
        _write_state(root, state)
        _sweep_incoming(root)
        return {"ok": False, "stage": "health", "slot": slot, "error": health["error"], "current": current_slot(root)}
    target = slots / slot
    if target.exists():
        shutil.rmtree(upload)  # this exact bundle (same digest) is already here, checked again just now
    else:
        os.rename(upload, target)  # the slot appears whole
    crash_point("slotted")
    _sweep_incoming(root)
    previous = current_slot(root)
    _switch(root, slot)
    crash_point("switched")
    state.setdefault("history", []).append(slot)
    _write_state(root, state)  # before pruning: a kill there leaves the history of what is current
    crash_point("state-written")
    removed = _prune(root, state, keep)
    return {"ok": True, "slot": slot, "previous": previous, "current": current_slot(root), "removed": removed,
            "health": health}


def rollback(root: Path, trusted_keys: str | None) -> dict:
    """Back to the slot that was current before this one (health-checked first)."""
    current = current_slot(root)
    state = _read_state(root)
    candidates = [s for s in reversed(state.get("history", [])) if s != current and (root / SLOTS_NAME / s).is_dir()]
    if not candidates:
        return {"ok": False, "stage": "rollback", "error": "no earlier slot on this device to roll back to",
                "current": current}
    slot = candidates[0]
    health = health_check(root / SLOTS_NAME / slot, trusted_keys)
    state["last_health"] = {"slot": slot, **health}
    if not health["ok"]:
        _write_state(root, state)
        return {"ok": False, "stage": "health", "slot": slot, "error": health["error"], "current": current}
    _switch(root, slot)
    state.setdefault("history", []).append(slot)
    _write_state(root, state)
    return {"ok": True, "slot": slot, "previous": current, "current": current_slot(root), "health": health}


def bench(root: Path, slot: str | None, incoming: str | None, trusted_keys: str | None, point: dict) -> dict:
    """The latency harness (runtime/bench.py) on a slot, or on an upload that is deleted after."""
    from edgeslim.runtime.bench import bench_bundle

    name = slot or incoming
    folder = (root / SLOTS_NAME / name) if slot else (root / name)
    if "/" in name or name in ("", ".", "..") or not folder.is_dir() or (incoming and not incoming.startswith(
            INCOMING_PREFIX)):
        return {"ok": False, "stage": "arguments", "error": f"{folder} is not a slot or upload of this root",
                "current": current_slot(root)}
    try:
        result = bench_bundle(folder, trusted_keys=trusted_keys, **point)
    except EdgeslimError as exc:
        return {"ok": False, "stage": "bench", "error": f"{type(exc).__name__}: {exc}", "current": current_slot(root)}
    finally:
        if incoming:
            shutil.rmtree(folder, ignore_errors=True)
    return {"ok": True, "bench": result, "slot": slot, "current": current_slot(root)}


def status(root: Path) -> dict:
    state = _read_state(root)
    slots_dir = root / SLOTS_NAME
    slots = sorted(p.name for p in slots_dir.iterdir() if p.is_dir()) if slots_dir.is_dir() else []
    return {"ok": True, "root": str(root), "current": current_slot(root), "slots": slots,
            "history": state.get("history", []), "last_health": state.get("last_health"),
            "incoming": sorted(p.name for p in root.glob(f"{INCOMING_PREFIX}*"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeslim.runtime.device", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("activate", "status", "rollback", "bench"):
        command = sub.add_parser(name)
        command.add_argument("--root", required=True)
        if name != "status":
            command.add_argument("--trusted-keys", default=None)
        if name == "activate":
            command.add_argument("--incoming", required=True)
            command.add_argument("--keep", type=int, default=3)
    benching = sub.choices["bench"]
    which = benching.add_mutually_exclusive_group(required=True)
    which.add_argument("--slot")
    which.add_argument("--incoming")
    for flag in ("threads", "batch", "seq-len"):
        benching.add_argument(f"--{flag}", type=int, default=None)
    benching.add_argument("--warmup", type=int, default=10)
    benching.add_argument("--runs", type=int, default=100)
    benching.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    root = Path(args.root)
    if not root.is_dir():
        print(json.dumps({"ok": False, "stage": "arguments", "error": f"{root} is not a folder on this device"}))
        return 2
    if args.command == "status":
        print(json.dumps(status(root)))
        return 0
    if args.command == "bench":
        point = {"threads": args.threads, "batch": args.batch, "seq_len": args.seq_len, "warmup": args.warmup,
                 "min_runs": args.runs, "min_seconds": args.seconds}
        with open(root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)  # deploys wait; other benches need not
            result = bench(root, args.slot, args.incoming, args.trusted_keys, point)
        print(json.dumps(result))
        return 0 if result["ok"] else 1
    if args.command == "activate" and args.keep < 1:
        print(json.dumps({"ok": False, "stage": "arguments", "error": f"--keep must be >= 1, got {args.keep}"}))
        return 2
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one activation or rollback at a time per root
        result = (activate(root, args.incoming, args.keep, args.trusted_keys) if args.command == "activate"
                  else rollback(root, args.trusted_keys))
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
