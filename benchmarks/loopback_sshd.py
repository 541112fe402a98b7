"""A real OpenSSH server on 127.0.0.1 to try deploy, device status, rollback and bench --on
against this machine as the "device" (the tests start one per module).

    python -m edgeslim.benchmarks.loopback_sshd FOLDER

Starts Debian's `sshd` with throwaway host and user keys written to FOLDER (key-only login as
this user, loopback only), prints the device URL prefix and the options to pass, and serves
until Ctrl-C. Needs `apt install openssh-server openssh-client`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgeslim.errors import EdgeslimError

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def sshd_available() -> bool:
    return Path(SSHD).exists() and shutil.which("ssh") is not None and shutil.which("ssh-keygen") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LoopbackSshd:
    port: int
    user: str
    identity: Path  # the user's private key
    known_hosts: Path  # holds the server's host key
    process: subprocess.Popen

    def url(self, path: Path | str) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def options(self, python: str = sys.executable) -> list[str]:
        return ["--identity", str(self.identity), "--known-hosts", str(self.known_hosts), "--remote-python", python]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_loopback_sshd(folder: Path, timeout: float = 20) -> LoopbackSshd:
    if not sshd_available():
        raise EdgeslimError("needs OpenSSH: apt install openssh-server openssh-client")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("host", "user"):
        for old in (folder / name, folder / f"{name}.pub"):
            old.unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True)
    (folder / "authorized_keys").write_text((folder / "user.pub").read_text())
    port = free_port()
    (folder / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {folder / 'host'}
AuthorizedKeysFile {folder / 'authorized_keys'}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PidFile {folder / 'sshd.pid'}
""")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", str(folder / "sshd_config")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise EdgeslimError(f"sshd did not start: {server.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.1)
    host_key = (folder / "host.pub").read_text().split()
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    user = os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    return LoopbackSshd(port, user, folder / "user", folder / "known_hosts", server)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="where the throwaway keys and config go")
    args = parser.parse_args(argv)
    server = start_loopback_sshd(Path(args.folder))
    print(f"sshd on 127.0.0.1:{server.port} (pid {server.process.pid}); a device folder on this machine is "
          f"{server.url('/ABSOLUTE/PATH')}")
    print("options: " + " ".join(server.options()))
    sys.stdout.flush()
    try:
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
