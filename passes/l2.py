"""``l2``: the LRN site as ``LpNormalization(axis=1, p=2)`` times a constant.

    before:  x -> LRN -> y          after:  x -> LpNormalization(axis=1, p=2) -> Mul(k) -> y

Maths: when the window ``[c - (size-1)//2, c + size//2]`` covers every channel for every
c (``(size-1)//2 >= C-1`` and ``size//2 >= C-1``), ``S(c) = ||x||_2^2`` over the channels,
and with ``bias == 0`` and ``beta == 0.5``

    y = x / (alpha/size * ||x||^2)^0.5 = sqrt(size/alpha) * x / ||x||_2

exactly: ``k = sqrt(size/alpha)``, no calibration needed. This is how face-embedding
nets used LRN as an L2 norm. (At ``x == 0`` the LRN gives 0/0; LpNormalization's
answer there is the runtime's.)

Everywhere else the rewrite is approximate and only applied because the user asked
for ``l2`` by name or through ``auto``: ``k`` is the least-squares fit of
``y ~ k x / ||x||`` on calibration data (``SiteStats.l2_scale``), and the reason says
which condition failed. The Mul writes the LRN output tensor, so the name and every
consumer stay. A site that exists as an op chain is replaced as a whole (a Caffe
WITHIN_CHANNEL one normalizes over a spatial window, which an L2 norm over channels only
approximates; PyTorch's exported chain is judged with PyTorch's window).
"""
from __future__ import annotations

import logging
import math
from typing import List

from lrnconv.engine.protocol import APPROXIMATE, EXACT, NOT_APPLICABLE, RewriteContext, SiteRecord, Verdict
from lrnconv.graph.nodes import OpBuilder, numpy_dtype
from lrnconv.graph.preserve import EditableGraphs
from lrnconv.graph.sites import LrnSite
from lrnconv.graph.span import SiteSpan

log = logging.getLogger(__name__)


def inexact_reasons(site: LrnSite) -> List[str]:
    """What keeps a site from being exactly an L2 normalization (empty when it is)."""
    if not site.family.across_channels:
        return ["Caffe WITHIN_CHANNEL normalizes over a spatial window, not over channels"]
    reasons = []
    if site.bias != 0:
        reasons.append(f"bias = {site.bias:g} (not 0)")
    if site.beta != 0.5:
        reasons.append(f"beta = {site.beta:g} (not 0.5)")
    if site.alpha <= 0:
        reasons.append(f"alpha = {site.alpha:g} (not positive)")
    lo, hi = site.window
    if site.channels is None:
        reasons.append("the channel count is unknown, so the window cannot be shown to cover it")
    elif min(lo, hi) < site.channels - 1:
        reasons.append(f"the window of {site.size} (reaching {lo} back, {hi} ahead) does not "
                       f"cover all {site.channels} channels (needs size >= {2 * site.channels - 1})")
    return reasons


class L2Norm:
    """LRN -> LpNormalization(p=2) * k."""

    name = "l2"

    def needs_stats(self, site: LrnSite) -> bool:
        """Whether rewriting this site needs calibration statistics (not for exact sites)."""
        return bool(inexact_reasons(site))

    def check(self, site: LrnSite, graphs: EditableGraphs) -> Verdict:
        reason = site.rank_reason
        if reason:
            return Verdict(NOT_APPLICABLE, reason)
        span = SiteSpan.locate(graphs, site)
        if isinstance(span, str):
            return Verdict(NOT_APPLICABLE, f"the op chain cannot be replaced as a whole: {span}")
        reasons = inexact_reasons(site)
        if not reasons:
            return Verdict(EXACT, f"bias = 0, beta = 0.5 and the window covers all {site.channels} "
                                  f"channels: y = x * sqrt(size/alpha) / ||x||_2")
        return Verdict(APPROXIMATE, "L2 normalization with a fitted constant; not exact because "
                                    + "; ".join(reasons))

    def rewrite(self, ctx: RewriteContext, site: LrnSite) -> SiteRecord:
        verdict = self.check(site, ctx.graphs)
        if verdict.status == EXACT:
            constant = math.sqrt(site.size / site.alpha)
            details = {"constant": constant, "fitted": False}
        else:
            constant = ctx.stats_for(site).l2_scale()
            details = {"constant": constant, "fitted": True}
        span = ctx.span(site)
        position = span.detach()
        b = OpBuilder(ctx.names, site.name, ctx.opset, numpy_dtype(site.elem_type))
        unit = b.op("LpNormalization", "l2_normalized", [span.x], {"axis": 1, "p": 2})
        b.op("Mul", "scaled", [unit, b.const("constant", constant)], output=span.y)
        span.insert(position, b.nodes)
        details["replaced"] = [n.name for n in span.nodes]
        log.debug("l2 %s: %s, k = %g", site.name, verdict.status, constant)
        return SiteRecord(site, self.name, verdict.status, verdict.reason, tensor=span.y.name, details=details)


l2 = L2Norm()
