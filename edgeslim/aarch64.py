"""Run a bundle on a real arm64 Debian userland under qemu-user, with no torch installed there.

    verify_on_aarch64(bundle, texts) -> AarchReport

The userland (mmdebstrap of Debian bookworm arm64: python3.11 and the C/C++ runtimes) and the
aarch64 wheels are cached under EDGESLIM_AARCH64_CACHE (default ~/.cache/edgeslim/aarch64) and
built once. The wheels are exactly what a device installs: the hashed lock of the bundle
backend's extra (edgeslim/runtime/locks/<extra>.txt), downloaded for aarch64 tags; a changed lock
rebuilds them. The kit's own runtime is copied in as
source files: edgeslim/__init__.py, errors.py and runtime/ (pure Python).

qemu-user is a functional check, ~300x slower than a real core: no latency comes from here.
onnxruntime >= 1.28 reads /proc/cpuinfo and sysfs at import and crashes on the x86 host's; the
userland gets a Raspberry Pi 5's (qemu-user resolves absolute paths inside -L ROOT first).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeslim.errors import EdgeslimError

PACKAGES = "python3.11,libpython3.11-stdlib,libstdc++6,libgomp1,zlib1g,libffi8"
PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_27_aarch64",
             "manylinux_2_28_aarch64", "manylinux_2_34_aarch64")
DEFAULT_CPU = "cortex-a76"  # for bundles whose target names no qemu CPU model
_PI5_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
    "asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\n"
    "CPU part\t: 0xd0b\nCPU revision\t: 1\n\n" for i in range(4))

_GUEST = r"""
import json, sys, platform, importlib.util
import numpy as np
from edgeslim.runtime import load
spec = json.load(open(sys.argv[1]))
encoder = load(spec["bundle"], threads=1)
items = spec["items"]
vectors = encoder.encode_items(items, batch_size=8)
np.save(spec["out"], vectors)
print(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                  "providers": encoder.providers,
                  "heavy_importable": [m for m in ("torch", "transformers", "tensorflow") if importlib.util.find_spec(m)]}))
"""


@dataclass
class AarchReport:
    machine: str
    cpu: str
    providers: list[str]
    heavy_importable: list[str]
    sentences: int  # items: sentences, images or clips
    cosine_min: float
    cosine_mean: float
    guest_embeddings: np.ndarray = field(repr=False, default=None)
    host_embeddings: np.ndarray = field(repr=False, default=None)


def default_cache() -> Path:
    return Path(os.environ.get("EDGESLIM_AARCH64_CACHE", Path.home() / ".cache" / "edgeslim" / "aarch64"))


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise EdgeslimError(f"{tool} not found; install it with `apt-get install {package}` (Debian)")
    return path


def _run(cmd: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        raise EdgeslimError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd[:4])} ...\n{proc.stderr[-2000:]}")
    return proc


def prepare_userland(cache: Path, lock: Path, log=print) -> tuple[Path, Path]:
    """-> (rootfs, site-packages with `lock` installed) for arm64, built once into `cache`."""
    from edgeslim.runtime.bundle import sha256_file

    rootfs, site = cache / "rootfs", cache / f"site-{lock.stem}"
    if not (rootfs / "usr/bin/python3.11").exists():
        log(f"  building an arm64 Debian userland in {rootfs} (mmdebstrap)")
        tmp = cache / "rootfs.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        cache.mkdir(parents=True, exist_ok=True)
        _run([_need("mmdebstrap", "mmdebstrap"), "--variant=extract", "--arch=arm64", f"--include={PACKAGES}",
              "bookworm", str(tmp)], "mmdebstrap")
        (tmp / "proc").mkdir(exist_ok=True)
        (tmp / "proc/cpuinfo").write_text(_PI5_CPUINFO)
        cpu = tmp / "sys/devices/system/cpu"
        cpu.mkdir(parents=True, exist_ok=True)
        for name in ("possible", "present", "online"):
            (cpu / name).write_text("0-3\n")
        os.replace(tmp, rootfs)
    lock_digest = sha256_file(lock)
    done = site / ".complete"
    if not done.exists() or done.read_text().strip() != lock_digest:
        log(f"  fetching aarch64 wheels of {lock.name} into {site}")
        shutil.rmtree(site, ignore_errors=True)
        wheels = cache / f"wheels-{lock.stem}"
        shutil.rmtree(wheels, ignore_errors=True)
        tags = [arg for p in PLATFORMS for arg in ("--platform", p)]
        common = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", *tags]
        _run([sys.executable, "-m", "pip", "download", "-q", "--require-hashes", "-d", str(wheels), *common,
              "-r", str(lock)], "pip download")
        _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), *common,
              *map(str, sorted(wheels.glob("*.whl")))], "pip install --target")
        done.write_text(lock_digest + "\n")
    return rootfs, site


def _copy_runtime(dest: Path) -> None:
    """The kit's torch-free part, as source files: edgeslim/{__init__,errors}.py and runtime/."""
    import edgeslim
    import edgeslim.runtime

    core = Path(edgeslim.__file__).parent
    (dest / "edgeslim").mkdir(parents=True)
    for name in ("__init__.py", "errors.py"):
        shutil.copyfile(core / name, dest / "edgeslim" / name)
    shutil.copytree(Path(edgeslim.runtime.__file__).parent, dest / "edgeslim" / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__"))


def verify_on_aarch64(bundle: Path, texts: list[str], cpu: str = "cortex-a76", cache: Path | None = None,
                      log=print) -> AarchReport:
    """Encode `texts` (sentences, or image / audio file paths) with `bundle` on emulated aarch64
    and on this host; compare pooled cosines."""
    from edgeslim.runtime import load, read_manifest
    from edgeslim.runtime.backends import device_lock

    qemu = _need("qemu-aarch64-static", "qemu-user-static")
    lock = device_lock(read_manifest(Path(bundle)).backend)
    rootfs, site = prepare_userland(cache or default_cache(), lock, log)
    with tempfile.TemporaryDirectory(prefix="edgeslim-aarch64-") as tmp:
        tmp = Path(tmp)
        _copy_runtime(tmp / "kit")
        (tmp / "guest.py").write_text(_GUEST)
        spec = {"bundle": str(Path(bundle).resolve()), "items": [str(t) for t in texts], "out": str(tmp / "guest.npy")}
        (tmp / "spec.json").write_text(json.dumps(spec))
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{tmp / 'kit'}:{site}", "PYTHONNOUSERSITE": "1",
               "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        proc = _run([qemu, "-cpu", cpu, "-L", str(rootfs), str(rootfs / "usr/bin/python3.11"), "-B",
                     str(tmp / "guest.py"), str(tmp / "spec.json")], "the aarch64 run", env=env)
        guest_info = json.loads(proc.stdout.strip().splitlines()[-1])
        guest = np.load(tmp / "guest.npy")
    host_encoder = load(bundle, threads=1)
    host = host_encoder.encode_items([str(t) for t in texts], batch_size=8)
    cosines = (guest * host).sum(1) / (np.linalg.norm(guest, axis=1) * np.linalg.norm(host, axis=1))
    return AarchReport(machine=guest_info["machine"], cpu=cpu, providers=guest_info["providers"],
                       heavy_importable=guest_info["heavy_importable"], sentences=len(texts),
                       cosine_min=float(cosines.min()), cosine_mean=float(cosines.mean()),
                       guest_embeddings=guest, host_embeddings=host)


def emulated_device_python(folder: Path, backend: str = "onnxruntime", cpu: str = DEFAULT_CPU,
                           cache: Path | None = None, log=print) -> Path:
    """A `python3` for an emulated arm64 device: a script in `folder` that runs the userland's
    Python under qemu-user with the aarch64 wheels of `backend`'s device lock and a copy of the
    kit's runtime (no torch). Give it to `edgeslim deploy --remote-python` with an sshd on this
    machine to try deploy, bench --on and rollback against an arm64 "device" without a Pi."""
    from edgeslim.runtime.backends import device_lock

    qemu = _need("qemu-aarch64-static", "qemu-user-static")
    rootfs, site = prepare_userland(cache or default_cache(), device_lock(backend), log)
    folder = Path(folder)
    _copy_runtime(folder / "kit")
    script = folder / "python3"
    script.write_text("#!/bin/sh\n"
                      f"export PYTHONPATH={folder / 'kit'}:{site} PYTHONNOUSERSITE=1 OMP_NUM_THREADS=1 "
                      "TOKENIZERS_PARALLELISM=false\n"
                      f'exec {qemu} -cpu {cpu} -L {rootfs} {rootfs / "usr/bin/python3.11"} "$@"\n')
    script.chmod(0o755)
    return script
