"""The base of every recipe, step and budget model: frozen, and an unknown key is an error that
lists the allowed ones."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator


# No count, size or index in a recipe comes near this; a 400-digit number is a mistake or a probe.
MAX_INTEGER = 2**53


def _too_large(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) > MAX_INTEGER
    if isinstance(value, (list, tuple)):
        return any(_too_large(item) for item in value)
    return False


class StrictModel(BaseModel):
    """Frozen; an unknown key is an error that lists the allowed ones; floats are finite (no
    .inf or .nan budgets); integers stay within +-2**53."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError(f"unknown key(s) {unknown}; allowed keys: {sorted(cls.model_fields)}")
            huge = sorted(str(key) for key, value in data.items() if _too_large(value))
            if huge:
                raise ValueError(f"{', '.join(huge)}: a number beyond +-2**53; use a value in the key's range")
        return data
