"""A real PostgreSQL server on 127.0.0.1 for a search study shared by several workers (the tests
start one per module; a user can try `--storage` with it before pointing at a real server).

    python -m edgeslim.benchmarks.loopback_postgres FOLDER

Runs Debian's `initdb` into FOLDER (a new, empty cluster; trust authentication for one user,
loopback only), starts `postgres` on a free port, prints the storage URL and serves until
Ctrl-C. The server refuses to run as root, so under root it runs as the `postgres` system user.
Needs `apt install postgresql`.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from edgeslim.benchmarks.loopback_sshd import free_port
from edgeslim.errors import EdgeslimError

USER = "edgeslim"


def postgres_bin() -> Path | None:
    """The folder of `initdb`, `pg_ctl` and `postgres`: on PATH, else Debian's newest
    /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                      if p.parent.parent.name.isdigit() else 0)
    return versions[-1].parent if versions else None


@dataclass
class LoopbackPostgres:
    folder: Path
    port: int
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        _run(self.bin / "pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop", check=False)


def _as_server_user() -> list[str]:
    """The command prefix that runs a server program as a non-root user (postgres refuses root)."""
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def _run(*command, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*_as_server_user(), *map(str, command)], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise EdgeslimError(f"{Path(str(command[0])).name} failed (exit {proc.returncode}): "
                            f"{(proc.stderr or proc.stdout)[-2000:]}")
    return proc


def start_loopback_postgres(folder: Path, timeout: float = 30) -> LoopbackPostgres:
    """initdb into `folder` (which must not exist: a fresh cluster) and start the server."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise EdgeslimError("needs PostgreSQL's server programs (initdb, pg_ctl): apt install postgresql")
    folder = Path(folder)
    folder.mkdir(parents=True)
    if os.geteuid() == 0:  # the server's own user must own its folder, and reach it
        account = pwd.getpwnam("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
        for parent in folder.parents:
            if parent.stat().st_mode & 0o001 == 0:
                raise EdgeslimError(f"{parent} is closed to other users, so the postgres user cannot reach {folder}; "
                                    "start it in a folder under /tmp")
    _run(bin_dir / "initdb", "-D", folder / "data", "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=200"
    _run(bin_dir / "pg_ctl", "-D", folder / "data", "-o", options, "-l", folder / "server.log", "-w",
         "-t", str(int(timeout)), "start")
    server = LoopbackPostgres(folder=folder, port=port, bin=bin_dir)
    deadline = time.monotonic() + timeout
    while _run(bin_dir / "pg_isready", "-h", "127.0.0.1", "-p", str(port), check=False).returncode != 0:
        if time.monotonic() > deadline:
            server.stop()
            raise EdgeslimError(f"PostgreSQL did not accept connections on port {port}; see {folder}/server.log")
        time.sleep(0.2)
    return server


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="a new folder for the cluster (under /tmp when run as root)")
    server = start_loopback_postgres(Path(parser.parse_args().folder))
    print(f"storage URL: {server.url}\n  edgeslim search RECIPE --storage {server.url} --study NAME\n"
          "Ctrl-C (or SIGTERM) stops it.", flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # a background job of a script ignores SIGINT
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
