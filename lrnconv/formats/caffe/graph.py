"""The ONNX graph under construction, and the per-layer view that converters work through.

Naming (what a user sees in the ONNX model):
- a tensor is named after the Caffe blob it holds; when a blob is written again (an
  in-place layer such as ``relu1`` with ``bottom: conv1 top: conv1``), the new value is
  named ``<blob>/<layer>`` (``conv1/relu1``), so ``conv1`` stays the convolution's output;
- a node is named after its layer; a layer that needs several ONNX nodes names the one
  that produces its top after the layer and the others ``<layer>/<step>``;
- initializers are ``<layer>/<role>`` (``conv1/weight``, ``conv1/bias``).
Every Caffe blob name is reserved up front, so a generated name never takes a blob's.

Shapes are tracked with the batch dimension the prototxt declares. The graph inputs get
a symbolic batch ``N`` unless a layer's computation depends on the declared value
(``LayerContext.pin_batch``), in which case the declared value is kept and a note says
which layer fixed it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper

from ...base.errors import BadInput, UnsupportedModel
from ...base.text import float32_decimal, shape_text
from ...graph.families import Family
from .caffemodel import array_bytes
from .params import ParamSpec

Shape = Tuple[int, ...]

OPSET = 13
IR_VERSION = 7          # the IR of opset 13; every runtime that runs opset 13 reads it


@dataclass
class GraphBuilder:
    """Accumulates nodes, initializers and the blob -> tensor mapping of one net."""

    prototxt: str
    weights_path: Optional[str]
    weights: object                     # CaffemodelWeights or RandomWeights
    reserved: Set[str]                  # every Caffe blob name
    model: onnx.ModelProto = field(default_factory=onnx.ModelProto)
    taken: Set[str] = field(default_factory=set)
    node_names: Set[str] = field(default_factory=set)
    blob_tensor: Dict[str, str] = field(default_factory=dict)   # blob -> current tensor
    available: Dict[str, str] = field(default_factory=dict)     # unconsumed blobs
    shapes: Dict[str, Shape] = field(default_factory=dict)
    batch_tensors: Set[str] = field(default_factory=set)        # axis 0 is the batch
    inputs: List[Tuple[str, Shape]] = field(default_factory=list)
    sites: List[dict] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    pinned_by: Optional[str] = None

    @property
    def graph(self) -> onnx.GraphProto:
        return self.model.graph

    def fresh(self, hint: str) -> str:
        """A tensor name that is free and is no Caffe blob's name."""
        name, i = hint, 0
        while name in self.taken or name in self.reserved:
            i += 1
            name = f"{hint}_{i}"
        self.taken.add(name)
        return name

    def blob_name(self, blob: str, layer: str) -> str:
        """The tensor name for a new value of ``blob`` written by ``layer``."""
        if blob not in self.taken:
            self.taken.add(blob)
            return blob
        return self.fresh(f"{blob}/{layer}")

    def node_name(self, hint: str) -> str:
        name, i = hint, 0
        while name in self.node_names:
            i += 1
            name = f"{hint}_{i}"
        self.node_names.add(name)
        return name

    def add_input(self, blob: str, shape: Shape, tensor: Optional[str] = None) -> str:
        """Declare a graph input holding ``blob`` (as tensor ``tensor``, default: allocated)."""
        tensor = tensor or self.blob_name(blob, "input")
        self.inputs.append((tensor, tuple(shape)))
        self.shapes[tensor] = tuple(shape)
        if len(shape) >= 2:
            self.batch_tensors.add(tensor)
        self.blob_tensor[blob] = tensor
        self.available[blob] = tensor
        return tensor

    def initializer(self, name: str, array: np.ndarray, dims: Optional[Sequence[int]] = None):
        tensor = self.graph.initializer.add()
        tensor.name = name
        if array.dtype == np.int64:
            tensor.data_type = TensorProto.INT64
            tensor.raw_data = np.ascontiguousarray(array, dtype="<i8").tobytes()
        else:
            tensor.data_type = TensorProto.FLOAT
            tensor.raw_data = array_bytes(array)
        tensor.dims.extend(int(d) for d in (array.shape if dims is None else dims))
        return name


class LayerContext:
    """What a converter sees of one Caffe layer, and how it adds ONNX nodes.

    Attributes:
        layer: the ``LayerParameter`` (current format, also for V1 input).
        name, type: the layer's name and type.
        inputs: ONNX tensor names of the bottoms; ``shapes``: their shapes.
    """

    def __init__(self, builder: GraphBuilder, layer):
        self.builder = builder
        self.layer = layer
        self.name = layer.name
        self.type = layer.type
        self.inputs = [builder.blob_tensor[b] for b in layer.bottom]
        self.shapes = [builder.shapes[t] for t in self.inputs]
        self.keeps_batch = bool(self.inputs) and self.inputs[0] in builder.batch_tensors
        self._tops: Dict[int, str] = {}

    # -- errors ---------------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"{self.builder.prototxt}: layer '{self.name}' ({self.type})"

    def bad(self, message: str) -> BadInput:
        """A BadInput naming the prototxt and this layer."""
        return BadInput(f"{self.where}: {message}")

    def unsupported(self, message: str) -> UnsupportedModel:
        return UnsupportedModel(f"{self.where}: {message}")

    # -- names ----------------------------------------------------------------------

    @property
    def shape(self) -> Shape:
        return self.shapes[0]

    def top(self, i: int = 0) -> str:
        """The tensor name of top ``i`` (allocated on first use)."""
        if i not in self._tops:
            self._tops[i] = self.builder.blob_name(self.layer.top[i], self.name)
        return self._tops[i]

    def tmp(self, step: str) -> str:
        """A fresh name for an intermediate tensor of this layer."""
        return self.builder.fresh(f"{self.name}/{step}")

    # -- graph ----------------------------------------------------------------------

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str],
             step: Optional[str] = None, **attrs) -> None:
        """Add a node named after the layer (``step`` given: ``<layer>/<step>``)."""
        name = self.builder.node_name(self.name if step is None else f"{self.name}/{step}")
        self.builder.graph.node.append(
            helper.make_node(op_type, list(inputs), list(outputs), name=name, **attrs))

    def const(self, role: str, array, dims: Optional[Sequence[int]] = None) -> str:
        """Add an initializer ``<layer>/<role>`` holding ``array`` (float32 or int64)."""
        array = np.asarray(array)
        if array.dtype != np.int64:
            array = array.astype(np.float32, copy=False)
        return self.builder.initializer(self.builder.fresh(f"{self.name}/{role}"), array, dims)

    def params(self, specs: Sequence[ParamSpec]) -> List[np.ndarray]:
        """The layer's parameter blobs (from the .caffemodel, or seeded random)."""
        return self.builder.weights.fetch(self.name, self.type, specs)

    def pin_batch(self, reason: str) -> None:
        """Record that this layer depends on the declared batch size."""
        if self.builder.pinned_by is None:
            self.builder.pinned_by = f"layer '{self.name}' ({self.type}) {reason}"

    def site(self, family: Family, size: int, alpha: float, beta: float, bias: float,
             input_name: str, output_name: str) -> None:
        """Record an LRN site for the model's metadata (``lrnconv.graph.metadata``)."""
        self.builder.sites.append({
            "name": self.name, "family": family.value, "size": int(size),
            "alpha": float32_decimal(alpha), "beta": float32_decimal(beta),
            "bias": float32_decimal(bias),
            "input": input_name, "output": output_name,
        })

    def note(self, text: str) -> None:
        self.builder.notes.append(text)


def axis_index(ctx: LayerContext, axis: int, rank: int, what: str = "axis") -> int:
    """Caffe's ``CanonicalAxisIndex``: ``axis`` in ``[-rank, rank)``, made non-negative."""
    if not -rank <= axis < rank:
        raise ctx.bad(f"{what} {axis} is out of range for an input of shape "
                      f"{shape_text(ctx.shape)}")
    return axis + rank if axis < 0 else axis


def value_info(name: str, shape: Optional[Sequence], elem_type=TensorProto.FLOAT):
    """A ValueInfoProto; ``shape`` items are ints or symbolic names; None: no shape."""
    if shape is None:
        info = onnx.ValueInfoProto(name=name)
        info.type.tensor_type.elem_type = elem_type
        return info
    return helper.make_tensor_value_info(name, elem_type, list(shape))
