"""INT8: quantize a (converted) float model with ONNX Runtime, measure it against the float original.

What an engineer shipping to an integer-only target (Edge TPU, Ethos-U, Qualcomm HTP,
TensorRT DLA in INT8) needs to know about a rewrite: how far its INT8 model drifts from
the *float original*, and which nodes the quantizer left in float. The quantizer
(``lrnconv.runtime.quantizer``: QDQ, per-channel symmetric int8) calibrates its ranges on the
calibration half of the data; the INT8 model is verified on the held-out half, against
the original float model as verification always runs it (``verify_against``), and judged
by a task-level ``Tolerance`` (element-wise atol/rtol would reject any INT8 model).

**Float islands.** A node of the QDQ model stays in float when ONNX Runtime's quantizer
does not quantize its op type (it has no quantized LRN, ``Sqrt``, ``Div``, ``Pow``,
``LpNormalization`` ...), when it was excluded on request, or when one of its float inputs
does not come from a ``DequantizeLinear``. Each is named, with the LRN site it belongs to
where it is one (an LRN kept as it is, or a node a rewrite emitted for a site): a model with
float islands is not deployable on an integer-only target as it is.

ONNX Runtime's INT8 is a proxy for the target's own quantizer (each calibrates and rounds
its own way); every report says so.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import onnx

from ..engine.protocol import SiteRecord
from ..graph.sites import LrnSite, find_lrn
from ..maths.drift import Drift, Tolerance
from ..runtime.inputs import Samples
from ..runtime.quantizer import Quantized, QuantizerSettings, quantize_static_int8, quantized_op_types
from ..runtime.runnable import RunnableReference
from .calibration import split_halves
from .verification import DriftReport, PerOutput, verify_against

log = logging.getLogger(__name__)

INT8 = "int8"
QUANTIZE_CHOICES = (INT8,)
PROXY_NOTE = ("ONNX Runtime's INT8 is a proxy for the target's own quantizer (TensorRT, TFLite, the Edge TPU "
              "compiler, Vela and QNN calibrate and round their own way): confirm the numbers on the target")
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_METADATA_OPS = ("Shape", "Size", "Constant", "ConstantOfShape")


@dataclass(frozen=True)
class Int8Options:
    """How to quantize: what ``--quantize int8`` and its options ask for.

    Attributes:
        exclude_decomposition: keep the nodes ``decompose`` emitted in float (the
            quantizer is told to leave them; they are then listed as float islands).
        exclude_nodes: further node names to keep in float.
        per_channel: per-channel weight scales. Defaults to True.
        symmetric_activations: symmetric int8 activations. Defaults to True.
        reduce_range: 7-bit weights. Defaults to None: only on a CPU whose int8 dot
            products saturate (``lrnconv.runtime.cpu``).
    """

    exclude_decomposition: bool = False
    exclude_nodes: Tuple[str, ...] = ()
    per_channel: bool = True
    symmetric_activations: bool = True
    reduce_range: Optional[bool] = None

    def settings(self, exclude: Sequence[str] = ()) -> QuantizerSettings:
        return QuantizerSettings(self.per_channel, self.symmetric_activations,
                                 tuple(dict.fromkeys(tuple(self.exclude_nodes) + tuple(exclude))), self.reduce_range)

    def to_dict(self) -> Dict[str, object]:
        return {"exclude_decomposition": self.exclude_decomposition, "exclude_nodes": list(self.exclude_nodes),
                "per_channel": self.per_channel, "symmetric_activations": self.symmetric_activations,
                "reduce_range": self.settings().reduced}


@dataclass(frozen=True)
class FloatIsland:
    """A node of the QDQ model that computes in float, and why."""

    node: str
    op_type: str
    reason: str
    site: Optional[str] = None
    """The LRN site it belongs to (the LRN itself, or a node a rewrite emitted for it)."""

    def to_dict(self) -> Dict[str, object]:
        return {"node": self.node, "op_type": self.op_type, "site": self.site, "reason": self.reason}

    def describe(self) -> str:
        where = f" (LRN site '{self.site}')" if self.site else ""
        return f"{self.node} [{self.op_type}]{where}: {self.reason}"


@dataclass
class Int8Report:
    """The INT8 model of a float model, its drift from the float original, and its float islands."""

    model: onnx.ModelProto
    verify: DriftReport
    float_islands: List[FloatIsland]
    settings: str
    calibration_samples: int
    opset_from: int
    opset_to: int
    excluded: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.verify.passed

    @property
    def integer_only(self) -> bool:
        """True when no node computes in float: deployable on an integer-only target as it is."""
        return not self.float_islands

    def outputs(self, provider: Optional[str] = None) -> Dict[str, Drift]:
        """Output drifts on ``provider`` (the first verified one by default)."""
        if not self.verify.providers:
            return {}
        key = provider if provider is not None else next(iter(self.verify.providers))
        return self.verify.providers[key].outputs

    def to_dict(self, output_path: Optional[str] = None) -> Dict[str, object]:
        return {"output": output_path, "quantizer": self.settings,
                "calibration_samples": self.calibration_samples, "evaluation_samples": self.verify.samples,
                "opset": {"from": self.opset_from, "to": self.opset_to},
                "integer_only": self.integer_only,
                "float_islands": [i.to_dict() for i in self.float_islands],
                "excluded": list(self.excluded), "verify": self.verify.to_dict(),
                "notes": list(self.notes) + [PROXY_NOTE]}


def rewrite_nodes(original: onnx.ModelProto, converted: onnx.ModelProto,
                  records: Sequence[SiteRecord]) -> Dict[str, Tuple[str, str]]:
    """Node name -> (site name, strategy) for every node a rewrite added for a site.

    Found in the graph, not from naming conventions: from the tensor that carries each site's
    value, back through every node that the original model does not have.
    """
    carriers = [(r.site.name, r.strategy, r.tensor) for r in records if r.tensor is not None and not r.site.graph_path]
    return _emitted_for(original, converted, carriers)


def _emitted_for(original: onnx.ModelProto, converted: onnx.ModelProto,
                 carriers: Sequence[Tuple[str, str, str]]) -> Dict[str, Tuple[str, str]]:
    before = {n.name for n in original.graph.node}
    producers = {t: n for n in converted.graph.node for t in n.output}
    found: Dict[str, Tuple[str, str]] = {}
    for site, strategy, tensor in carriers:
        stack, seen = [tensor], set()
        while stack:
            node = producers.get(stack.pop())
            if node is None or node.name in before or node.name in seen:
                continue
            seen.add(node.name)
            found.setdefault(node.name, (site, strategy))
            stack.extend(node.input)
    return found


def _float_types(model: onnx.ModelProto) -> Dict[str, int]:
    """Tensor name -> element type, as far as shape inference knows them."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # an inference failure only leaves types unknown (then assumed float)
        inferred = model
    graph = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in
             list(graph.value_info) + list(graph.input) + list(graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16}


def float_islands(quantized: onnx.ModelProto, sites: Sequence[LrnSite] = (),
                  site_nodes: Optional[Mapping[str, str]] = None, excluded: Sequence[str] = ()) -> List[FloatIsland]:
    """The nodes of a QDQ model that compute in float (see the module docstring), in graph order.

    Args:
        sites: the LRN sites of the float model (LRN nodes are named as theirs).
        site_nodes: node name -> site name, for nodes a rewrite emitted for a site.
        excluded: node names the quantizer was told to leave in float.
    """
    quantized_ops = quantized_op_types()
    site_of = dict(site_nodes or {})
    for site in sites:
        site_of.setdefault(site.name, site.name)
    types = _float_types(quantized)
    constants = {t.name for t in quantized.graph.initializer}
    producers: Dict[str, onnx.NodeProto] = {}
    for node in quantized.graph.node:
        for t in node.output:
            producers[t] = node
        if node.op_type == "Constant":
            constants.update(node.output)
    excluded_set = set(excluded)

    def is_float(name: str) -> bool:
        return types.get(name, onnx.TensorProto.FLOAT) in _FLOATS or types.get(name) == 0

    islands: List[FloatIsland] = []
    for node in quantized.graph.node:
        if node.op_type in _QDQ or node.op_type in _METADATA_OPS or node.domain not in ("", "ai.onnx"):
            continue
        activations = [t for t in node.input if t and t not in constants]
        if not activations or not any(is_float(t) for t in node.output):
            continue
        float_inputs = [t for t in activations if is_float(t)]
        reason = None
        if node.name in excluded_set:
            reason = "kept in float on request"
        elif node.op_type not in quantized_ops:
            reason = ("ONNX Runtime has no quantized LRN" if node.op_type == "LRN"
                      else f"ONNX Runtime's quantizer does not quantize {node.op_type}")
        else:
            raw = [t for t in float_inputs if producers.get(t) is None or producers[t].op_type != "DequantizeLinear"]
            if raw:
                reason = f"its input '{raw[0]}' is not quantized"
        if reason is not None:
            islands.append(FloatIsland(node.name, node.op_type, reason, site_of.get(node.name)))
    return islands


def quantize_model(candidate: onnx.ModelProto, calibration: Samples, options: Int8Options, *,
                   decomposition_nodes: Sequence[str] = ()) -> Tuple[Quantized, List[str]]:
    """The QDQ model of ``candidate`` and the node names kept in float on request."""
    exclude = list(options.exclude_nodes)
    if options.exclude_decomposition:
        exclude += [n for n in decomposition_nodes if n not in exclude]
    return quantize_static_int8(candidate, calibration, options.settings(exclude)), exclude


def quantize_and_verify(reference: RunnableReference, candidate: onnx.ModelProto, calibration: Samples,
                        evaluation: Samples, *, options: Int8Options = Int8Options(),
                        providers: Sequence[str] = ("cpu",), tolerance: Optional[Tolerance] = None,
                        records: Sequence[SiteRecord] = ()) -> Int8Report:
    """Quantize ``candidate`` on ``calibration``; verify it on ``evaluation`` against the float original.

    Args:
        reference: the float original as ONNX Runtime runs it (built once per conversion).
        candidate: the float model to quantize (the original itself, or its rewrite).
        calibration, evaluation: the two halves of the data; never the same samples.
        options: what to quantize and what to keep in float.
        tolerance: what the INT8 model is judged by. Defaults to ``Tolerance()``.
        records: the rewrite's per-site records, to name the nodes it emitted.

    Raises:
        UnsupportedModel, RunFailed: the quantizer or ONNX Runtime cannot handle the model.
    """
    site_nodes = rewrite_nodes(reference.model, candidate, records)
    decomposition = [n for n, (_, strategy) in site_nodes.items() if strategy == "decompose"]
    quantized, excluded = quantize_model(candidate, calibration, options, decomposition_nodes=decomposition)
    report = verify_against(reference, quantized.model, evaluation, providers, tolerance=tolerance or Tolerance())
    islands = float_islands(quantized.model, reference.sites, {n: s for n, (s, _) in site_nodes.items()}, excluded)
    notes = list(quantized.notes)
    if options.exclude_decomposition:
        notes.append(f"decompose's nodes were kept in float on request ({len(decomposition)} node(s)); "
                     "they are float islands on an integer-only target" if decomposition
                     else "--quantize-exclude-decomposition: no site was decomposed, nothing was kept in float")
    notes.extend(n for n in report.notes if n not in notes)
    log.info("INT8: %s, %d float island(s)", "PASSED" if report.passed else "FAILED", len(islands))
    return Int8Report(quantized.model, report, islands, options.settings().describe(), quantized.calibration_samples,
                      quantized.opset_from, quantized.opset_to, excluded, notes)


def int8_trial(calibration: Samples, options: Int8Options):
    """For ``auto``: the function that turns a trial float model into the INT8 model it is judged by."""
    def prepare(trial: onnx.ModelProto, records: Sequence[SiteRecord], original: onnx.ModelProto) -> onnx.ModelProto:
        site_nodes = rewrite_nodes(original, trial, records)
        decomposition = [n for n, (_, strategy) in site_nodes.items() if strategy == "decompose"]
        quantized, _ = quantize_model(trial, calibration, options, decomposition_nodes=decomposition)
        return quantized.model
    return prepare


@dataclass
class QuantizedVerification:
    """``verify --quantize int8``: the float candidate and its INT8 model, both against the float
    reference on the same held-out half. Truthy when both pass."""

    float: DriftReport
    int8: Int8Report

    @property
    def passed(self) -> bool:
        return self.float.passed and self.int8.passed

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self, int8_output: Optional[str] = None) -> Dict[str, object]:
        return dict(self.float.to_dict(), passed=self.passed, float_passed=self.float.passed,
                    int8=self.int8.to_dict(int8_output))


def added_nodes(reference: onnx.ModelProto, candidate: onnx.ModelProto) -> List[str]:
    """Nodes of ``candidate`` (main graph) that ``reference`` does not have: what a conversion emitted."""
    before = {n.name for n in reference.graph.node}
    return [n.name for n in candidate.graph.node if n.name not in before]


def verify_quantized(reference: onnx.ModelProto, candidate: onnx.ModelProto, samples: Samples, *,
                     providers: Sequence[str] = ("cpu",), tolerance: Optional[Tolerance] = None,
                     options: Int8Options = Int8Options(), reference_mode: str = "native",
                     atol: PerOutput = None, rtol: PerOutput = None,
                     error_stat: str = "elemwise") -> QuantizedVerification:
    """Quantize an already converted ``candidate`` on the first half of ``samples``; verify it and the
    float candidate on the second half against ``reference``.

    With ``options.exclude_decomposition`` the nodes the conversion emitted (those of the
    candidate that the reference lacks) are kept in float: without the conversion's records,
    that is what marks them.

    Args:
        tolerance: what the INT8 model is judged by (and the float one, when given). Defaults to
            ``Tolerance()`` for INT8 and the element-type atol/rtol for float.

    Raises:
        BadInput: fewer than 2 samples.
    """
    runnable = RunnableReference(reference, find_lrn(reference), reference_mode)
    calibration, evaluation = split_halves(samples)
    float_report = verify_against(runnable, candidate, evaluation, providers, atol=atol, rtol=rtol,
                                  tolerance=tolerance, error_stat=error_stat)
    emitted = added_nodes(reference, candidate)
    exclude = list(options.exclude_nodes) + (emitted if options.exclude_decomposition else [])
    quantized = quantize_static_int8(candidate, calibration, options.settings(exclude))
    report = verify_against(runnable, quantized.model, evaluation, providers, tolerance=tolerance or Tolerance())
    carriers = [(site.name, "", site.output) for site in runnable.sites if not site.graph_path]
    attributed = {n: site for n, (site, _) in _emitted_for(reference, candidate, carriers).items()}
    islands = float_islands(quantized.model, find_lrn(candidate), attributed, exclude)
    notes = list(quantized.notes)
    if options.exclude_decomposition:
        notes.append(f"the {len(emitted)} node(s) of the candidate that the reference lacks (what the conversion "
                     "emitted) were kept in float on request" if emitted
                     else "--quantize-exclude-decomposition: the candidate has no node the reference lacks")
    notes.append(f"INT8 calibrated on the first {calibration.count} samples; both models verified on the other "
                 f"{evaluation.count}")
    int8 = Int8Report(quantized.model, report, islands, options.settings().describe(), quantized.calibration_samples,
                      quantized.opset_from, quantized.opset_to, exclude, notes)
    return QuantizedVerification(float_report, int8)
