"""What every strategy in ``lrnconv.passes`` is, and what it hands back.

A strategy is one object with a stable ``name`` and three methods:

* ``check(site, graphs)`` answers, before anything is edited, exact / approximate / not
  applicable *with a reason a user can read*. It sees the site and the graph (opset,
  ranks, producers, shared weights), so every refusal is known here;
* ``needs_stats(site)`` says whether rewriting the site needs calibration statistics;
* ``rewrite(ctx, site)`` edits the onnx-graphsurgeon graph and returns a ``SiteRecord``.
  It never refuses what ``check`` accepted (the engine checks every site, and that the
  statistics a site needs are there, before the first edit).

Passes are pure graph rewrites: they never start ONNX Runtime.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Protocol


from ..base.errors import UnsupportedModel
from ..base.text import TextEnum
from ..graph.nodes import NameAllocator
from ..graph.preserve import EditableGraphs
from ..graph.sites import LrnSite
from ..graph.span import SiteSpan
from ..maths.stats import SiteStats


class Status(TextEnum):
    """How a strategy's result relates to the original LRN."""

    EXACT = "exact"
    """Equal up to float rounding."""
    APPROXIMATE = "approximate"
    """Fitted or dropped: the drift is measured, never assumed."""
    NOT_APPLICABLE = "not-applicable"


EXACT, APPROXIMATE, NOT_APPLICABLE = Status.EXACT, Status.APPROXIMATE, Status.NOT_APPLICABLE


@dataclass(frozen=True)
class Verdict:
    """A strategy's answer for one site, and why."""

    status: Status
    reason: str

    @property
    def applicable(self) -> bool:
        return self.status != NOT_APPLICABLE


@dataclass(frozen=True)
class Attempt:
    """One candidate ``auto`` tried at a site: accepted or not, and why (with its numbers)."""

    strategy: str
    accepted: bool
    reason: str

    def to_dict(self) -> Dict[str, object]:
        return {"strategy": self.strategy, "accepted": self.accepted, "reason": self.reason}


@dataclass
class SiteRecord:
    """What a strategy did at one site.

    Attributes:
        tensor: the tensor that carries the site's value in the rewritten graph (the site
            output, or the site input after a bypass); None when no tensor does (a scale
            folded into the consuming Convs).
        remains: the site is still there for a later discovery (``keep``, and an imported
            op chain that ``decompose`` leaves as it is).
        details: what a report shows about the rewrite (fitted ranges, where a fold went).
        attempts: what ``auto`` tried before choosing this strategy.
        drift: filled in by verification.
    """

    site: LrnSite
    strategy: str
    status: Status
    reason: str
    tensor: Optional[str]
    remains: bool = False
    details: Dict[str, object] = field(default_factory=dict)
    attempts: List[Attempt] = field(default_factory=list)
    drift: Optional[Dict[str, object]] = None

    def to_dict(self) -> Dict[str, object]:
        out = {"name": self.site.name, "family": self.site.family.value, "strategy": self.strategy,
               "status": self.status.value, "reason": self.reason, "tensor": self.tensor,
               "drift": self.drift}
        if self.details:
            out["details"] = self.details
        if self.attempts:
            out["auto"] = [a.to_dict() for a in self.attempts]
        return out


@dataclass
class RewriteContext:
    """What a pass may use: the graphs being edited, a name allocator, statistics, options."""

    graphs: EditableGraphs
    names: NameAllocator
    stats: Mapping[str, SiteStats] = field(default_factory=dict)
    options: Mapping[str, object] = field(default_factory=dict)

    @property
    def opset(self) -> int:
        return self.graphs.opset

    def span(self, site: LrnSite) -> SiteSpan:
        """The site's nodes (``check`` has already answered for a site that has none)."""
        span = SiteSpan.locate(self.graphs, site)
        if isinstance(span, str):
            raise UnsupportedModel(f"LRN '{site.name}' cannot be replaced: {span}")
        return span

    def stats_for(self, site: LrnSite) -> SiteStats:
        """The site's calibration statistics (the engine made sure they are there)."""
        return self.stats[site.output]


class Strategy(Protocol):
    """A rewrite strategy (see the module docstring)."""

    name: str

    def check(self, site: LrnSite, graphs: EditableGraphs) -> Verdict: ...

    def needs_stats(self, site: LrnSite) -> bool: ...

    def rewrite(self, ctx: RewriteContext, site: LrnSite) -> SiteRecord: ...
