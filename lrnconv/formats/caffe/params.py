"""What a converter expects of a layer's parameter blobs, whatever supplies them.

A Caffe layer converter lists its blobs as ``ParamSpec`` (role, shape, how to draw it at
random); the importer hands the list to a weights source: ``CaffemodelWeights`` reads and
checks them from a ``.caffemodel``, ``RandomWeights`` draws seeded values of the shapes.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple

__all__ = ["ParamSpec"]


class ParamSpec(NamedTuple):
    """One parameter blob a converter expects: its role, shape and random initialiser.

    ``init`` names how :class:`RandomWeights` draws it: ``"he"`` (normal, std
    ``sqrt(2 / fan_in)``), ``"bias"`` (normal, std 0.1), ``"slope"`` (0.25, PReLU's
    default), ``"scale"`` (uniform 0.5-1.5), ``"mean"`` (normal, std 1), ``"var"``
    (uniform 0.5-2) or ``"one"``.
    """

    role: str
    shape: Tuple[int, ...]
    init: str
    fan_in: int = 1
