"""``keep``: leave every LRN as it is (always exact).

The baseline strategy: a plain load / save through lrnconv's preservation step. Sites that
exist as an op chain (Caffe WITHIN_CHANNEL as imported, PyTorch's exported chain) stay
that chain.
"""
from __future__ import annotations

from lrnconv.engine.protocol import EXACT, RewriteContext, SiteRecord, Verdict
from lrnconv.graph.preserve import EditableGraphs
from lrnconv.graph.sites import LrnSite


class Keep:
    """No rewrite."""

    name = "keep"

    def check(self, site: LrnSite, graphs: EditableGraphs) -> Verdict:
        if not site.family.is_lrn_node:
            return Verdict(EXACT, "the op chain that stands for it is left as it is")
        return Verdict(EXACT, "LRN left unchanged")

    def needs_stats(self, site: LrnSite) -> bool:
        """Never: nothing is fitted."""
        return False

    def rewrite(self, ctx: RewriteContext, site: LrnSite) -> SiteRecord:
        verdict = self.check(site, ctx.graphs)
        return SiteRecord(site, self.name, verdict.status, verdict.reason, tensor=site.output, remains=True)


keep = Keep()
