"""Seeded random parameter blobs, for a prototxt imported without its ``.caffemodel``.

He-normal weights (std ``sqrt(2 / fan_in)``) keep activations at the magnitude of pixel
inputs, so every LRN sits in the regime where its denominator matters, as in a trained
Caffe-era CNN. Each layer draws from its own stream (seed, layer name), so a layer's
values do not change when other layers are added or removed.
"""
from __future__ import annotations

import math
import zlib
from typing import List, Sequence

import numpy as np

from .params import ParamSpec

__all__ = ["RandomWeights"]


class RandomWeights:
    """Seeded random parameters; each layer draws from its own stream (seed, layer name),
    so a layer's values do not change when other layers are added or removed."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def fetch(self, layer_name: str, layer_type: str,
              specs: Sequence[ParamSpec]) -> List[np.ndarray]:
        rng = np.random.default_rng([self.seed, zlib.crc32(layer_name.encode("utf-8"))])
        return [self._draw(rng, spec) for spec in specs]

    @staticmethod
    def _draw(rng: np.random.Generator, spec: ParamSpec) -> np.ndarray:
        shape = tuple(spec.shape)
        if spec.init == "he":
            values = rng.standard_normal(shape) * math.sqrt(2.0 / max(spec.fan_in, 1))
        elif spec.init == "bias":
            values = rng.standard_normal(shape) * 0.1
        elif spec.init == "slope":
            values = np.full(shape, 0.25)
        elif spec.init == "scale":
            values = rng.uniform(0.5, 1.5, shape)
        elif spec.init == "mean":
            values = rng.standard_normal(shape)
        elif spec.init == "var":
            values = rng.uniform(0.5, 2.0, shape)
        elif spec.init == "one":
            values = np.ones(shape)
        else:  # a converter asked for an initialiser that does not exist
            raise ValueError(f"unknown random initialiser {spec.init!r}")
        return values.astype(np.float32)
