"""``remove``: delete the LRN site; its consumers read the site input.

    before:  x -> LRN -> y -> consumers        after:  x -> consumers

The LRN is ``y = x * d^-beta`` with ``d = bias + alpha/size * S(c) > 0``, so removing it
is exact exactly when ``d^-beta == 1`` for every input: ``alpha == 0`` and
``bias^beta == 1`` (bias 1 or beta 0), or ``beta == 0`` whatever alpha. Everywhere else
it is approximate: a cheap option where the following layers tolerate the lost
normalization, which only the measured drift can tell (``auto`` measures it).

When the site output is an output of its graph, its name must stay: an ``Identity``
from the site input writes it. A site that exists as an op chain (Caffe WITHIN_CHANNEL,
PyTorch's export) is deleted as a whole (see ``lrnconv.graph.span``). No calibration is
needed; when statistics are given, the report includes the relative residual of
``y ~ x`` on them.
"""
from __future__ import annotations

import logging

import numpy as np

from lrnconv.engine.protocol import APPROXIMATE, EXACT, NOT_APPLICABLE, RewriteContext, SiteRecord, Verdict
from lrnconv.graph.preserve import EditableGraphs
from lrnconv.graph.sites import LrnSite
from lrnconv.graph.span import SiteSpan

log = logging.getLogger(__name__)


class Remove:
    """LRN -> nothing (see the module docstring)."""

    name = "remove"

    def needs_stats(self, site: LrnSite) -> bool:
        """Never: removing a site fits nothing (statistics, when given, only add a residual)."""
        return False

    def check(self, site: LrnSite, graphs: EditableGraphs) -> Verdict:
        reason = site.degenerate_reason
        if reason:
            return Verdict(NOT_APPLICABLE, reason)
        span = SiteSpan.locate(graphs, site)
        if isinstance(span, str):
            return Verdict(NOT_APPLICABLE, f"the op chain cannot be deleted as a whole: {span}")
        factor = site.constant_factor
        if factor == 1.0:
            why = "beta = 0" if site.beta == 0 else f"alpha = 0 and bias^beta = {site.bias:g}^{site.beta:g} = 1"
            return Verdict(EXACT, f"{why}: the LRN is the identity")
        if factor is not None:
            return Verdict(APPROXIMATE, f"alpha = 0: the LRN scales by bias^-beta = {factor:.6g}, "
                                        f"which removing it drops")
        return Verdict(APPROXIMATE, "drops the normalization; the drift is what the layers after "
                                    "it see without it")

    def rewrite(self, ctx: RewriteContext, site: LrnSite) -> SiteRecord:
        verdict = self.check(site, ctx.graphs)
        span = ctx.span(site)
        removed = [n.name for n in span.nodes + span.feeders]
        tensor = span.bypass(ctx.names, ctx.opset)
        details = {"removed": removed}
        factor = site.constant_factor
        if factor is not None:
            details["factor_dropped"] = factor
        stats = ctx.stats.get(site.output)
        if stats is not None and factor is None:
            ones = np.ones(stats.channels)
            details["residual_rms"] = stats.residual_rms(ones, np.zeros(stats.channels))
        log.debug("remove %s: %s, consumers read '%s'", site.name, verdict.status, tensor)
        return SiteRecord(site, self.name, verdict.status, verdict.reason, tensor=tensor, details=details)


remove = Remove()
