"""``remove``: delete the LRN site; its consumers read the site input.

    before:  x -> LRN -> y -> consumers        after:  x -> consumers

The LRN is ``y = x * d^-beta`` with ``d = bias + alpha/size * S(c) > 0``, so removing it
is exact exactly when ``d^-beta == 1`` for every input: ``alpha == 0`` and
``bias^beta == 1`` (bias 1 or beta 0), or ``beta == 0`` whatever alpha. Everywhere else
it is approximate: a cheap option where the following layers tolerate the lost
normalization, which only the measured drift can tell (``auto`` measures it).

When the site output is an output of its graph, its name must stay: an ``Identity``
from the site input writes it. A site that exists only as an imported decomposition
(Caffe WITHIN_CHANNEL) is deleted as a whole (see ``_rewire``). No calibration is
needed; when statistics are given, the report includes the relative residual of
``y ~ x`` on them.
"""
from __future__ import annotations

import logging

import numpy as np

from lrnconv.sites import LrnSite
from lrnconv.strategy import APPROXIMATE, EXACT, NOT_APPLICABLE, RewriteContext, SiteRecord, Verdict

from ._rewire import SiteSpan, constant_factor, degenerate_reason

log = logging.getLogger(__name__)


class Remove:
    """LRN -> nothing (see the module docstring)."""

    name = "remove"
    cost = 10
    needs_calibration = False

    def needs_stats(self, site: LrnSite) -> bool:
        """Never: removing a site fits nothing (statistics, when given, only add a residual)."""
        return False

    def check(self, site: LrnSite) -> Verdict:
        reason = degenerate_reason(site)
        if reason:
            return Verdict(NOT_APPLICABLE, reason)
        factor = constant_factor(site)
        if factor == 1.0:
            why = "beta = 0" if site.beta == 0 else f"alpha = 0 and bias^beta = {site.bias:g}^{site.beta:g} = 1"
            return Verdict(EXACT, f"{why}: the LRN is the identity")
        if factor is not None:
            return Verdict(APPROXIMATE, f"alpha = 0: the LRN scales by bias^-beta = {factor:.6g}, "
                                        f"which removing it drops")
        return Verdict(APPROXIMATE, "drops the normalization; the drift is what the layers after "
                                    "it see without it")

    def rewrite(self, ctx: RewriteContext, site: LrnSite) -> SiteRecord:
        verdict = self.check(site)
        span = SiteSpan.locate(ctx, site, self.name)
        removed = [n.name for n in span.nodes + span.feeders]
        tensor = span.bypass(ctx)
        details = {"tensor": tensor, "removed": removed}
        factor = constant_factor(site)
        if factor is not None:
            details["factor_dropped"] = factor
        stats = (ctx.options.get("stats") or {}).get(site.output)
        if stats is not None and factor is None:
            ones = np.ones(stats.channels)
            details["residual_rms"] = stats.residual_rms(ones, np.zeros(stats.channels))
        log.debug("remove %s: %s, consumers read '%s'", site.name, verdict.status, tensor)
        return SiteRecord(site, self.name, verdict.status, verdict.reason, details)


remove = Remove()
