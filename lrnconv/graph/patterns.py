"""LRN that an exporter wrote as primitive ops: recognising PyTorch's ``LocalResponseNorm``.

``torch.onnx`` does not emit ``LRN``; ``nn.LocalResponseNorm`` becomes a chain ending in

    y = Div(x, Pow(Add(Mul(A, alpha), k), beta))

where ``A`` is the channel-window average of ``Mul(x, x)`` computed with an
``AveragePool`` (kernel ``[size, 1, ...]`` over an unsqueezed channel axis, zero padding
counted) and a tangle of Shape / Gather / Reshape / If nodes around it. PyTorch pads the
channel window ``size // 2`` in front and ``(size - 1) // 2`` behind (the mirror of ONNX's
window for even sizes), so such a site has family ``torch-pattern`` and its own window.

The matcher anchors on the ``Div`` and reads the constants, then checks that the
``AveragePool`` and the square of the same ``x`` are among the denominator's ancestors.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import onnx
from onnx import numpy_helper

from ..base.text import shortest_decimal
from .families import Family

_SEARCH_LIMIT = 64
"""How many ancestors of the denominator to visit looking for the pool and the square."""


class _Graph:
    """Producers and constant values of one GraphProto, for matching."""

    def __init__(self, graph: onnx.GraphProto):
        self.producer: Dict[str, onnx.NodeProto] = {o: n for n in graph.node for o in n.output}
        self.constants: Dict[str, np.ndarray] = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = node.attribute[0].t

    def scalar(self, name: str) -> Optional[float]:
        tensor = self.constants.get(name)
        if tensor is None:
            return None
        value = numpy_helper.to_array(tensor)
        if value.size != 1:
            return None
        return shortest_decimal(value.reshape(-1)[0])  # float32 0.001 reads as 0.001

    def made_by(self, name: str, op: str) -> Optional[onnx.NodeProto]:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op else None

    def split_constant(self, node: onnx.NodeProto):
        """(other input, scalar) of a binary node with one scalar-constant operand."""
        for i in (0, 1):
            value = self.scalar(node.input[1 - i])
            if value is not None:
                return node.input[i], value
        return None, None


def _pool_and_square(g: _Graph, start: str, x: str) -> Optional[int]:
    """The window size if an AveragePool over x*x is among the ancestors of ``start``."""
    size, squared = None, False
    frontier, seen = [start], set()
    while frontier and len(seen) < _SEARCH_LIMIT:
        name = frontier.pop()
        node = g.producer.get(name)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "AveragePool":
            kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [])
            include = next((a.i for a in node.attribute if a.name == "count_include_pad"), 0)
            if kernel and all(k == 1 for k in kernel[1:]) and include == 1:
                size = kernel[0]
        if node.op_type == "Mul" and list(node.input) == [x, x]:
            squared = True
            continue
        if node.op_type == "Pow" and node.input[0] == x and g.scalar(node.input[1]) == 2.0:
            squared = True
            continue
        frontier.extend(i for i in node.input if i and i != x)
    return size if squared else None


def torch_pattern_sites(graph: onnx.GraphProto) -> List[Dict[str, object]]:
    """Every PyTorch-exported LocalResponseNorm in one graph, as site descriptions."""
    g = _Graph(graph)
    found = []
    for node in graph.node:
        if node.op_type != "Div":
            continue
        x, denominator = node.input[0], node.input[1]
        power = g.made_by(denominator, "Pow")
        beta = g.scalar(power.input[1]) if power is not None else None
        shifted = g.made_by(power.input[0], "Add") if beta is not None else None
        scaled_name, k = g.split_constant(shifted) if shifted is not None else (None, None)
        scaled = g.made_by(scaled_name, "Mul") if scaled_name else None
        average, alpha = g.split_constant(scaled) if scaled is not None else (None, None)
        size = _pool_and_square(g, average, x) if average is not None else None
        if size is None:
            continue
        found.append({"name": node.name or f"LocalResponseNorm({node.output[0]})", "family": Family.TORCH_PATTERN,
                      "size": size, "alpha": alpha, "beta": beta, "bias": k,
                      "input": x, "output": node.output[0]})
    return found
