"""``keep``: leave every LRN as it is (always exact).

The baseline strategy: a plain load / save through lrnconv's preservation step. Caffe
WITHIN_CHANNEL sites, which have no ONNX op, arrive already as their exact
decomposition from the importer and stay that way.
"""
from __future__ import annotations

from lrnconv.sites import LrnSite
from lrnconv.strategy import EXACT, RewriteContext, SiteRecord, Verdict


class Keep:
    """No rewrite."""

    name = "keep"
    cost = 100

    def check(self, site: LrnSite) -> Verdict:
        if not site.is_node:
            return Verdict(EXACT, "the op chain that stands for it is left as it is")
        return Verdict(EXACT, "LRN left unchanged")

    def rewrite(self, ctx: RewriteContext, site: LrnSite) -> SiteRecord:
        verdict = self.check(site)
        return SiteRecord(site, self.name, verdict.status, verdict.reason)


keep = Keep()
