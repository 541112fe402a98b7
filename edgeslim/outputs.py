"""Writing what a user will look at. A file or folder appears whole or not at all (written beside
its final name, then renamed), and nothing that already exists is deleted or overwritten unless
the user said so (`force`, the CLI's --force). Standard library only."""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from edgeslim.errors import OutputError


def _check_parents(path: Path) -> None:
    """OutputError if a folder on the way to `path` is an existing file (mkdir would fail raw)."""
    for parent in Path(path).parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{path}: {parent} is a file, not a folder; give a path inside a folder")
            return


def check_new_file(path: Path, force: bool) -> None:
    """Raise OutputError unless a file may be written at `path` (absent, or present with force)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give the path of a file to write")
    _check_parents(path)
    if path.exists() and not force:
        raise OutputError(f"{path} exists; choose another path or pass --force to replace it")


def write_atomic(path: Path, data: str | bytes, force: bool = True) -> None:
    """Write `data` to `path` through a temporary file in the same folder and one rename.
    force=False refuses an existing file."""
    path = Path(path)
    check_new_file(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_new_dir(target: Path, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Raise OutputError unless a new folder may be published at `target`: absent or empty, or
    non-empty with force. Never the working directory or a folder above it, and never a folder
    that is or holds one of `inputs` (replacing it would delete what is being read)."""
    target = Path(target)
    resolved = target.resolve()
    if _inside(Path.cwd().resolve(), resolved):
        raise OutputError(f"{target} is the working directory or holds it; write into a new folder instead")
    for source in inputs:
        if _inside(Path(source).resolve(), resolved):
            raise OutputError(f"{target} is or holds the input {source}; write into a new folder instead")
    if target.exists() and not target.is_dir():
        raise OutputError(f"{target} exists and is not a folder; choose a new folder")
    _check_parents(target)
    if target.is_dir() and any(target.iterdir()) and not force:
        raise OutputError(f"{target} exists and is not empty; choose a new folder or pass --force to replace it")


def staging_beside(target: Path) -> Path:
    """An empty hidden folder next to `target`, on the same file system (so the rename is atomic)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=target.parent))


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the
    system or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0


def publish_dir(staged: Path, target: Path, force: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Move the finished folder `staged` to `target`. An existing non-empty `target` is replaced
    only with force, and only after the new folder is complete, by an atomic exchange (a reader
    sees the old folder or the new one, never none), then the old one is removed."""
    target = Path(target)
    check_new_dir(target, force, inputs)
    if not target.exists():
        os.replace(staged, target)
        return
    if _exchange(staged, target):
        shutil.rmtree(staged)  # now holds the old folder
        return
    # No atomic exchange here: two renames, the old folder kept aside until the new one is in.
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
    os.replace(target, aside / target.name)
    os.replace(staged, target)
    shutil.rmtree(aside)


def process_label() -> str:
    """This process, as a lock file or a study's trial names it: 'HOST pid N'."""
    import socket

    return f"{socket.gethostname()} pid {os.getpid()}"


@contextmanager
def exclusive_lock(path: Path, on_wait=None):
    """Hold an exclusive flock on `path` for the block; while another process holds it, call
    `on_wait(the holder's process_label)` once and wait. The kernel releases the lock when its
    process dies, so a killed holder never leaves it stuck."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                handle.seek(0)
                on_wait(handle.read().strip() or "another process")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(process_label())
            handle.flush()
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
