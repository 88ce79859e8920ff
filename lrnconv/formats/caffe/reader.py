"""Reading a Caffe net definition: text format, V1 upgrade, TEST-phase filtering, inputs.

The result is what Caffe's ``Net`` constructor would build in the TEST phase: a list of
current-format ``LayerParameter`` messages (V1 ``layers`` upgraded by Caffe's type
table, layers whose ``include``/``exclude`` rules do not select the TEST phase
dropped), and the net-level inputs (``input`` with ``input_shape`` or ``input_dim``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from google.protobuf import text_format

from ...base.errors import BadInput
from .schema import V1_TYPE_NAMES, LayerParameter, NetParameter, Phase, V1LayerParameter

__all__ = ["read_prototxt", "NetDefinition", "net_definition"]

# V1 fields that carry over to the current LayerParameter under the same name.
_V1_PARAM_FIELDS = [f.name for f in V1LayerParameter.DESCRIPTOR.fields
                    if f.name.endswith("_param")]


# Messages whose fields the converters read: a field skipped there may be a typo that
# silently leaves a default in place, so it is reported.
_LAYER_SETTINGS = {f"caffe.{name}" for name in (
    "BatchNormParameter", "BiasParameter", "ConcatParameter", "ConvolutionParameter",
    "DropoutParameter", "EltwiseParameter", "FlattenParameter", "InnerProductParameter",
    "InputParameter", "LRNParameter", "PoolingParameter", "PowerParameter",
    "PReLUParameter", "ReLUParameter", "ReshapeParameter", "ScaleParameter",
    "SigmoidParameter", "SoftmaxParameter", "SliceParameter", "TanHParameter",
    "BlobShape")}


def _parse_text(text: str, net: NetParameter) -> List[Tuple[str, str, int]]:
    """Parse leniently; return the skipped ``(message type, field, line)``.

    The recording hooks into protobuf's text parser class (stable for years, but not
    public API); without it the parse still skips unknown fields, unrecorded.
    """
    skipped: List[Tuple[str, str, int]] = []
    parser_class = getattr(text_format, "_Parser", None)
    if parser_class is None or not hasattr(parser_class, "_SkipFieldContents"):
        text_format.Parse(text, net, allow_unknown_field=True)
        return skipped

    class _Recording(parser_class):
        def _SkipFieldContents(self, tokenizer, field_name, message_type):
            skipped.append((message_type, field_name, getattr(tokenizer, "_line", -1) + 1))
            return super()._SkipFieldContents(tokenizer, field_name, message_type)

    _Recording(allow_unknown_field=True).ParseLines(text.split("\n"), net)
    return skipped


def read_prototxt(path: str, notes: Optional[List[str]] = None) -> NetParameter:
    """Parse a ``.prototxt`` into a ``NetParameter``.

    Fields that this importer does not declare are skipped: at the layer level
    (``transform_param``, ``data_param``, ``loss_param`` ...) they cannot change what
    the converted layers compute; inside a converted layer's settings (``lrn_param``
    ...) they may be a fork's extension or a typo, so each is reported in ``notes``.

    Args:
        path: the prototxt.
        notes: a list that receives the report of skipped layer settings. Defaults to
            None (not reported).

    Raises:
        BadInput: the file cannot be read or is not valid protobuf text format.
    """
    path = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read the prototxt ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if b"\0" in data[:4096]:
            raise BadInput(f"{path}: not a text prototxt (binary data at byte {exc.start}; "
                           f"is it a .caffemodel?)") from None
        text = data.decode("latin-1")   # a comment in a legacy 8-bit encoding
    net = NetParameter()
    try:
        skipped = _parse_text(text, net)
    except text_format.ParseError as exc:
        detail = " ".join(str(exc).split())
        raise BadInput(f"{path}: malformed prototxt: {detail}") from None
    settings = [f"{message}.{field} (line {line})" for message, field, line in skipped
                if message in _LAYER_SETTINGS]
    if settings and notes is not None:
        notes.append(f"{path}: skipped layer settings the importer does not know (a fork's "
                     f"extension, or a misspelling that leaves the default in place): "
                     f"{', '.join(settings)}")
    return net


@dataclass
class NetDefinition:
    """A net as Caffe instantiates it in the TEST phase."""

    name: str
    inputs: List[Tuple[str, Tuple[int, ...]]]   # net-level inputs (input + shapes)
    layers: List[LayerParameter]                # current format, TEST phase only
    legacy_v1: bool


def _meets(rule, level: int, stages) -> bool:
    """Caffe's ``StateMeetsRule`` for the TEST phase."""
    if rule.HasField("phase") and rule.phase != Phase.TEST:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(stage not in stages for stage in rule.stage):
        return False
    return not any(stage in stages for stage in rule.not_stage)


def _included(layer, level: int, stages) -> bool:
    if len(layer.include):
        return any(_meets(rule, level, stages) for rule in layer.include)
    return not any(_meets(rule, level, stages) for rule in layer.exclude)


def _upgrade_v1(path: str, index: int, v1) -> LayerParameter:
    type_enum = V1LayerParameter.DESCRIPTOR.fields_by_name["type"].enum_type
    type_name = type_enum.values_by_number[v1.type].name
    if v1.type == 0 and not v1.name:
        raise BadInput(f"{path}: layers entry {index} has no name and no type; V0-format "
                       f"nets are not supported (upgrade with Caffe's upgrade_net_proto_text)")
    layer = LayerParameter(name=v1.name, type=V1_TYPE_NAMES.get(type_name, type_name))
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    layer.blobs.extend(v1.blobs)
    for name in _V1_PARAM_FIELDS:
        if v1.HasField(name):
            getattr(layer, name).CopyFrom(getattr(v1, name))
    return layer


def net_definition(net: NetParameter, path: str) -> NetDefinition:
    """Upgrade, filter and collect the inputs of a parsed net (see the module docstring).

    Raises:
        BadInput: both ``layer`` and ``layers`` are used, or the net-level input shapes
            are missing or inconsistent.
    """
    if len(net.layer) and len(net.layers):
        raise BadInput(f"{path}: uses both 'layer' (current) and 'layers' (V1) fields; "
                       f"a net must use one format")
    legacy = bool(len(net.layers))
    layers = ([_upgrade_v1(path, i, v1) for i, v1 in enumerate(net.layers)]
              if legacy else list(net.layer))
    level, stages = int(net.state.level), set(net.state.stage)
    layers = [layer for layer in layers if _included(layer, level, stages)]

    inputs: List[Tuple[str, Tuple[int, ...]]] = []
    names = list(net.input)
    if len(net.input_shape):
        if len(net.input_shape) != len(names):
            raise BadInput(f"{path}: {len(names)} net inputs but {len(net.input_shape)} "
                           f"input_shape entries")
        shapes = [tuple(int(d) for d in s.dim) for s in net.input_shape]
    elif len(net.input_dim):
        if len(net.input_dim) != 4 * len(names):
            raise BadInput(f"{path}: {len(names)} net inputs need {4 * len(names)} input_dim "
                           f"values (num, channels, height, width each), found "
                           f"{len(net.input_dim)}")
        dims = [int(d) for d in net.input_dim]
        shapes = [tuple(dims[4 * i:4 * i + 4]) for i in range(len(names))]
    elif names:
        raise BadInput(f"{path}: net input '{names[0]}' has no shape (input_shape or "
                       f"input_dim)")
    else:
        shapes = []
    inputs = list(zip(names, shapes))
    name = net.name or os.path.splitext(os.path.basename(path))[0]
    return NetDefinition(name=name, inputs=inputs, layers=layers, legacy_v1=legacy)
