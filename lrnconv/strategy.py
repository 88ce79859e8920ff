"""What every strategy in ``lrnconv.passes`` is, and what it hands back.

A strategy is one object with a stable ``name``, a ``cost`` rank (lower is cheaper at
run time; ``auto`` walks them in that order), ``check(site)`` that answers exact /
approximate / not applicable *with a reason a user can read*, and
``rewrite(ctx, site)`` that edits the onnx-graphsurgeon graph and returns a
``SiteRecord``. Passes are pure graph rewrites: they never start ONNX Runtime.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Dict, Optional, Protocol, Set

import onnx_graphsurgeon as gs

from .preserve import EditableModel
from .sites import LrnSite

EXACT = "exact"
APPROXIMATE = "approximate"
NOT_APPLICABLE = "not-applicable"


@dataclass(frozen=True)
class Verdict:
    """A strategy's answer for one site: EXACT, APPROXIMATE or NOT_APPLICABLE, and why."""

    status: str
    reason: str

    @property
    def applicable(self) -> bool:
        return self.status != NOT_APPLICABLE


@dataclass
class SiteRecord:
    """What a strategy did at one site; ``drift`` is filled in by verification."""

    site: LrnSite
    strategy: str
    status: str
    reason: str
    details: Dict[str, object] = field(default_factory=dict)
    drift: Optional[Dict[str, object]] = None

    def to_dict(self) -> Dict[str, object]:
        out = {"name": self.site.name, "family": self.site.family, "strategy": self.strategy,
               "status": self.status, "reason": self.reason, "drift": self.drift}
        if self.details:
            out["details"] = self.details
        return out


class NameAllocator:
    """Fresh, readable node and tensor names that collide with nothing in the model."""

    def __init__(self, taken: Set[str]):
        self._taken = set(taken)

    def __call__(self, base: str) -> str:
        for candidate in itertools.chain([base], (f"{base}_{i}" for i in itertools.count(1))):
            if candidate not in self._taken:
                self._taken.add(candidate)
                return candidate
        raise AssertionError("unreachable")


@dataclass
class RewriteContext:
    """What a pass may use: the editable model, a name allocator and its options."""

    editable: EditableModel
    names: NameAllocator
    options: Dict[str, object] = field(default_factory=dict)

    @property
    def opset(self) -> int:
        return self.editable.opset

    def graph_of(self, site: LrnSite) -> gs.Graph:
        return self.editable.graph_at(site.graph_path)

    def node_of(self, site: LrnSite) -> gs.Node:
        """The LRN node of a site (found by its output tensor, which SSA keeps unique)."""
        for node in self.graph_of(site).nodes:
            if node.op == "LRN" and node.outputs and node.outputs[0].name == site.output:
                return node
        raise KeyError(site.output)


class Strategy(Protocol):
    name: str
    cost: int

    def check(self, site: LrnSite) -> Verdict: ...

    def rewrite(self, ctx: RewriteContext, site: LrnSite) -> SiteRecord: ...
