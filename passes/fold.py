"""``fold``: a per-channel scale in place of the LRN, folded into a neighbouring Conv.

Maths: ``y ~ s_c x`` per channel c. For ``alpha == 0`` the LRN *is* that scale,
``s = bias^-beta`` (``beta == 0``: ``s = 1``), and the fold is exact; otherwise ``s_c``
is the least-squares fit on calibration data (``SiteStats.scale``: positive, since
``y = x f`` with ``f > 0``), and the report gives its range and relative residual.

Where the scale goes, first that works:

1. **backwards** into the Conv producing the LRN input, through ops that commute with a
   positive per-channel scale (``op(s x) = s op(x)``): Relu, LeakyRelu, PRelu (any
   slope), MaxPool, AveragePool (zero padding stays zero), Dropout (inference),
   Identity::

       Conv(W, B) -> Relu -> MaxPool -> LRN -> y     Conv(s W, s B) -> Relu -> MaxPool -> y'

   ``W[m] *= s_m``, ``B[m] *= s_m``. Every tensor on the way must be read only by the next
   op of the path (else the scaled value would leak to another reader) and no ``s_c``
   may be <= 0 (Relu and MaxPool commute only with positive scales).
2. **forwards** into every Conv reading the LRN output, which must all read it as their
   data input (input 0): ``Conv(W)(s x) = Conv(W')(x)`` with the input channels of ``W``
   scaled. For ``group = g`` with C input channels, input channel c belongs to group
   ``c // (C/g)`` and is column ``c % (C/g)`` of that group's output channels. Zero
   padding stays exact (``0 * s = 0``); the Conv bias is unchanged.
3. otherwise an explicit ``Mul`` by the per-channel constant, writing the LRN output
   tensor, reported with why 1 and 2 were refused.

A Conv's weight (and bias) can absorb the scale only when it is a constant read by
that Conv alone (``lrnconv.graph.constants``: shared weights, graph inputs and weights
computed from data are refused with the reason; weights of small constant subgraphs are
evaluated, and the constant nodes that fed only that weight are removed). New weights
are new constants (same dtype) replacing the Conv's input; the old initializer, no longer
referenced, is dropped by the preservation step.

``check`` plans 1, 2 and 3 on the graph before anything is edited, so ``inspect`` says
where the scale would go, and a site whose scale could only become an explicit ``Mul``
while its input rank is unknown (the constant cannot be shaped) is not applicable.

After 1 and 2 the LRN is gone and its consumers read the LRN input (after 1 it carries
``s x``: the record's ``tensor`` names it; after 2 no tensor carries the site's value,
the tensor is None and ``details["tensor_unscaled"]`` names the input that, times the
scale, would). A graph-output LRN keeps its name through an ``Identity``. A site that
exists as an op chain (Caffe WITHIN_CHANNEL, PyTorch's export) is folded as a whole.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Union

import numpy as np
import onnx_graphsurgeon as gs

from lrnconv.engine.protocol import NOT_APPLICABLE, RewriteContext, SiteRecord, Verdict
from lrnconv.graph.constants import ConstantScope, resolve_constant
from lrnconv.graph.nodes import OpBuilder, channel_broadcast, numpy_dtype
from lrnconv.graph.preserve import EditableGraphs
from lrnconv.graph.sites import LrnSite
from lrnconv.graph.span import Refusal, SiteSpan, consumers, describe, drop_nodes
from lrnconv.maths.stats import summarize

from ._scale import scale_verdict

log = logging.getLogger(__name__)

COMMUTING_OPS = ("Relu", "LeakyRelu", "PRelu", "MaxPool", "AveragePool", "Dropout", "Identity")
"""Ops with op(s x) = s op(x) for a positive per-channel s, on their data input 0."""

MAX_PATH = 16
_FITTED = "per-channel scale fitted by least squares on calibration data"


@dataclass
class _Edit:
    """A Conv input to replace by a new constant, and the constant nodes it frees."""

    node: gs.Node
    index: int
    values: np.ndarray
    freed: List[gs.Node] = field(default_factory=list)


@dataclass
class _Plan:
    edits: List[_Edit]
    where: str


def _scaled(values: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """values * factors computed in float64, rounded once to the dtype of ``values``."""
    return (values.astype(np.float64) * factors).astype(values.dtype)


def _per_channel(scale: np.ndarray, count: int, what: str) -> Union[np.ndarray, Refusal]:
    if scale.ndim == 0:
        return np.full(count, float(scale))
    if scale.shape[0] != count:
        return f"{what} has {count} channels but the fitted scale has {scale.shape[0]}"
    return scale


def _backward(scope: ConstantScope, span: SiteSpan, scale: np.ndarray) -> Union[_Plan, Refusal]:
    """Plan folding into the Conv that produces the site input."""
    graph = scope.graph
    if np.any(scale <= 0):
        bad = np.flatnonzero(np.atleast_1d(scale) <= 0)
        return (f"the scale is not positive for channel(s) {', '.join(map(str, bad[:8]))}; it cannot "
                f"pass through Relu or MaxPool")
    tensor, allowed = span.x, {id(n) for n in span.nodes}
    through: List[gs.Node] = []
    while True:
        if any(t is tensor for t in graph.outputs):
            return f"tensor '{tensor.name}' is a graph output; scaling it would change that output"
        others = [n for n in consumers(tensor) if id(n) not in allowed]
        if others:
            return (f"tensor '{tensor.name}' is also read by {describe(others[0])}, which would see "
                    f"it scaled")
        if not tensor.inputs:
            origin = "a graph input" if any(t is tensor for t in graph.inputs) else "not produced by a node"
            return f"tensor '{tensor.name}' is {origin}, so no Conv produces the LRN input"
        producer = tensor.inputs[0]
        if producer.op == "Conv":
            break
        if producer.op not in COMMUTING_OPS or producer.outputs[0] is not tensor \
                or not producer.inputs:
            return (f"{describe(producer)} produces '{tensor.name}' and does not commute with a "
                    f"per-channel scale (only {', '.join(COMMUTING_OPS)} are passed through)")
        if len(through) >= MAX_PATH:
            return f"no Conv within {MAX_PATH} ops before the LRN"
        through.append(producer)
        tensor, allowed = producer.inputs[0], {id(producer)}
    conv = producer
    weight = resolve_constant(scope, conv, 1, "weight")
    if isinstance(weight, str):
        return weight
    values, freed = weight
    per_channel = _per_channel(scale, values.shape[0], f"Conv '{conv.name}'")
    if isinstance(per_channel, str):
        return per_channel
    column = per_channel.reshape((-1,) + (1,) * (values.ndim - 1))
    edits = [_Edit(conv, 1, _scaled(values, column), freed)]
    if len(conv.inputs) > 2 and conv.inputs[2].name:
        bias = resolve_constant(scope, conv, 2, "bias")
        if isinstance(bias, str):
            return bias
        edits.append(_Edit(conv, 2, _scaled(bias[0], per_channel), bias[1]))
    where = f"into Conv {conv.name}"
    if through:
        where += " through " + ", ".join(f"{n.op} {n.name}" for n in reversed(through))
    return _Plan(edits, where)


def _forward(scope: ConstantScope, span: SiteSpan, scale: np.ndarray) -> Union[_Plan, Refusal]:
    """Plan folding into every Conv that reads the site output."""
    y = span.y
    if span.is_graph_output:
        return f"LRN output '{y.name}' is a graph output"
    readers = consumers(y)
    if not readers:
        return f"LRN output '{y.name}' has no reader"
    edits = []
    for node in readers:
        if node.op != "Conv" or node.domain not in ("", "ai.onnx"):
            return f"LRN output '{y.name}' is read by {describe(node)}, not only by Convs"
        if node.inputs[0] is not y or any(t is y for t in node.inputs[1:]):
            return f"LRN output '{y.name}' is read by Conv '{node.name}' as a weight or bias"
        weight = resolve_constant(scope, node, 1, "weight")
        if isinstance(weight, str):
            return weight
        values, freed = weight
        groups = int(node.attrs.get("group", 1))
        per_channel = _per_channel(scale, values.shape[1] * groups, f"Conv '{node.name}' input")
        if isinstance(per_channel, str):
            return per_channel
        m, cg = values.shape[0], values.shape[1]
        if m % groups:
            return f"Conv '{node.name}' has {m} output channels, not a multiple of group = {groups}"
        blocks = values.reshape((groups, m // groups, cg) + values.shape[2:])
        factors = per_channel.reshape((groups, 1, cg) + (1,) * (values.ndim - 2))
        edits.append(_Edit(node, 1, _scaled(blocks, factors).reshape(values.shape), freed))
    names = ", ".join(e.node.name for e in edits)
    return _Plan(edits, f"into consumer Conv{'s' if len(edits) > 1 else ''} {names}")


def _apply(ctx: RewriteContext, graph: gs.Graph, plan: _Plan) -> List[str]:
    """Replace the planned Conv inputs by new constants; drop the constant nodes freed."""
    created, freed = [], []
    for edit in plan.edits:
        old = edit.node.inputs[edit.index]
        new = gs.Constant(ctx.names(f"{old.name}_scaled"), np.ascontiguousarray(edit.values))
        edit.node.inputs[edit.index] = new
        created.append(new.name)
        freed.extend(n for n in edit.freed if all(n is not f for f in freed))
    if freed:
        drop_nodes(graph, freed)
    return created


def _scope(graphs: EditableGraphs, site: LrnSite) -> ConstantScope:
    overridable = graphs.overridable if not site.graph_path else frozenset()
    return ConstantScope(graphs.graph_at(site.graph_path), graphs.opset, overridable)


def _placement(graphs: EditableGraphs, span: SiteSpan, scale: np.ndarray):
    """(plan or None, refusals): backward first, then forward; None means an explicit Mul."""
    scope = _scope(graphs, span.site)
    refused: Dict[str, str] = {}
    plan = _backward(scope, span, scale)
    if isinstance(plan, str):
        refused["backward"] = plan
        plan = _forward(scope, span, scale)
        if isinstance(plan, str):
            refused["forward"] = plan
            plan = None
    return plan, refused


def _where(plan, refused: Dict[str, str]) -> str:
    return plan.where if plan is not None else f"explicit Mul: {refused['backward']}; {refused['forward']}"


class Fold:
    """LRN -> a per-channel scale folded into a Conv (or an explicit Mul)."""

    name = "fold"

    def needs_stats(self, site: LrnSite) -> bool:
        """Whether rewriting this site needs calibration statistics (not for constant scales)."""
        return site.constant_factor is None

    def check(self, site: LrnSite, graphs: EditableGraphs) -> Verdict:
        verdict = scale_verdict(site, "", _FITTED)
        if not verdict.applicable:
            return verdict
        span = SiteSpan.locate(graphs, site)
        if isinstance(span, str):
            return Verdict(NOT_APPLICABLE, f"the op chain cannot be replaced as a whole: {span}")
        plan, refused = _placement(graphs, span, np.asarray(1.0))  # any positive scale plans alike
        if plan is None and site.rank is None:
            return Verdict(NOT_APPLICABLE, f"the rank of input '{site.input}' is unknown, so an explicit "
                                           f"per-channel Mul cannot be shaped to it, and the scale cannot be "
                                           f"folded: {refused['backward']}; {refused['forward']}")
        return Verdict(verdict.status, f"{verdict.reason}; {_where(plan, refused)}")

    def rewrite(self, ctx: RewriteContext, site: LrnSite) -> SiteRecord:
        verdict = scale_verdict(site, "", _FITTED)
        factor = site.constant_factor
        details: Dict[str, object] = {}
        if factor is not None:
            scale = np.asarray(factor, dtype=np.float64)
        else:
            stats = ctx.stats_for(site)
            scale = stats.scale()
            details["residual_rms"] = stats.residual_rms(scale, np.zeros_like(scale))
        details["scale"] = summarize(scale)

        span = ctx.span(site)
        plan, refused = _placement(ctx.graphs, span, scale)
        where = _where(plan, refused)
        removed = [n.name for n in span.nodes]
        if plan is None:
            position = span.detach()
            b = OpBuilder(ctx.names, site.name, ctx.opset, numpy_dtype(site.elem_type))
            b.op("Mul", "scale", [span.x, b.const("scale", channel_broadcast(scale, site.rank))], output=span.y)
            span.insert(position, b.nodes)
            details["direction"] = "mul"
            tensor = span.y.name
        else:
            details["weights"] = _apply(ctx, span.graph, plan)
            bypassed = span.bypass(ctx.names, ctx.opset)
            if "backward" in refused:
                details.update({"direction": "forward", "tensor_unscaled": bypassed})
                tensor = None
            else:
                details["direction"] = "backward"
                tensor = bypassed
        details.update({"folded": where, "refused": refused, "removed": removed})
        log.debug("fold %s: %s, %s", site.name, verdict.status, where)
        return SiteRecord(site, self.name, verdict.status, f"{verdict.reason}; {where}", tensor=tensor,
                          details=details)


fold = Fold()
