"""What the per-channel-scale strategies (``fold``, ``bn``) share: the first half of their check.

An LRN is ``y = x * d^-beta`` with ``d > 0``; a per-channel scale (fold) or affine map (bn)
stands for it exactly when the factor does not depend on the data (``alpha = 0`` or
``beta = 0``), and approximately otherwise.
"""
from __future__ import annotations

from lrnconv.engine.protocol import APPROXIMATE, EXACT, NOT_APPLICABLE, Verdict
from lrnconv.graph.sites import LrnSite


def scale_verdict(site: LrnSite, exact_suffix: str, approximate: str) -> Verdict:
    """Exact for a constant scale, approximate otherwise, not applicable for a degenerate site."""
    reason = site.rank_reason or site.degenerate_reason
    if reason:
        return Verdict(NOT_APPLICABLE, reason)
    factor = site.constant_factor
    if factor is not None:
        why = "beta = 0" if site.beta == 0 else "alpha = 0"
        return Verdict(EXACT, f"{why}: the LRN is the constant scale {factor:.6g}{exact_suffix}")
    return Verdict(APPROXIMATE, approximate)
