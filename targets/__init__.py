"""Device targets: one module each, one explicit registry.

Adding a target = writing a module with a `Target` subclass (see `x86_cpu.py`) and adding its
instance to `TARGETS` below (or calling `register_target`); `tests/test_targets.py` runs the
contract over every entry.
"""

from __future__ import annotations

from edgeslim.errors import TargetError
from edgeslim.targets.base import Budget, BundleFiles, DeviceProfile, Target
from edgeslim.targets.arm_cortex_a import RPI4, RPI5
from edgeslim.targets.ethos_u import ETHOS_U55_128, ETHOS_U65_256, ETHOS_U85_256
from edgeslim.targets.intel_npu import TARGET as _intel_npu
from edgeslim.targets.jetson import JETSON_ORIN_NANO, JETSON_ORIN_NX
from edgeslim.targets.x86_cpu import TARGET as _x86_cpu

__all__ = ["TARGETS", "Budget", "BundleFiles", "DeviceProfile", "Target", "get_target", "register_target"]

TARGETS: dict[str, Target] = {
    _x86_cpu.name: _x86_cpu,
    RPI4.name: RPI4,
    RPI5.name: RPI5,
    ETHOS_U55_128.name: ETHOS_U55_128,
    ETHOS_U65_256.name: ETHOS_U65_256,
    ETHOS_U85_256.name: ETHOS_U85_256,
    _intel_npu.name: _intel_npu,
    JETSON_ORIN_NANO.name: JETSON_ORIN_NANO,
    JETSON_ORIN_NX.name: JETSON_ORIN_NX,
}


def register_target(target: Target) -> Target:
    """Add a target (an instance of a Target subclass) to the registry."""
    if target.name in TARGETS and TARGETS[target.name] is not target:
        raise TargetError(f"a target named {target.name!r} is already registered")
    TARGETS[target.name] = target
    return target


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise TargetError(f"unknown target {name!r}; registered targets: {', '.join(sorted(TARGETS))}") from None
