"""Small builders of onnx-graphsurgeon nodes, valid for the model's opset.

Every pass emits its ops through ``OpBuilder`` so that opset differences (Unsqueeze's
axes as attribute before opset 13 and as input after, Pad's and Slice's attributes
before opsets 11 and 10) are handled in one place, and so that every new node and
tensor gets a readable, collision-free name derived from the site (``NameAllocator``).
"""
from __future__ import annotations

import itertools
from typing import List, Optional, Sequence, Set

import numpy as np
import onnx
import onnx_graphsurgeon as gs


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


def numpy_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX element type."""
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))


def channel_broadcast(values, rank: int) -> np.ndarray:
    """Per-channel values shaped [C, 1, ..., 1] to broadcast along axis 1 of a rank-``rank``
    tensor; a scalar stays a scalar (it broadcasts whatever the rank)."""
    values = np.asarray(values)
    if values.ndim == 0:
        return values
    return values.reshape((-1,) + (1,) * (rank - 2))


class OpBuilder:
    """Appends primitive ops to a list, in order, for one rewrite.

    Args:
        names: allocator for node and tensor names.
        prefix: base of every new name (the site name).
        opset: the default-domain opset the model imports.
        dtype: numpy dtype of the computation (constants are made in it).
    """

    def __init__(self, names: NameAllocator, prefix: str, opset: int, dtype):
        self.names = names
        self.prefix = prefix
        self.opset = opset
        self.dtype = np.dtype(dtype)
        self.nodes: List[gs.Node] = []

    def const(self, label: str, values, dtype=None) -> gs.Constant:
        array = np.asarray(values, dtype=dtype or self.dtype)
        return gs.Constant(self.names(f"{self.prefix}/{label}"), array)

    def op(self, op_type: str, label: str, inputs: Sequence[gs.Tensor],
           attrs: Optional[dict] = None, output: Optional[gs.Variable] = None) -> gs.Variable:
        out = output if output is not None else gs.Variable(self.names(f"{self.prefix}/{label}"))
        node = gs.Node(op=op_type, name=self.names(f"{self.prefix}/{label}"),
                       attrs=dict(attrs or {}), inputs=list(inputs), outputs=[out])
        self.nodes.append(node)
        return out

    def unsqueeze(self, x: gs.Tensor, axes: Sequence[int], label: str) -> gs.Variable:
        if self.opset >= 13:
            return self.op("Unsqueeze", label, [x, self.const(f"{label}_axes", axes, np.int64)])
        return self.op("Unsqueeze", label, [x], {"axes": list(axes)})

    def squeeze(self, x: gs.Tensor, axes: Sequence[int], label: str,
                output: Optional[gs.Variable] = None) -> gs.Variable:
        if self.opset >= 13:
            return self.op("Squeeze", label, [x, self.const(f"{label}_axes", axes, np.int64)], output=output)
        return self.op("Squeeze", label, [x], {"axes": list(axes)}, output=output)

    def pad(self, x: gs.Tensor, pads: Sequence[int], label: str) -> gs.Variable:
        if self.opset >= 11:
            return self.op("Pad", label, [x, self.const(f"{label}_pads", pads, np.int64)])
        return self.op("Pad", label, [x], {"pads": list(pads)})

    def slice(self, x: gs.Tensor, start: int, end: int, axis: int, label: str) -> gs.Variable:
        if self.opset >= 10:
            return self.op("Slice", label, [x, self.const(f"{label}_starts", [start], np.int64),
                                            self.const(f"{label}_ends", [end], np.int64),
                                            self.const(f"{label}_axes", [axis], np.int64)])
        return self.op("Slice", label, [x], {"starts": [start], "ends": [end], "axes": [axis]})

    def cast(self, x: gs.Tensor, to: int, label: str, output: Optional[gs.Variable] = None) -> gs.Variable:
        return self.op("Cast", label, [x], {"to": to}, output=output)
