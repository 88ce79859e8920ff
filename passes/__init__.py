"""The strategies, one module each, in an explicit registry (cheapest run-time cost first)."""
from __future__ import annotations

from typing import Dict

from lrnconv.strategy import Strategy

from .bn import batch_norm
from .decompose import decompose
from .fold import fold
from .keep import keep
from .l2 import l2
from .remove import remove

REGISTRY: Dict[str, Strategy] = {s.name: s for s in sorted((remove, fold, batch_norm, l2, decompose, keep),
                                                         key=lambda s: s.cost)}
"""Strategy name -> strategy object, ordered by cost: remove < fold < bn < l2 < decompose < keep."""
