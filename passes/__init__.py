"""The strategies, one module each, in an explicit registry (cheapest run-time cost first)."""
from __future__ import annotations

from typing import Dict

from lrnconv.strategy import Strategy

from .decompose import decompose
from .keep import keep

REGISTRY: Dict[str, Strategy] = {s.name: s for s in sorted((decompose, keep), key=lambda s: s.cost)}
"""Strategy name -> strategy object, ordered by cost."""
