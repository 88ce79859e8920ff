"""ONNX Runtime's static INT8 quantizer, run the way its documentation recommends.

The one place that calls ``onnxruntime.quantization``:

1. the model's default-domain opset is raised to 13 when it is lower (per-channel
   ``QuantizeLinear``/``DequantizeLinear`` need their ``axis`` attribute, added in opset 13),
   with ``onnx.version_converter``, and a note says so;
2. ``quant_pre_process`` (symbolic shape inference and ONNX Runtime's basic graph
   optimizations) prepares it;
3. ``quantize_static`` inserts QuantizeLinear/DequantizeLinear pairs (QDQ format) with
   per-channel symmetric int8 weights and int8 activations (symmetric by default, as
   TensorRT and most integer accelerators expect), ranges calibrated by MinMax on the
   calibration samples, fed through a ``CalibrationDataReader`` chunk by chunk in runs the
   model accepts. The MinMax calibrator adds a ReduceMin/ReduceMax pair per tensor and keeps
   only those per chunk (a few numbers per tensor), so memory barely grows with the number of
   samples. (``CalibMaxIntermediateOutputs`` is deliberately not used: in ONNX Runtime 1.32 it
   drops the ranges of the chunks collected so far instead of folding them in, so the ranges
   would come from the last few chunks only.)
4. on a CPU whose int8 dot products saturate (x86 without VNNI, ``lrnconv.runtime.cpu``)
   the weights are quantized to 7 bits (``reduce_range``, as ONNX Runtime's documentation
   advises for such machines), unless the settings say otherwise, and a note says so:
   otherwise the drift measured here would be the kernel's clipping, not the quantization.

The quantizer's own working files live in a temporary folder that is removed when it is
done; the QDQ model comes back as a ``ModelProto`` and is written, if at all, through
lrnconv's one write path by the caller. ``quantized_op_types`` says which op types the
quantizer puts between Q/DQ pairs; everything else stays float (ONNX Runtime has no
quantized LRN, ``Sqrt``, ``Div``, ``Pow``, ``LpNormalization`` ...).
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import FrozenSet, Iterator, List, Optional, Sequence

import onnx

from ..base.errors import RunFailed, UnsupportedModel
from .cpu import int8_dot_saturates
from .inputs import Samples, input_specs, rows_per_run

log = logging.getLogger(__name__)

MIN_QDQ_OPSET = 13
"""Per-channel Q/DQ (the ``axis`` attribute) needs opset 13."""

SATURATION_NOTE = ("weights quantized to 7 bits (ONNX Runtime's reduce_range): this CPU is x86 without VNNI, whose "
                   "int8 dot products saturate with 8-bit weights and would make the measured drift the kernel's; "
                   "an integer target with 8-bit weights may drift a little less")


@dataclass(frozen=True)
class QuantizerSettings:
    """How ``quantize_static`` is called (the defaults are what lrnconv uses).

    Attributes:
        per_channel: per-output-channel weight scales.
        symmetric_activations: symmetric int8 activations (zero point 0); False gives
            asymmetric int8 activations.
        exclude: node names the quantizer leaves in float.
        reduce_range: 7-bit weights; None: only where this CPU's int8 dot products saturate.
    """

    per_channel: bool = True
    symmetric_activations: bool = True
    exclude: Sequence[str] = ()
    reduce_range: Optional[bool] = None

    @property
    def reduced(self) -> bool:
        """Whether the weights are quantized to 7 bits on this machine."""
        return int8_dot_saturates() if self.reduce_range is None else self.reduce_range

    def describe(self) -> str:
        weights = "7-bit (reduce_range) symmetric int8" if self.reduced else "symmetric int8"
        return (f"QDQ, {'per-channel' if self.per_channel else 'per-tensor'} {weights} weights, "
                f"{'symmetric' if self.symmetric_activations else 'asymmetric'} int8 activations, MinMax ranges")


@dataclass
class Quantized:
    """A QDQ model and what was done to make it."""

    model: onnx.ModelProto
    opset_from: int
    opset_to: int
    calibration_samples: int
    notes: List[str] = field(default_factory=list)


def quantized_op_types() -> FrozenSet[str]:
    """The op types ONNX Runtime's static quantizer quantizes in QDQ format (its default list)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return frozenset(QDQRegistry) | frozenset(QLinearOpsRegistry)


def default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


class _Reader:
    """A ``CalibrationDataReader`` over samples, chunk by chunk (padding of a fixed batch included:
    repeating a sample never moves a MinMax range)."""

    def __init__(self, model: onnx.ModelProto, samples: Samples):
        rows, pad = rows_per_run(input_specs(model), samples.rows_hint)
        self._chunks: Iterator = samples.chunks(rows, pad)

    def get_next(self):
        chunk = next(self._chunks, None)
        return None if chunk is None else dict(chunk.feeds)

    def __iter__(self):
        return self

    def __next__(self):
        feeds = self.get_next()
        if feeds is None:
            raise StopIteration
        return feeds


class _Quiet(logging.Filter):
    """ONNX Runtime's quantizer logs advice on the root logger; lrnconv reports what it did itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "root" or record.levelno >= logging.ERROR


@contextlib.contextmanager
def _quiet_root() -> Iterator[None]:
    quiet = _Quiet()
    root = logging.getLogger()
    handlers = list(root.handlers)
    for handler in handlers:
        handler.addFilter(quiet)
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)
        for handler in handlers:
            handler.removeFilter(quiet)


def _prune_opsets(quantized: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """Drop the opset imports ONNX Runtime's optimizer adds for domains no node uses."""
    used = {n.domain for n in quantized.graph.node} | {f.domain for f in quantized.functions}
    used |= {e.domain for e in original.opset_import}
    used |= {"", "ai.onnx"}
    keep = [e for e in quantized.opset_import if e.domain in used]
    del quantized.opset_import[:]
    quantized.opset_import.extend(keep)


def quantize_static_int8(model: onnx.ModelProto, calibration: Samples,
                         settings: QuantizerSettings = QuantizerSettings()) -> Quantized:
    """The QDQ INT8 model of ``model``, its ranges calibrated on ``calibration``.

    Args:
        model: a float model (not modified).
        calibration: the samples the activation ranges are calibrated on.
        settings: quantizer settings. Defaults to per-channel symmetric int8 throughout.

    Raises:
        UnsupportedModel: the model is in a subgraph form or size the quantizer cannot take,
            or an opset conversion failed (the quantizer's message is kept).
        RunFailed: ONNX Runtime failed while calibrating (role "candidate").
    """
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quant_pre_process,
                                          quantize_static)

    notes: List[str] = []
    opset_from = default_opset(model)
    work = model
    if opset_from < MIN_QDQ_OPSET:
        try:
            work = onnx.version_converter.convert_version(model, MIN_QDQ_OPSET)
        except Exception as exc:  # the converter raises bare RuntimeErrors with its adapter's message
            raise UnsupportedModel(f"cannot raise the opset from {opset_from} to {MIN_QDQ_OPSET} for per-channel "
                                   f"INT8 quantization: {str(exc).strip().splitlines()[0]}") from None
        notes.append(f"opset raised from {opset_from} to {MIN_QDQ_OPSET} for INT8 quantization (per-channel "
                     "QuantizeLinear/DequantizeLinear need opset 13); the float model keeps its opset")
    if model.ByteSize() > 2_000_000_000:
        raise UnsupportedModel("INT8 quantization of models over 2 GB (external data) is not supported yet")
    if settings.reduce_range is None and settings.reduced:
        notes.append(SATURATION_NOTE)
    extra = {"ActivationSymmetric": settings.symmetric_activations, "WeightSymmetric": True}
    with tempfile.TemporaryDirectory(prefix="lrnconv-int8-") as folder, _quiet_root():
        prepared = os.path.join(folder, "prepared.onnx")
        output = os.path.join(folder, "int8.onnx")
        try:
            quant_pre_process(work, prepared)
        except Exception as exc:  # symbolic shape inference and the optimizer raise many types
            raise UnsupportedModel(f"ONNX Runtime's quantization pre-processing failed: "
                                   f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                                   ) from None
        try:
            quantize_static(prepared, output, _Reader(model, calibration), quant_format=QuantFormat.QDQ,
                            per_channel=settings.per_channel, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            nodes_to_exclude=list(settings.exclude), extra_options=extra,
                            reduce_range=settings.reduced)
        except Exception as exc:  # calibration runs sessions inside the quantizer
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RunFailed(f"ONNX Runtime's static quantizer failed: {detail}", "candidate") from None
        quantized = onnx.load(output)
    _prune_opsets(quantized, model)
    log.info("quantized to INT8 (%s) on %d samples", settings.describe(), calibration.count)
    return Quantized(quantized, opset_from, max(opset_from, MIN_QDQ_OPSET), calibration.count, notes)
