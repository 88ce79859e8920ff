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
that Conv alone: a weight shared with another node, a graph input, or one computed from
non-constant data is refused, and the reason names it. Weights produced by small
constant subgraphs (``Constant``, ``ConstantOfShape`` of a constant shape, and short
chains of shape and arithmetic ops on constants) are evaluated on that subgraph alone
with ``onnx.reference`` and become initializers; the constant nodes that fed only that
weight are removed. New weights are new constants (same dtype) replacing the Conv's
input; the old initializer, no longer referenced, is dropped by the preservation step.

After 1 and 2 the LRN is gone and its consumers read the LRN input (after 1 it carries
``s x``: ``details["tensor"]`` names it; after 2 no tensor carries the site's value,
the tensor is None and ``details["tensor_unscaled"]`` names the input that, times the
scale, would). A graph-output LRN keeps its name through an ``Identity``. A Caffe
WITHIN_CHANNEL decomposition is folded as a whole.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List, Tuple, Union

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx.reference import ReferenceEvaluator
from onnx_graphsurgeon.exporters.onnx_exporter import OnnxExporter

from lrnconv.nodes import OpBuilder
from lrnconv.sites import LrnSite
from lrnconv.strategy import RewriteContext, SiteRecord, Verdict

from ._rewire import (SiteSpan, consumers, constant_factor, describe, drop_nodes, scale_verdict,
                      numpy_dtype, per_channel_shape, site_stats, summary)

log = logging.getLogger(__name__)

COMMUTING_OPS = ("Relu", "LeakyRelu", "PRelu", "MaxPool", "AveragePool", "Dropout", "Identity")
"""Ops with op(s x) = s op(x) for a positive per-channel s, on their data input 0."""

CONSTANT_OPS = frozenset({
    "Constant", "ConstantOfShape", "Identity", "Cast", "Reshape", "Transpose", "Squeeze",
    "Unsqueeze", "Flatten", "Concat", "Slice", "Gather", "Expand", "Tile", "Shape",
    "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Sqrt", "Pow", "Exp", "Log", "Reciprocal",
})
"""Deterministic ops whose output on constant inputs is folded to an initializer."""

MAX_CONSTANT_NODES = 16
MAX_PATH = 16

Refusal = str


@dataclass(frozen=True)
class _Scope:
    """The graph a site lives in, the opset, and the initializers callers may override
    (listed as graph inputs too, in IR >= 4 models: a default, not a constant)."""

    graph: gs.Graph
    opset: int
    overridable: FrozenSet[str]

    @classmethod
    def of(cls, ctx: RewriteContext, site: LrnSite) -> "_Scope":
        overridable: FrozenSet[str] = frozenset()
        model = ctx.editable.model
        if not site.graph_path and model.ir_version >= 4:
            overridable = frozenset({i.name for i in model.graph.input}
                                    & {t.name for t in model.graph.initializer})
        return cls(ctx.graph_of(site), ctx.opset, overridable)


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


def _resolve_constant(scope: _Scope, node: gs.Node, index: int, role: str
                      ) -> Union[Tuple[np.ndarray, List[gs.Node]], Refusal]:
    """The value of Conv input ``index`` if this Conv alone may rescale it, and the nodes
    computing it that only it uses; else why not."""
    graph = scope.graph
    tensor = node.inputs[index]
    what = f"Conv {role} '{tensor.name}' of node '{node.name}'"
    if any(t is tensor for t in graph.outputs):
        return f"{what} is a graph output; cannot fold"
    others = [n for n in consumers(tensor) if n is not node]
    if others:
        return f"{what} is shared with {describe(others[0])}; cannot fold"
    if tensor.name in scope.overridable:
        return f"{what} is a graph input (an initializer the caller may override); cannot fold"
    if isinstance(tensor, gs.Constant):
        return np.asarray(tensor.values), []
    if any(t is tensor for t in graph.inputs):
        return f"{what} is a graph input (not a constant); cannot fold"
    if not tensor.inputs:
        return f"{what} is not produced in this graph (outer-scope or missing); cannot fold"
    chain = _constant_chain(graph, tensor)
    if isinstance(chain, str):
        return f"{what} {chain}; cannot fold"
    try:
        value = _evaluate(chain, tensor, scope.opset)
    except Exception as exc:  # the reference evaluator raises whatever its op raises
        return f"{what} could not be evaluated from its constant subgraph ({exc}); cannot fold"
    return value, _freed(graph, chain, node)


def _constant_chain(graph: gs.Graph, tensor: gs.Tensor) -> Union[List[gs.Node], Refusal]:
    """The nodes computing ``tensor`` from constants only (graph order), or why not."""
    found: Dict[int, gs.Node] = {}
    stack = [tensor]
    graph_inputs = {id(t) for t in graph.inputs}
    while stack:
        current = stack.pop()
        if isinstance(current, gs.Constant) or not current.name:
            continue
        if id(current) in graph_inputs:
            return f"is computed from graph input '{current.name}'"
        if not current.inputs:
            return f"is computed from '{current.name}', which is not produced in this graph"
        producer = current.inputs[0]
        if id(producer) in found:
            continue
        if producer.op not in CONSTANT_OPS or producer.domain not in ("", "ai.onnx"):
            return f"comes from non-constant producer {describe(producer)}"
        found[id(producer)] = producer
        if len(found) > MAX_CONSTANT_NODES:
            return f"comes from a constant subgraph of more than {MAX_CONSTANT_NODES} nodes"
        stack.extend(producer.inputs)
    return [n for n in graph.nodes if id(n) in found]


def _evaluate(chain: List[gs.Node], tensor: gs.Tensor, opset: int) -> np.ndarray:
    """Run the small constant subgraph alone with the onnx reference evaluator."""
    produced = {t.name for n in chain for t in n.outputs}
    leaves: Dict[str, gs.Constant] = {}
    for n in chain:
        for t in n.inputs:
            if isinstance(t, gs.Constant) and t.name not in produced:
                leaves[t.name] = t
    graph = onnx.helper.make_graph(
        [OnnxExporter.export_node(n) for n in chain], "constant_weight", [],
        [onnx.helper.make_empty_tensor_value_info(tensor.name)],
        initializer=[OnnxExporter.export_tensor_proto(t) for t in leaves.values()])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    return np.asarray(ReferenceEvaluator(model).run(None, {})[0])


def _freed(graph: gs.Graph, chain: List[gs.Node], reader: gs.Node) -> List[gs.Node]:
    """The chain nodes whose outputs nothing but the chain and ``reader`` reads."""
    outputs = {id(t) for t in graph.outputs}
    freed = {id(reader)}
    result = []
    for node in reversed(chain):
        if all(id(t) not in outputs and all(id(c) in freed for c in consumers(t)) for t in node.outputs):
            freed.add(id(node))
            result.append(node)
    result.reverse()
    return result


def _scaled(values: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """values * factors computed in float64, rounded once to the dtype of ``values``."""
    return (values.astype(np.float64) * factors).astype(values.dtype)


def _per_channel(scale: np.ndarray, count: int, what: str) -> Union[np.ndarray, Refusal]:
    if scale.ndim == 0:
        return np.full(count, float(scale))
    if scale.shape[0] != count:
        return f"{what} has {count} channels but the fitted scale has {scale.shape[0]}"
    return scale


def _backward(scope: _Scope, span: SiteSpan, scale: np.ndarray) -> Union[_Plan, Refusal]:
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
    weight = _resolve_constant(scope, conv, 1, "weight")
    if isinstance(weight, str):
        return weight
    values, freed = weight
    per_channel = _per_channel(scale, values.shape[0], f"Conv '{conv.name}'")
    if isinstance(per_channel, str):
        return per_channel
    column = per_channel.reshape((-1,) + (1,) * (values.ndim - 1))
    edits = [_Edit(conv, 1, _scaled(values, column), freed)]
    if len(conv.inputs) > 2 and conv.inputs[2].name:
        bias = _resolve_constant(scope, conv, 2, "bias")
        if isinstance(bias, str):
            return bias
        edits.append(_Edit(conv, 2, _scaled(bias[0], per_channel), bias[1]))
    where = f"into Conv {conv.name}"
    if through:
        where += " through " + ", ".join(f"{n.op} {n.name}" for n in reversed(through))
    return _Plan(edits, where)


def _forward(scope: _Scope, span: SiteSpan, scale: np.ndarray) -> Union[_Plan, Refusal]:
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
        weight = _resolve_constant(scope, node, 1, "weight")
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


class Fold:
    """LRN -> a per-channel scale folded into a Conv (or an explicit Mul)."""

    name = "fold"
    cost = 20
    needs_calibration = True

    def needs_stats(self, site: LrnSite) -> bool:
        """Whether rewriting this site needs calibration statistics (not for constant scales)."""
        return constant_factor(site) is None

    def check(self, site: LrnSite) -> Verdict:
        return scale_verdict(site, "", "per-channel scale fitted by least squares on calibration data")

    def rewrite(self, ctx: RewriteContext, site: LrnSite) -> SiteRecord:
        verdict = self.check(site)
        factor = constant_factor(site)
        details: Dict[str, object] = {}
        if factor is not None:
            scale = np.asarray(factor, dtype=np.float64)
        else:
            stats = site_stats(ctx, site, self.name)
            scale = stats.scale()
            details["residual_rms"] = stats.residual_rms(scale, np.zeros_like(scale))
        details["scale"] = summary(scale)

        scope = _Scope.of(ctx, site)
        span = SiteSpan.locate(ctx, site, self.name)
        refused: Dict[str, str] = {}
        plan = _backward(scope, span, scale)
        if isinstance(plan, str):
            refused["backward"] = plan
            plan = _forward(scope, span, scale)
            if isinstance(plan, str):
                refused["forward"] = plan
                plan = None

        removed = [n.name for n in span.nodes]
        if plan is None:
            constant = per_channel_shape(site, scale)  # raises before any edit if impossible
            position = span.detach()
            b = OpBuilder(ctx.names, site.name, ctx.opset, numpy_dtype(site))
            b.op("Mul", "scale", [span.x, b.const("scale", constant)], output=span.y)
            span.insert(position, b.nodes)
            where = f"explicit Mul: {refused['backward']}; {refused['forward']}"
            details.update({"direction": "mul", "tensor": span.y.name})
        else:
            details["weights"] = _apply(ctx, scope.graph, plan)
            where = plan.where
            tensor = span.bypass(ctx)
            if "backward" in refused:
                details.update({"direction": "forward", "tensor": None, "tensor_unscaled": tensor})
            else:
                details.update({"direction": "backward", "tensor": tensor})
        details.update({"folded": where, "refused": refused, "removed": removed})
        log.debug("fold %s: %s, %s", site.name, verdict.status, where)
        return SiteRecord(site, self.name, verdict.status, f"{verdict.reason}; {where}", details)


fold = Fold()
