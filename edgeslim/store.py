"""The search's artifact store: a folder every worker of a study reads and writes, on one machine
or shared by many (NFS, a cluster file system). What a candidate makes is kept under a key, the
sha256 of everything that decides it: the teacher, the data, the benchmark settings, the target,
its budget and the candidate's planned steps (the same step identities the builder caches
prefixes by), and for measurements the host kind. Equal keys are built once, wherever they run:

    store = ArtifactStore(Path("/shared/edgeslim-store"))
    key = store.key({"steps": [...], ...})
    with store.claim(key, "l0.2.4-int8-dynamic") as entry:   # waits while another worker builds it
        outcome = entry.outcome()                             # what a worker before us stored, or None
        ...; entry.write_outcome({...})

    <root>/candidates/<key>/outcome.json   the measured Result, or why the candidate was pruned
    <root>/candidates/<key>/<name>/        its bundle (and <name>.tar.gz)
    <root>/distill/                        distillation checkpoints, keyed by their own run keys
    <root>/locks/<key>.lock                held (flock) while a worker builds that key

A lock is the kernel's (flock): a killed worker's lock goes with its process, and the next
worker builds the key afresh. Outcomes are written in one rename, so a reader never sees half of
one. Standard library only."""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgeslim.outputs import exclusive_lock, write_atomic

OUTCOME = "outcome.json"


@dataclass(frozen=True)
class StoreEntry:
    """One key's folder, held by this process while its `claim` lasts."""

    key: str
    folder: Path

    def outcome(self) -> dict | None:
        path = self.folder / OUTCOME
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def write_outcome(self, outcome: dict) -> None:
        write_atomic(self.folder / OUTCOME, json.dumps(outcome, indent=2))


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    @staticmethod
    def key(identity: dict) -> str:
        body = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()[:32]

    @property
    def distill_dir(self) -> Path:
        return self.root / "distill"

    def folder(self, key: str) -> Path:
        return self.root / "candidates" / key

    def outcome(self, key: str) -> dict | None:
        """A key's stored outcome, read without the lock (it is written in one rename)."""
        return StoreEntry(key, self.folder(key)).outcome()

    @contextmanager
    def claim(self, key: str, what: str, log=print):
        """Hold `key` while this block builds it; another worker asking for it waits here."""
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.root / "locks" / f"{key}.lock",
                            lambda other: log(f"    {what}: waiting for {other}, which is building it")):
            yield StoreEntry(key, folder)
