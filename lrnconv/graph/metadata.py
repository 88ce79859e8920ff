"""What lrnconv keeps in a model's ``metadata_props``, in one place.

``lrnconv:sites``
    LRN sites an importer described because no ``LRN`` node marks them (Caffe
    WITHIN_CHANNEL arrives as its decomposition): a JSON list of ``{"name", "family",
    "size", "alpha", "beta", "bias", "input", "output"}``. ACROSS_CHANNELS sites are listed
    too, so that their family (``caffe-across``) survives the import.
``lrnconv:notes``
    What the importer wants a user to know (random weights, a batch size fixed by the
    net, ignored fields): a JSON list of strings.
"""
from __future__ import annotations

import json
from typing import Collection, Dict, List

import onnx

SITES_KEY = "lrnconv:sites"
NOTES_KEY = "lrnconv:notes"


def _entry(model: onnx.ModelProto, key: str):
    for prop in model.metadata_props:
        if prop.key == key:
            return prop
    return None


def _put(model: onnx.ModelProto, key: str, value) -> None:
    prop = _entry(model, key) or model.metadata_props.add(key=key)
    prop.value = json.dumps(value)


def declared_sites(model: onnx.ModelProto) -> Dict[str, dict]:
    """Sites that an importer described in the model's metadata, keyed by name."""
    prop = _entry(model, SITES_KEY)
    return {entry["name"]: entry for entry in json.loads(prop.value)} if prop is not None else {}


def declare_sites(model: onnx.ModelProto, sites: List[dict]) -> None:
    """Record site descriptions (see the module docstring) in the model."""
    _put(model, SITES_KEY, sites)


def forget_sites(model: onnx.ModelProto, names: Collection[str]) -> None:
    """Drop described sites that a rewrite removed, so a later discovery does not look for them."""
    declared = declared_sites(model)
    if declared and any(name in declared for name in names):
        _put(model, SITES_KEY, [entry for name, entry in declared.items() if name not in names])


def import_notes(model: onnx.ModelProto) -> List[str]:
    """What an importer said about the model (e.g. 'no --weights: seeded random weights')."""
    prop = _entry(model, NOTES_KEY)
    return list(json.loads(prop.value)) if prop is not None else []


def record_notes(model: onnx.ModelProto, notes: List[str]) -> None:
    """Store the importer's notes in the model."""
    _put(model, NOTES_KEY, notes)
