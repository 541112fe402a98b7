"""Model families: one module per architecture, one explicit registry.

    family = get_family("distilbert")
    model = load_encoder(ModelSpec(source="tiny-random", family="distilbert"))

Adding a family = writing a module with a `ModelFamily` subclass (see `bert.py`) and adding its
instance to `FAMILIES` below (or calling `register_family`); `tests/test_families.py` runs the
contract over every entry.
"""

from __future__ import annotations

from edgeslim.errors import RecipeError
from edgeslim.models.base import (MASK_VALUE, SURGERY_PARTS, InputSpec, ModelFamily, PruneSites, Surgery,
                                  weights_digest)
from edgeslim.models.bert import FAMILY as _bert
from edgeslim.models.cnn import MOBILENET_V2 as _mobilenet_v2
from edgeslim.models.cnn import RESNET as _resnet
from edgeslim.models.dinov2 import FAMILY as _dinov2
from edgeslim.models.distilbert import FAMILY as _distilbert
from edgeslim.models.dscnn import DS_CNN as _ds_cnn
from edgeslim.models.electra import FAMILY as _electra
from edgeslim.models.encoder import EncoderModel
from edgeslim.models.modernbert import FAMILY as _modernbert
from edgeslim.models.mpnet import FAMILY as _mpnet
from edgeslim.models.roberta import ROBERTA as _roberta
from edgeslim.models.roberta import XLM_ROBERTA as _xlm_roberta
from edgeslim.models.vit import FAMILY as _vit

__all__ = [
    "FAMILIES", "MASK_VALUE", "SURGERY_PARTS", "EncoderModel", "InputSpec", "ModelFamily",
    "PruneSites", "Surgery", "family_for_model_type", "get_family", "load_encoder", "register_family",
    "weights_digest",
]

FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in (_bert, _distilbert, _roberta, _xlm_roberta, _mpnet, _electra, _modernbert,  # text
                   _vit, _dinov2, _resnet, _mobilenet_v2,  # image
                   _ds_cnn)  # audio
}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add a family (an instance of a ModelFamily subclass) to the registry."""
    if family.name in FAMILIES and FAMILIES[family.name] is not family:
        raise RecipeError(f"a model family named {family.name!r} is already registered")
    from edgeslim.modalities import MODALITIES

    if family.modality not in MODALITIES:
        raise RecipeError(f"family {family.name!r}: modality {family.modality!r}; allowed: {', '.join(MODALITIES)}")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise RecipeError(f"unknown model family {name!r}; supported families: {', '.join(sorted(FAMILIES))}") from None


def family_for_model_type(model_type: str, where: str) -> ModelFamily:
    for family in FAMILIES.values():
        if model_type in family.model_types:
            return family
    known = sorted(t for f in FAMILIES.values() for t in f.model_types)
    raise RecipeError(f"{where}: model_type {model_type!r} belongs to no supported family; supported model "
                      f"types: {', '.join(known)} (or set model.family)")


def load_encoder(spec) -> EncoderModel:
    from edgeslim.models.sources import load_encoder as _load

    return _load(spec)
