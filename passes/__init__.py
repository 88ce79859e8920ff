"""The strategies, one module each, in explicit, declared orders.

``REGISTRY`` lists every strategy by name, from the cheapest at run time to the most
expensive (``keep`` leaves the native LRN). ``AUTO_ORDER`` is what ``auto`` tries at each
site, first to last; ``AUTO_FALLBACK`` is the exact rewrite it ends with.
"""
from __future__ import annotations

from typing import Dict, Tuple

from lrnconv.engine.protocol import Strategy

from .bn import batch_norm
from .decompose import decompose
from .fold import fold
from .keep import keep
from .l2 import l2
from .remove import remove

REGISTRY: Dict[str, Strategy] = {
    "remove": remove,       # nothing left at run time
    "fold": fold,           # nothing left, or one per-channel Mul
    "bn": batch_norm,       # one BatchNormalization, foldable by runtimes
    "l2": l2,               # LpNormalization and a Mul
    "decompose": decompose,  # a few primitive ops, exact
    "keep": keep,           # the native LRN
}
"""Strategy name -> strategy object, cheapest run-time cost first."""

AUTO_ORDER: Tuple[Strategy, ...] = (remove, fold, batch_norm, l2, decompose)
"""The candidates ``auto`` tries at each site, cheapest first."""

AUTO_FALLBACK: Strategy = decompose
"""What ``auto`` settles on when no cheaper candidate is within tolerance (exact)."""
