"""A fleet of devices in one YAML file, and one command run on all of them.

    edgeslim deploy BUNDLE --inventory fleet.yaml
    edgeslim device status --inventory fleet.yaml

    # fleet.yaml
    defaults:                      # any device key, applied where a device does not set it
      identity: keys/fleet_ed25519       # paths on this machine: relative to this file
      known_hosts: keys/known_hosts
      remote_python: /opt/edgeslim/bin/python
      trusted_keys: /etc/edgeslim/keys   # a path on the device
    devices:
      - name: pi-kitchen
        url: ssh://pi@10.0.0.5/opt/models
      - name: jetson-lab
        url: ssh://ubuntu@10.0.0.9:2222/srv/models
        identity: keys/jetson_ed25519

Each device runs in its own thread with its own ssh processes; a device that fails (unreachable,
refused, killed) is reported with what it said and never stops or touches the others. The result
lists every device in file order.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Callable

from pydantic import Field, ValidationError, field_validator

from edgeslim.deploy import Device, parse_device
from edgeslim.errors import EdgeslimError, InputError
from edgeslim.schema import StrictModel

__all__ = ["DeviceOutcome", "Inventory", "load_inventory", "on_each_device"]

MAX_DEVICES = 1000
MAX_INVENTORY_BYTES = 1 << 20


class DeviceSettings(StrictModel):
    identity: str | None = None
    known_hosts: str | None = None
    remote_python: str | None = None
    trusted_keys: str | None = None


class DeviceEntry(DeviceSettings):
    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    url: str

    @field_validator("url")
    @classmethod
    def _ssh_url(cls, value: str) -> str:
        parse_device(value)  # InputError -> a validation error naming the key
        return value


class Inventory(StrictModel):
    defaults: DeviceSettings = DeviceSettings()
    devices: Annotated[list[DeviceEntry], Field(min_length=1, max_length=MAX_DEVICES)]

    @field_validator("devices")
    @classmethod
    def _unique(cls, devices: list[DeviceEntry]) -> list[DeviceEntry]:
        names = [d.name for d in devices]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"device names must be unique; repeated: {', '.join(twice)}")
        return devices


@dataclass(frozen=True)
class FleetDevice:
    name: str
    device: Device
    trusted_keys: str | None


@dataclass(frozen=True)
class DeviceOutcome:
    name: str
    url: str
    ok: bool
    result: dict  # what the device answered (on failure: the error and where current stayed)
    error: str | None = None


def load_inventory(path: str | Path) -> list[FleetDevice]:
    """The inventory's devices, each URL parsed and each local file checked, or an InputError
    naming the file and key."""
    import yaml

    from edgeslim.recipe import _safe_yaml

    path = Path(path)
    try:
        if path.stat().st_size > MAX_INVENTORY_BYTES:
            raise InputError(f"inventory {path}: over {MAX_INVENTORY_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"inventory {path}: cannot read it ({exc})") from None
    try:
        data = _safe_yaml(text, path)
    except (yaml.YAMLError, ValueError, RecursionError, EdgeslimError) as exc:
        raise InputError(f"inventory {path}: not a readable YAML document: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"inventory {path}: a YAML mapping with keys {sorted(Inventory.model_fields)}")
    try:
        inventory = Inventory.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise InputError(f"inventory {path}: {problems}") from None
    fleet = []
    for entry in inventory.devices:
        def setting(key: str):
            return getattr(entry, key) if getattr(entry, key) is not None else getattr(inventory.defaults, key)

        local = {key: (str((path.parent / Path(setting(key)).expanduser())) if setting(key) else None)
                 for key in ("identity", "known_hosts")}
        try:
            device = parse_device(entry.url, local["identity"], local["known_hosts"],
                                  setting("remote_python") or "python3")
        except InputError as exc:
            raise InputError(f"inventory {path}: device {entry.name}: {exc}") from None
        fleet.append(FleetDevice(entry.name, device, setting("trusted_keys")))
    return fleet


def on_each_device(fleet: list[FleetDevice], action: Callable[[FleetDevice], dict],
                   parallel: int = 8) -> list[DeviceOutcome]:
    """`action` on every device, `parallel` at a time; an error on one is its outcome only."""
    if not isinstance(parallel, int) or isinstance(parallel, bool) or parallel < 1:
        raise InputError(f"--parallel must be an integer >= 1, got {parallel!r}")

    def one(member: FleetDevice) -> DeviceOutcome:
        try:
            return DeviceOutcome(member.name, member.device.url, True, action(member))
        except EdgeslimError as exc:
            return DeviceOutcome(member.name, member.device.url, False, getattr(exc, "result", {}) or {},
                                 f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # noqa: BLE001 - one device's surprise must not stop the fleet
            return DeviceOutcome(member.name, member.device.url, False, {}, f"{type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=min(parallel, len(fleet))) as pool:
        return list(pool.map(one, fleet))
