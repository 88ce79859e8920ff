"""Shared plumbing of the passes that delete an LRN site or replace it by a few ops.

``remove``, ``fold``, ``bn`` and ``l2`` start the same way: find the nodes that make up
a site, check that nothing outside them reads their intermediate tensors, and take
them out of the graph. Then either the consumers read the site input instead
(``bypass``: remove, fold) or new nodes write the site output under its own name
(bn, l2, fold's explicit ``Mul``).

What a site's nodes are:

* an ONNX ``LRN`` site: the one ``LRN`` node;
* a site that exists only as an imported decomposition (Caffe ``WITHIN_CHANNEL``,
  ``site.is_node`` False): every node on a path from ``site.input`` to
  ``site.output``, plus the nodes that existed only to feed those (``Constant`` nodes
  of the decomposition's alpha / beta, for example). If an intermediate tensor of the
  decomposition is read by anything else, the site cannot be replaced as a whole and
  the pass refuses with the name of that reader.

The nodes of the graph keep their order (the new nodes take the place of the site's
last node); nothing outside the site is deleted, so the user's own dead nodes stay.

Also shared: the exact factor of sites whose denominator is a constant
(``alpha == 0``: ``y = x * bias^-beta``; ``beta == 0``: ``y = x``), the lookup of a
site's calibration statistics, and the summary of fitted per-channel values for reports.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from lrnconv.errors import UnsupportedModel, UsageError
from lrnconv.nodes import OpBuilder
from lrnconv.sites import LrnSite
from lrnconv.stats import SiteStats
from lrnconv.strategy import APPROXIMATE, EXACT, NOT_APPLICABLE, RewriteContext, Verdict


def constant_factor(site: LrnSite) -> Optional[float]:
    """f with ``y == f * x`` for every input, or None when the LRN depends on the data.

    ``beta == 0``: the denominator is raised to 0, f = 1. ``alpha == 0``: the
    denominator is ``bias^beta``, f = ``bias^-beta`` (None unless that is a positive
    finite number; see ``degenerate_reason``).
    """
    if site.beta == 0:
        return 1.0
    if site.alpha == 0 and site.bias > 0:
        factor = float(site.bias) ** -float(site.beta)
        if math.isfinite(factor) and factor > 0:
            return factor
    return None


def degenerate_reason(site: LrnSite) -> Optional[str]:
    """Why a site's LRN is not a positive scale of its input at all, or None."""
    if site.alpha == 0 and site.beta != 0 and constant_factor(site) is None:
        return (f"alpha = 0 and bias = {site.bias:g}: the LRN divides by bias^beta = "
                f"{site.bias:g}^{site.beta:g}, which is not a positive finite number")
    return None


def rank_reason(site: LrnSite) -> Optional[str]:
    """Why a site's rank rules out a per-channel rewrite, or None."""
    if site.rank is not None and site.rank < 2:
        return f"LRN input '{site.input}' has rank {site.rank}; LRN needs at least [N, C]"
    return None


def scale_verdict(site: LrnSite, exact_suffix: str, approximate: str) -> Verdict:
    """The check of the per-channel-scale strategies (fold, bn): exact for a constant scale."""
    reason = rank_reason(site) or degenerate_reason(site)
    if reason:
        return Verdict(NOT_APPLICABLE, reason)
    factor = constant_factor(site)
    if factor is not None:
        why = "beta = 0" if site.beta == 0 else "alpha = 0"
        return Verdict(EXACT, f"{why}: the LRN is the constant scale {factor:.6g}{exact_suffix}")
    return Verdict(APPROXIMATE, approximate)


def site_stats(ctx: RewriteContext, site: LrnSite, strategy: str) -> SiteStats:
    """The calibration statistics of a site from ``ctx.options["stats"]``.

    Raises:
        UsageError: there are none for this site, or their channel count is wrong.
    """
    stats = (ctx.options.get("stats") or {}).get(site.output)
    if stats is None:
        raise UsageError(
            f"strategy '{strategy}' needs calibration data for LRN '{site.name}' "
            f"(alpha = {site.alpha:g}, so its scale depends on the data): give calibration "
            f"inputs (--calib) or statistics in options['stats'] keyed by '{site.output}'")
    if site.channels is not None and stats.channels != site.channels:
        raise UsageError(f"calibration statistics for LRN '{site.name}' have {stats.channels} "
                         f"channels; the site has {site.channels}")
    return stats


def summary(values) -> Dict[str, float]:
    """min / max / mean of fitted per-channel values, for reports."""
    array = np.asarray(values, dtype=np.float64).ravel()
    return {"min": float(array.min()), "max": float(array.max()), "mean": float(array.mean())}


def numpy_dtype(site: LrnSite) -> np.dtype:
    """The numpy dtype of a site's tensors."""
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(site.elem_type))


def per_channel_shape(site: LrnSite, values: np.ndarray) -> np.ndarray:
    """Per-channel values shaped [C, 1, ..., 1] to broadcast along axis 1 of the site input.

    Scalars stay scalars (they broadcast whatever the rank).

    Raises:
        UnsupportedModel: the values differ per channel but the input rank is unknown.
    """
    values = np.asarray(values)
    if values.ndim == 0:
        return values
    if site.rank is None:
        raise UnsupportedModel(f"LRN '{site.name}': the rank of input '{site.input}' is unknown, "
                               f"so a per-channel constant cannot be shaped to it")
    return values.reshape((-1,) + (1,) * (site.rank - 2))


def consumers(tensor: gs.Tensor) -> List[gs.Node]:
    """The distinct nodes reading a tensor (including nodes of nested subgraphs)."""
    seen, out = set(), []
    for node in tensor.outputs:
        if id(node) not in seen:
            seen.add(id(node))
            out.append(node)
    return out


def describe(node: gs.Node) -> str:
    return f"{node.op} node '{node.name}'"


def drop_nodes(graph: gs.Graph, nodes: List[gs.Node]) -> int:
    """Disconnect ``nodes`` and take them out of ``graph.nodes``; returns where the last one was.

    The returned index is the position, in the new node list, right after the nodes
    that preceded the last dropped node: inserting there keeps a topological order.
    """
    doomed = {id(n) for n in nodes}
    last = max(i for i, n in enumerate(graph.nodes) if id(n) in doomed)
    position = sum(1 for n in graph.nodes[:last] if id(n) not in doomed)
    for node in nodes:
        node.inputs.clear()
        node.outputs.clear()
    graph.nodes = [n for n in graph.nodes if id(n) not in doomed]
    return position


@dataclass
class SiteSpan:
    """The nodes that make up one site in its graph, and its input and output tensors.

    Build with ``SiteSpan.locate``; ``nodes`` are the site's own (the LRN node, or the
    decomposition), ``feeders`` the nodes that only existed to feed them.
    """

    site: LrnSite
    graph: gs.Graph
    x: gs.Tensor
    y: gs.Variable
    nodes: List[gs.Node]
    feeders: List[gs.Node] = field(default_factory=list)

    @classmethod
    def locate(cls, ctx: RewriteContext, site: LrnSite, strategy: str) -> "SiteSpan":
        """Find a site's nodes.

        Raises:
            UnsupportedModel: an imported decomposition whose intermediate tensors are
                read outside it, or whose output does not depend on its input.
        """
        graph = ctx.graph_of(site)
        if site.is_node:
            node = ctx.node_of(site)
            return cls(site, graph, node.inputs[0], node.outputs[0], [node])
        tensors = graph.tensors()
        if site.input not in tensors or site.output not in tensors:
            missing = site.input if site.input not in tensors else site.output
            raise UnsupportedModel(f"strategy '{strategy}' cannot rewrite LRN '{site.name}': "
                                   f"its tensor '{missing}' is not in the graph")
        x, y = tensors[site.input], tensors[site.output]
        nodes, feeders = _decomposition(graph, x, y)
        if not y.inputs or not any(y.inputs[0] is n for n in nodes):
            refusal = f"its output '{y.name}' is not computed from its input '{x.name}'"
        else:
            refusal = _leak(graph, nodes, y)
        if refusal:
            raise UnsupportedModel(f"strategy '{strategy}' cannot replace the imported "
                                   f"decomposition of LRN '{site.name}': {refusal}")
        return cls(site, graph, x, y, nodes, feeders)

    @property
    def is_graph_output(self) -> bool:
        return any(t is self.y for t in self.graph.outputs)

    def detach(self) -> int:
        """Take the site's nodes out of the graph; returns where replacement nodes go.

        Afterwards ``y`` has no producer (a new node may write it) and ``x`` is no
        longer read by the site.
        """
        return drop_nodes(self.graph, self.nodes + self.feeders)

    def insert(self, position: int, nodes: List[gs.Node]) -> None:
        """Put new nodes where the site was (after ``detach``)."""
        self.graph.nodes[position:position] = nodes

    def bypass(self, ctx: RewriteContext) -> str:
        """Delete the site: its consumers read ``x``. Returns the tensor now carrying the value.

        When the site output is an output of its graph, the output name must stay, so
        an ``Identity`` writes it from ``x`` instead (and the consumers keep reading it).
        """
        position = self.detach()
        if self.is_graph_output:
            b = OpBuilder(ctx.names, self.site.name, ctx.opset, numpy_dtype(self.site))
            b.op("Identity", "bypass", [self.x], output=self.y)
            self.insert(position, b.nodes)
            return self.y.name
        for node in consumers(self.y):
            for i, tensor in enumerate(node.inputs):
                if tensor is self.y:
                    node.inputs[i] = self.x
        return self.x.name


def _decomposition(graph: gs.Graph, x: gs.Tensor, y: gs.Tensor):
    """Nodes on paths from x to y, and nodes that only feed those (graph order)."""
    ancestors: Dict[int, gs.Node] = {}
    stack = [y]
    while stack:
        tensor = stack.pop()
        if tensor is x:
            continue
        for producer in tensor.inputs:
            if id(producer) not in ancestors:
                ancestors[id(producer)] = producer
                stack.extend(producer.inputs)
    ordered = [n for n in graph.nodes if id(n) in ancestors]
    on_path = set()
    for node in ordered:  # graph.nodes is topologically sorted
        if any(t is x or (t.inputs and id(t.inputs[0]) in on_path) for t in node.inputs):
            on_path.add(id(node))
    nodes = [n for n in ordered if id(n) in on_path]
    outputs = {id(t) for t in graph.outputs}
    gone = set(on_path)
    feeders = []
    for node in reversed(ordered):
        if id(node) in gone:
            continue
        if all(id(t) not in outputs and all(id(c) in gone for c in t.outputs) for t in node.outputs):
            gone.add(id(node))
            feeders.append(node)
    feeders.reverse()
    return nodes, feeders


def _with_subgraph_nodes(nodes: List[gs.Node]) -> set:
    """ids of the nodes and of every node in their subgraphs (an If body reads outer tensors)."""
    inside = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        inside.add(id(node))
        for value in node.attrs.values():
            if isinstance(value, gs.Graph):
                stack.extend(value.nodes)
    return inside


def _leak(graph: gs.Graph, nodes: List[gs.Node], y: gs.Tensor) -> Optional[str]:
    """Why the decomposition cannot be replaced as a whole (an intermediate read outside)."""
    inside = _with_subgraph_nodes(nodes)
    outputs = {id(t) for t in graph.outputs}
    for node in nodes:
        for tensor in node.outputs:
            if tensor is y:
                continue
            if id(tensor) in outputs:
                return f"its intermediate tensor '{tensor.name}' is a graph output"
            for reader in consumers(tensor):
                if id(reader) not in inside:
                    return f"its intermediate tensor '{tensor.name}' is also read by {describe(reader)}"
    return None
