"""The span of a site: the nodes a rewrite takes out, and how it takes them out.

``remove``, ``fold``, ``bn``, ``l2`` and ``decompose`` start the same way: find the nodes
that make up a site, check that nothing outside them reads their intermediate tensors,
and take them out of the graph. Then either the consumers read the site input instead
(``bypass``: remove, fold) or new nodes write the site output under its own name
(bn, l2, decompose, fold's explicit ``Mul``).

What a site's nodes are:

* a site that is an ONNX ``LRN`` node (``site.family.is_lrn_node``): that one node;
* a site that exists as an op chain (Caffe ``WITHIN_CHANNEL`` as imported, PyTorch's
  exported ``LocalResponseNorm``): every node on a path from ``site.input`` to
  ``site.output``, plus the nodes that existed only to feed those (``Constant`` nodes of
  the chain's alpha / beta, its Shape arithmetic). If an intermediate tensor of the chain
  is read by anything else, the site cannot be replaced as a whole and ``SiteSpan.locate``
  answers with the name of that reader instead of a span.

The nodes of the graph keep their order (the new nodes take the place of the site's
last node); nothing outside the site is deleted, so the user's own dead nodes stay.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import onnx_graphsurgeon as gs

from .nodes import NameAllocator, OpBuilder, numpy_dtype
from .preserve import EditableGraphs
from .sites import LrnSite

Refusal = str
"""Why something cannot be done, in words a user reads."""


def lrn_node(graph: gs.Graph, site: LrnSite) -> gs.Node:
    """The LRN node of a site (found by its output tensor, which SSA keeps unique)."""
    for node in graph.nodes:
        if node.op == "LRN" and node.outputs and node.outputs[0].name == site.output:
            return node
    raise KeyError(site.output)


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
    op chain), ``feeders`` the nodes that only existed to feed them.
    """

    site: LrnSite
    graph: gs.Graph
    x: gs.Tensor
    y: gs.Variable
    nodes: List[gs.Node]
    feeders: List[gs.Node] = field(default_factory=list)

    @classmethod
    def locate(cls, graphs: EditableGraphs, site: LrnSite) -> Union["SiteSpan", Refusal]:
        """A site's nodes, or why the site cannot be replaced as a whole (an op chain whose
        intermediate tensors are read outside it, or whose output is not computed from
        its input)."""
        graph = graphs.graph_at(site.graph_path)
        if site.family.is_lrn_node:
            node = lrn_node(graph, site)
            return cls(site, graph, node.inputs[0], node.outputs[0], [node])
        tensors = graph.tensors()
        if site.input not in tensors or site.output not in tensors:
            missing = site.input if site.input not in tensors else site.output
            return f"its tensor '{missing}' is not in the graph"
        x, y = tensors[site.input], tensors[site.output]
        nodes, feeders = _chain(graph, x, y)
        if not y.inputs or not any(y.inputs[0] is n for n in nodes):
            return f"its output '{y.name}' is not computed from its input '{x.name}'"
        leak = _leak(graph, nodes, y)
        if leak:
            return leak
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

    def bypass(self, names: NameAllocator, opset: int) -> str:
        """Delete the site: its consumers read ``x``. Returns the tensor now carrying the value.

        When the site output is an output of its graph, the output name must stay, so
        an ``Identity`` writes it from ``x`` instead (and the consumers keep reading it).
        """
        position = self.detach()
        if self.is_graph_output:
            b = OpBuilder(names, self.site.name, opset, numpy_dtype(self.site.elem_type))
            b.op("Identity", "bypass", [self.x], output=self.y)
            self.insert(position, b.nodes)
            return self.y.name
        for node in consumers(self.y):
            for i, tensor in enumerate(node.inputs):
                if tensor is self.y:
                    node.inputs[i] = self.x
        return self.x.name


def _chain(graph: gs.Graph, x: gs.Tensor, y: gs.Tensor):
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
    """Why the op chain cannot be replaced as a whole (an intermediate read outside)."""
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
