"""How numbers, shapes and named values are written for people: one formatter of each kind.

Model files store LRN constants as float32; ``float32_decimal`` turns such a value into
the shortest decimal that reads back to the same float32 (1e-4, not 9.99999974e-05), so
reports show what the prototxt or the exporter wrote.
"""
from __future__ import annotations

import enum
import json
import math
from typing import Sequence

import numpy as np


class TextEnum(str, enum.Enum):
    """A string enum that prints, formats and serializes (JSON) as its value."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def shortest_decimal(value: np.generic) -> float:
    """The shortest decimal that reads back to the numpy scalar ``value`` in its own dtype."""
    return float(str(value))


def float32_decimal(value: float) -> float:
    """The shortest decimal that rounds to the same float32 as ``value``."""
    return shortest_decimal(np.float32(value))


def shape_text(shape: Sequence[int]) -> str:
    """``(1, 3, 224, 224)``: a shape as the error messages write it."""
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def json_number(value):
    """A float for standard JSON: finite as it is, non-finite as the strings 'inf', '-inf', 'nan'."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return json_number(value)


def json_text(data) -> str:
    """Standard JSON (no bare NaN or Infinity: non-finite numbers become 'nan', 'inf', '-inf')."""
    return json.dumps(_json_safe(data), indent=2, allow_nan=False)
