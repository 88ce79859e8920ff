"""The value of a weight, when it is a constant that one node alone may rewrite.

Folding a scale into a Conv rewrites the Conv's weight, so the weight must be a constant
read by that Conv alone: a weight shared with another node, a graph input, or one computed
from non-constant data is refused, and the reason names it. Weights produced by small
constant subgraphs (``Constant``, ``ConstantOfShape`` of a constant shape, and short chains
of shape and arithmetic ops on constants, as exporters and IR-3 era tools write them) are
evaluated on that subgraph alone with ``onnx.reference``; the nodes that computed only
that weight are reported so that the caller can remove them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Tuple, Union

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx.reference import ReferenceEvaluator
from onnx_graphsurgeon.exporters.onnx_exporter import OnnxExporter

from .span import Refusal, consumers, describe

CONSTANT_OPS = frozenset({
    "Constant", "ConstantOfShape", "Identity", "Cast", "Reshape", "Transpose", "Squeeze",
    "Unsqueeze", "Flatten", "Concat", "Slice", "Gather", "Expand", "Tile", "Shape",
    "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Sqrt", "Pow", "Exp", "Log", "Reciprocal",
})
"""Deterministic ops whose output on constant inputs is evaluated to an initializer."""

MAX_CONSTANT_NODES = 16


@dataclass(frozen=True)
class ConstantScope:
    """The graph a weight lives in, the opset, and the initializers callers may override
    (listed as graph inputs too, in IR >= 4 models: a default, not a constant)."""

    graph: gs.Graph
    opset: int
    overridable: FrozenSet[str] = frozenset()


def resolve_constant(scope: ConstantScope, node: gs.Node, index: int, role: str
                     ) -> Union[Tuple[np.ndarray, List[gs.Node]], Refusal]:
    """The value of input ``index`` of ``node`` if that node alone may rewrite it, and the
    nodes computing it that only it uses; else why not.

    Args:
        role: what the input is to the node ("weight", "bias"), for the reason.
    """
    graph = scope.graph
    tensor = node.inputs[index]
    what = f"{node.op} {role} '{tensor.name}' of node '{node.name}'"
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
