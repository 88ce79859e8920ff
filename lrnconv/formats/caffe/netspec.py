"""Building Caffe nets from Python and writing them as ``.prototxt`` / ``.caffemodel``.

Example::

    net = CaffeNetBuilder("tiny")
    net.input("data", (1, 3, 32, 32))
    net.layer("conv1", "Convolution", "data", "conv1",
              convolution_param={"num_output": 8, "kernel_size": 3},
              blobs=[weight, bias])
    net.layer("norm1", "LRN", "conv1", "norm1",
              lrn_param={"local_size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2})
    write_prototxt(net.net, "deploy.prototxt")
    write_caffemodel(net.net, "weights.caffemodel")

``CaffeNetBuilder(v1=True)`` writes the legacy V1 ``layers`` format instead (upper-case type
enum, blobs with the 4-D ``num``/``channels``/``height``/``width`` dims).
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence, Union

import numpy as np
from google.protobuf import text_format

from ...base.files import write_bytes
from .schema import V1_TYPE_NAMES, BlobProto, NetParameter, RawBlobProto, V1LayerParameter

__all__ = ["CaffeNetBuilder", "blob_from_array", "fill_message", "write_prototxt",
           "write_caffemodel"]

_V1_TYPES = {name: enum for enum, name in V1_TYPE_NAMES.items()}


def blob_from_array(array, *, legacy: bool = False) -> BlobProto:
    """A ``BlobProto`` holding ``array`` as float32.

    Args:
        array: the values (any shape; converted to float32).
        legacy: write the deprecated 4-D ``num``/``channels``/``height``/``width`` dims
            (the shape left-padded with ones, as V1 Caffe wrote them) instead of
            ``shape``. Defaults to False.

    The data is packed through :data:`~lrnconv.formats.caffe.schema.RawBlobProto` (bytes on the
    wire, no per-element conversion), so a blob of tens of millions of values takes a
    fraction of a second.
    """
    values = np.ascontiguousarray(np.asarray(array, dtype=np.float32))
    raw = RawBlobProto(data=values.astype("<f4", copy=False).tobytes())
    if legacy:
        if values.ndim > 4:
            raise ValueError(f"a legacy 4-D blob cannot hold shape {values.shape}")
        dims = (1,) * (4 - values.ndim) + values.shape
        raw.num, raw.channels, raw.height, raw.width = (int(d) for d in dims)
    else:
        raw.shape.dim.extend(int(d) for d in values.shape)
    return BlobProto.FromString(raw.SerializeToString())


def _is_repeated(field) -> bool:
    # protobuf >= 6 has ``is_repeated``; older releases only ``label``.
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED


def fill_message(message, values: Mapping):
    """Set the fields of ``message`` from a (nested) dict.

    Enums take their names (``"WITHIN_CHANNEL"``); a repeated field takes a list or a
    single value; a ``BlobShape`` takes a list of dims.

    Raises:
        KeyError: a field the message does not declare (the valid names are listed).
    """
    descriptor = message.DESCRIPTOR
    for key, value in values.items():
        field = descriptor.fields_by_name.get(key)
        if field is None:
            raise KeyError(f"{descriptor.full_name} has no field {key!r}; fields: "
                           f"{', '.join(sorted(descriptor.fields_by_name))}")
        repeated = _is_repeated(field)
        items = list(value) if repeated and isinstance(value, (list, tuple)) else [value]
        if field.message_type is not None:
            for item in items:
                if field.message_type.name == "BlobShape" and not isinstance(item, Mapping):
                    item = {"dim": list(item)}
                target = getattr(message, key).add() if repeated else getattr(message, key)
                if hasattr(item, "DESCRIPTOR"):
                    target.CopyFrom(item)
                else:
                    fill_message(target, item)
            continue
        if field.enum_type is not None:
            items = [field.enum_type.values_by_name[v].number if isinstance(v, str) else v
                     for v in items]
        if repeated:
            getattr(message, key).extend(items)
        else:
            setattr(message, key, items[0])
    return message


class CaffeNetBuilder:
    """Assembles a Caffe ``NetParameter`` layer by layer.

    Args:
        name: the net's name.
        v1: write the legacy V1 ``layers`` format. Defaults to False.
    """

    def __init__(self, name: str = "net", *, v1: bool = False):
        self.net = NetParameter(name=name)
        self.v1 = v1

    def input(self, name: str, shape: Sequence[int], *, style: str = "input_shape"):
        """Declare a net input.

        Args:
            style: ``"input_shape"`` (net-level ``input`` + ``input_shape``),
                ``"input_dim"`` (net-level, 4 dims) or ``"layer"`` (an ``Input`` layer;
                not in V1). Defaults to ``"input_shape"``.
        """
        shape = [int(d) for d in shape]
        if style == "layer":
            return self.layer(name, "Input", [], [name], input_param={"shape": [shape]})
        self.net.input.append(name)
        if style == "input_dim":
            if len(shape) != 4:
                raise ValueError(f"input_dim needs 4 dims, got {shape}")
            self.net.input_dim.extend(shape)
        elif style == "input_shape":
            self.net.input_shape.add().dim.extend(shape)
        else:
            raise ValueError(f"unknown input style {style!r}; use input_shape, input_dim "
                             f"or layer")
        return None

    def layer(self, name: str, type: str, bottom: Union[str, Iterable[str]] = (),
              top: Union[str, Iterable[str]] = (), *, blobs: Sequence = (),
              **params: Mapping):
        """Append a layer; ``params`` are ``<kind>_param`` dicts (see :func:`fill_message`),
        ``blobs`` numpy arrays (or ``BlobProto`` messages). Returns the layer message."""
        bottom = [bottom] if isinstance(bottom, str) else list(bottom)
        top = [top] if isinstance(top, str) else list(top)
        if self.v1:
            layer = self.net.layers.add(name=name)
            if type not in _V1_TYPES:
                raise ValueError(f"layer type {type!r} has no V1 form")
            layer.type = V1LayerParameter.DESCRIPTOR.fields_by_name["type"] \
                .enum_type.values_by_name[_V1_TYPES[type]].number
        else:
            layer = self.net.layer.add(name=name, type=type)
        layer.bottom.extend(bottom)
        layer.top.extend(top)
        for blob in blobs:
            if isinstance(blob, BlobProto):
                layer.blobs.add().CopyFrom(blob)
            else:
                layer.blobs.add().CopyFrom(blob_from_array(blob, legacy=self.v1))
        fill_message(layer, params)
        return layer


def write_prototxt(net: NetParameter, path) -> None:
    """Write the net definition as text format, without the parameter blobs (atomic)."""
    definition = NetParameter()
    definition.CopyFrom(net)
    for layer in list(definition.layer) + list(definition.layers):
        layer.ClearField("blobs")
    write_bytes(path, text_format.MessageToString(definition).encode("utf-8"))


def write_caffemodel(net: NetParameter, path) -> None:
    """Write the net with its blobs as a binary ``.caffemodel`` (atomic)."""
    write_bytes(path, net.SerializeToString())
