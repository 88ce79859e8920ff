"""Discovery: every LRN site of a model, with its parameters as the framework meant them.

Nothing else in lrnconv parses LRN attributes: passes, verification and reports all work
from the ``LrnSite`` records made here. Sites are found in the main graph and inside
``If``/``Loop``/``Scan`` bodies. Sites imported from Caffe are described by the importer in
the model's ``lrnconv:sites`` metadata (WITHIN_CHANNEL has no ONNX op, so it arrives
already decomposed and only the metadata says where it is); PyTorch's
``LocalResponseNorm``, which ``torch.onnx`` exports as primitive ops, is recognised by
``lrnconv.graph.patterns``. Sites are listed in graph (topological) order.

A site also answers what its parameters alone decide: whether the LRN is a constant
scale of its input (``constant_factor``: alpha = 0 or beta = 0), and whether it is not a
positive scale at all (``degenerate_reason``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import onnx

from ..base.errors import InvalidSite
from ..base.text import float32_decimal
from .families import Family
from .metadata import declared_sites
from .patterns import torch_pattern_sites
from .preserve import GraphPath, node_key, subgraph_attributes
from .skeleton import weightless_copy

ONNX_LRN_DEFAULTS = {"alpha": 1e-4, "beta": 0.75, "bias": 1.0}


@dataclass(frozen=True)
class LrnSite:
    """One LRN layer: parameters, tensors and what surrounds it."""

    name: str
    family: Family
    size: int
    alpha: float
    beta: float
    bias: float
    input: str
    output: str
    channels: Optional[int] = None
    rank: Optional[int] = None
    elem_type: int = onnx.TensorProto.FLOAT
    graph_path: GraphPath = ()
    producer: Optional[str] = None
    consumers: Tuple[str, ...] = ()

    @property
    def window(self) -> Tuple[int, int]:
        """Channels before and after c in the window [c - lo, c + hi] (PyTorch mirrors ONNX's)."""
        return self.family.window(self.size)

    @property
    def constant_factor(self) -> Optional[float]:
        """f with ``y == f * x`` for every input, or None when the LRN depends on the data.

        ``beta == 0``: the denominator is raised to 0, f = 1. ``alpha == 0``: the
        denominator is ``bias^beta``, f = ``bias^-beta`` (None unless that is a positive
        finite number; see ``degenerate_reason``).
        """
        if self.beta == 0:
            return 1.0
        if self.alpha == 0 and self.bias > 0:
            factor = float(self.bias) ** -float(self.beta)
            if math.isfinite(factor) and factor > 0:
                return factor
        return None

    @property
    def degenerate_reason(self) -> Optional[str]:
        """Why the LRN is not a positive scale of its input at all, or None."""
        if self.alpha == 0 and self.beta != 0 and self.constant_factor is None:
            return (f"alpha = 0 and bias = {self.bias:g}: the LRN divides by bias^beta = "
                    f"{self.bias:g}^{self.beta:g}, which is not a positive finite number")
        return None

    @property
    def rank_reason(self) -> Optional[str]:
        """Why the input rank rules out any rewrite over channels, or None."""
        if self.rank is not None and self.rank < 2:
            return f"LRN input '{self.input}' has rank {self.rank}; LRN needs at least [N, C]"
        return None

    @property
    def location(self) -> str:
        """'main' or the subgraph path, for reports."""
        if not self.graph_path:
            return "main"
        return "/".join(f"{owner}.{attr}" for owner, attr in self.graph_path)

    def to_dict(self) -> Dict[str, object]:
        return {"name": self.name, "family": self.family.value, "size": self.size,
                "alpha": self.alpha, "beta": self.beta, "bias": self.bias,
                "input": self.input, "output": self.output, "channels": self.channels,
                "rank": self.rank, "dtype": onnx.TensorProto.DataType.Name(self.elem_type),
                "location": self.location, "producer": self.producer,
                "consumers": list(self.consumers)}


@dataclass
class _TensorFacts:
    elem_type: Dict[str, int] = field(default_factory=dict)
    shape: Dict[str, List[Optional[int]]] = field(default_factory=dict)


def _collect_facts(graph: onnx.GraphProto, facts: _TensorFacts) -> None:
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            continue
        if tt.elem_type:
            facts.elem_type[vi.name] = tt.elem_type
        if tt.HasField("shape"):
            facts.shape[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    for tensor in graph.initializer:
        facts.elem_type[tensor.name] = tensor.data_type
        facts.shape[tensor.name] = list(tensor.dims)
    for node in graph.node:
        for _, sub in subgraph_attributes(node):
            _collect_facts(sub, facts)


def _infer_facts(model: onnx.ModelProto) -> _TensorFacts:
    facts = _TensorFacts()
    try:
        inferred = onnx.shape_inference.infer_shapes(weightless_copy(model))
    except Exception:  # inference is a convenience here; discovery works without it
        inferred = model
    _collect_facts(inferred.graph, facts)
    return facts


def _attribute(node: onnx.NodeProto, name: str, kind: int, default, where: str):
    """An LRN attribute of the type the ONNX spec gives it; floats as the stored float32's decimal.

    Raises:
        InvalidSite: the attribute has another type (a FLOAT size, a STRING alpha ...).
    """
    for a in node.attribute:
        if a.name == name:
            if a.type != kind:
                value = onnx.helper.get_attribute_value(a)
                raise InvalidSite(f"{where} has {name}={value!r} as a {onnx.AttributeProto.AttributeType.Name(a.type)} "
                                  f"attribute; {name} must be {onnx.AttributeProto.AttributeType.Name(kind)}")
            return float32_decimal(a.f) if kind == onnx.AttributeProto.FLOAT else a.i
    return default


def _validated(where: str, size, alpha: float, beta: float, bias: float) -> None:
    """Refuse LRN parameters for which the layer is undefined or NaN.

    The base ``bias + alpha/size * sum(x^2)`` must stay positive for every input: alpha and
    bias may not be negative, and not both zero (bias 0 alone is LRN as an L2 norm: 0/0 only
    where a whole window is zero).

    Raises:
        InvalidSite: naming the parameter, its value and what would be valid.
    """
    if size is None:
        raise InvalidSite(f"{where} has no 'size' attribute (it is required)")
    if int(size) != size or size <= 0:
        raise InvalidSite(f"{where} has size={size}; size must be a positive integer")
    for name, value in (("alpha", alpha), ("beta", beta), ("bias", bias)):
        if not math.isfinite(value):
            raise InvalidSite(f"{where} has {name}={value}; {name} must be a finite number")
    if alpha < 0:
        raise InvalidSite(f"{where} has alpha={alpha:g}; a negative alpha lets the base bias + alpha/size*sum(x^2) "
                          "reach 0 and below (alpha must be >= 0)")
    if bias < 0 or (bias == 0 and alpha == 0):
        raise InvalidSite(f"{where} has bias={bias:g} with alpha={alpha:g}; the base bias + alpha/size*sum(x^2) "
                          "would reach 0 and below (bias must be > 0, or 0 with alpha > 0)")


def _site_from_node(node: onnx.NodeProto, path: GraphPath, facts: _TensorFacts,
                    producers: Dict[str, str], consumers: Dict[str, List[str]],
                    caffe: Dict[str, dict]) -> LrnSite:
    name = node.name or f"LRN({node.output[0]})"
    where = f"LRN node '{name}'"
    floats = onnx.AttributeProto.FLOAT
    size = _attribute(node, "size", onnx.AttributeProto.INT, None, where)
    alpha = _attribute(node, "alpha", floats, ONNX_LRN_DEFAULTS["alpha"], where)
    beta = _attribute(node, "beta", floats, ONNX_LRN_DEFAULTS["beta"], where)
    bias = _attribute(node, "bias", floats, ONNX_LRN_DEFAULTS["bias"], where)
    _validated(where, size, alpha, beta, bias)
    x = node.input[0]
    shape = facts.shape.get(x)
    declared = caffe.get(node.name, {})
    return LrnSite(
        name=name,
        family=Family(declared.get("family", Family.ONNX)),
        size=int(size),
        alpha=float(alpha),
        beta=float(beta),
        bias=float(bias),
        input=x,
        output=node.output[0],
        channels=shape[1] if shape is not None and len(shape) > 1 else None,
        rank=len(shape) if shape is not None else None,
        elem_type=facts.elem_type.get(x, onnx.TensorProto.FLOAT),
        graph_path=path,
        producer=producers.get(x),
        consumers=tuple(consumers.get(node.output[0], ())),
    )


def _walk(graph: onnx.GraphProto, path: GraphPath, facts: _TensorFacts,
          caffe: Dict[str, dict], sites: List[LrnSite]) -> None:
    producers: Dict[str, str] = {}
    consumers: Dict[str, List[str]] = {}
    for node in graph.node:
        for out in node.output:
            producers[out] = node.op_type
        for inp in node.input:
            consumers.setdefault(inp, []).append(node.op_type)
    here: List[LrnSite] = []
    nested: List[LrnSite] = []
    for node in graph.node:
        if node.op_type == "LRN" and node.domain in ("", "ai.onnx"):
            here.append(_site_from_node(node, path, facts, producers, consumers, caffe))
        for attr_name, sub in subgraph_attributes(node):
            _walk(sub, path + ((node_key(node), attr_name),), facts, caffe, nested)
    described = torch_pattern_sites(graph)
    if not path:
        described += [d for d in caffe.values() if d.get("family") == Family.CAFFE_WITHIN]
    here += [_declared_site(d, path, facts, producers, consumers) for d in described]
    position = {out: i for i, node in enumerate(graph.node) for out in node.output}
    sites.extend(sorted(here, key=lambda s: position.get(s.output, len(position))))
    sites.extend(nested)


def _declared_site(declared: dict, path: GraphPath, facts: _TensorFacts, producers, consumers) -> LrnSite:
    _validated(f"LRN '{declared['name']}' ({declared['family']})", declared["size"], float(declared["alpha"]),
               float(declared["beta"]), float(declared.get("bias", 1.0)))
    x = declared["input"]
    shape = facts.shape.get(x)
    return LrnSite(
        name=declared["name"], family=Family(declared["family"]), size=int(declared["size"]),
        alpha=float(declared["alpha"]), beta=float(declared["beta"]),
        bias=float(declared.get("bias", 1.0)), input=x, output=declared["output"],
        channels=shape[1] if shape is not None and len(shape) > 1 else None,
        rank=len(shape) if shape is not None else None,
        elem_type=facts.elem_type.get(x, onnx.TensorProto.FLOAT), graph_path=path,
        producer=producers.get(x), consumers=tuple(consumers.get(declared["output"], ())))


def find_lrn(model: onnx.ModelProto) -> List[LrnSite]:
    """Every LRN site of the model, main graph first, in graph order.

    Raises:
        InvalidSite: an LRN node with a missing or non-positive ``size``.
    """
    facts = _infer_facts(model)
    sites: List[LrnSite] = []
    _walk(model.graph, (), facts, declared_sites(model), sites)
    return sites
