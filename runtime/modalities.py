"""The registry of runtime modalities: what a bundle's `modality` may name.

Adding a modality = a `RuntimeModality` subclass in its own module (see `runtime/audio.py`),
its instance added to `MODALITIES` below (or `register_modality`), and its kit half in
`edgeslim/modalities/`; `tests/test_modality_contract.py` runs the contract over every entry.
"""

from __future__ import annotations

from edgeslim.errors import InputError
from edgeslim.runtime.audio import AUDIO
from edgeslim.runtime.image import IMAGE
from edgeslim.runtime.modality import RuntimeModality, check_modality
from edgeslim.runtime.text import TEXT

MODALITIES: dict[str, RuntimeModality] = {m.name: m for m in (TEXT, IMAGE, AUDIO)}


def register_modality(modality: RuntimeModality) -> RuntimeModality:
    """Add a runtime modality; it must fulfil the contract (`check_modality`)."""
    problems = check_modality(modality)
    if problems:
        raise TypeError(f"modality {getattr(modality, 'name', modality)!r} does not fulfil the contract: "
                        + "; ".join(problems))
    if modality.name in MODALITIES and MODALITIES[modality.name] is not modality:
        raise ValueError(f"a modality named {modality.name!r} is already registered")
    MODALITIES[modality.name] = modality
    return modality


def get_modality(name: str) -> RuntimeModality:
    try:
        return MODALITIES[name]
    except KeyError:
        raise InputError(f"unknown modality {name!r}; this runtime knows: {', '.join(MODALITIES)}") from None
