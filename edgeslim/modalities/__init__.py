"""Modalities as plugins: one module per modality (text, image, audio), one explicit registry.

    modality = get_modality("audio")
    modality.runtime.embed_items(encoder, clips)      # the device's half (numpy)
    modality.task_data(recipe.data, ...)               # the kit's half: data, metrics, wording

Adding a modality = a `RuntimeModality` (runtime/<name>.py, registered in
`edgeslim.runtime.modalities`) and a `Modality` here (edgeslim/modalities/<name>.py, added to
`MODALITIES` below or with `register_modality`); `tests/test_modalities.py` runs the contract
over every entry and registers a toy one.
"""

from __future__ import annotations

from edgeslim.errors import RecipeError
from edgeslim.modalities.audio import AUDIO_KIT
from edgeslim.modalities.base import Batches, MetricSpec, Modality, TaskData, check_modality
from edgeslim.modalities.image import IMAGE_KIT
from edgeslim.modalities.text import TEXT_KIT

__all__ = ["MODALITIES", "Batches", "MetricSpec", "Modality", "TaskData", "check_modality", "get_modality",
           "register_modality"]

MODALITIES: dict[str, Modality] = {m.name: m for m in (TEXT_KIT, IMAGE_KIT, AUDIO_KIT)}


def register_modality(modality: Modality) -> Modality:
    """Add a modality (both halves: its runtime half is registered with the runtime too)."""
    from edgeslim.runtime.modalities import register_modality as register_runtime

    problems = check_modality(modality)
    if problems:
        raise RecipeError(f"modality {getattr(modality, 'name', modality)!r} does not fulfil the contract: "
                          + "; ".join(problems))
    if modality.name in MODALITIES and MODALITIES[modality.name] is not modality:
        raise RecipeError(f"a modality named {modality.name!r} is already registered")
    register_runtime(modality.runtime)
    MODALITIES[modality.name] = modality
    return modality


def get_modality(name: str) -> Modality:
    try:
        return MODALITIES[name]
    except KeyError:
        raise RecipeError(f"unknown modality {name!r}; registered modalities: {', '.join(MODALITIES)}") from None
