"""``load_caffe``: a Caffe ``deploy.prototxt`` (+ ``.caffemodel``) as an ONNX model.

The layers are converted in file order, as Caffe runs them, through the converter
registry of :mod:`lrnconv.formats.caffe.layers`. The model's outputs are the blobs that no
layer consumes (Caffe's net outputs), its inputs the net-level inputs and ``Input``
layers. Every LRN layer is recorded in the model's metadata (``lrnconv.graph.metadata``)
with family ``caffe-across`` (``bias`` = Caffe's ``k``) or ``caffe-within`` (``bias`` = 1,
the shift Caffe uses). The notes that ``load_caffe`` returns are stored there too.
"""
from __future__ import annotations

import logging
import os
from typing import List, Tuple

import onnx

from ...base.errors import BadInput, UnsupportedModel
from ...base.text import shape_text
from ...graph.metadata import declare_sites, record_notes
from .caffemodel import CaffemodelWeights
from .graph import IR_VERSION, OPSET, GraphBuilder, LayerContext, value_info
from .layers import CONVERTERS, supported_types
from .random_weights import RandomWeights
from .reader import NetDefinition, net_definition, read_prototxt

__all__ = ["load_caffe"]

logger = logging.getLogger(__name__)

BATCH_PARAM = "N"


def load_caffe(prototxt_path, weights_path=None, *,
               seed: int = 0) -> Tuple[onnx.ModelProto, List[str]]:
    """Import a Caffe net as an ONNX (opset 13) model that computes what Caffe computes.

    Args:
        prototxt_path: the net definition (``deploy.prototxt``; current ``layer`` or
            legacy V1 ``layers`` format).
        weights_path: the trained ``.caffemodel``. Defaults to None: seeded random
            weights of the right shapes (He-normal), and a note says so.
        seed: the random weights' seed (ignored with ``weights_path``). Defaults to 0.

    Returns:
        ``(model, notes)``: the ONNX model and the things a user should know about the
        import (random weights, a batch size fixed by the net, ignored fields ...).

    Raises:
        BadInput: a file cannot be read, the prototxt is malformed, the caffemodel is
            truncated or its blobs do not fit the prototxt (layer and shapes named).
        UnsupportedModel: a layer type (or setting) that has no exact ONNX conversion.
    """
    prototxt = os.fspath(prototxt_path)
    notes: List[str] = []
    definition = net_definition(read_prototxt(prototxt, notes), prototxt)
    if weights_path is None:
        weights = RandomWeights(seed)
        notes.insert(0, f"no --weights given: seeded random weights (seed {seed}, He-normal), "
                     f"not the trained model")
    else:
        weights = CaffemodelWeights(os.fspath(weights_path))
    try:
        builder = GraphBuilder(prototxt=prototxt,
                               weights_path=None if weights_path is None
                               else os.fspath(weights_path),
                               weights=weights, reserved=_blob_names(definition))
        for name, shape in definition.inputs:
            if any(d <= 0 for d in shape):
                raise BadInput(f"{prototxt}: net input '{name}' has shape {shape_text(shape)}; "
                               f"dims must be positive")
            builder.add_input(name, shape)
        for layer in definition.layers:
            _convert(builder, layer)
        if isinstance(weights, CaffemodelWeights):
            unused = [name for name, rec in weights.layers.items()
                      if rec.blobs and name not in weights.used]
            if unused:
                notes.append(f"{weights.path}: parameters of layers not in the prototxt were "
                             f"ignored, as Caffe ignores them: {', '.join(unused)}")
        model = _finish(builder, definition)
    finally:
        if isinstance(weights, CaffemodelWeights):
            weights.close()
    notes.extend(builder.notes)
    if notes:
        record_notes(model, notes)
    logger.info("imported %s: %d layers, %d nodes, %d LRN sites", prototxt,
                len(definition.layers), len(model.graph.node), len(builder.sites))
    return model, notes


def _blob_names(definition: NetDefinition) -> set:
    names = {name for name, _ in definition.inputs}
    for layer in definition.layers:
        names.update(layer.bottom)
        names.update(layer.top)
    return names


def _check_count(builder: GraphBuilder, layer, what: str, count: int, limits) -> None:
    low, high = limits
    if count < low or (high is not None and count > high):
        expected = str(low) if low == high else (f"at least {low}" if high is None
                                                 else f"{low} to {high}")
        raise BadInput(f"{builder.prototxt}: layer '{layer.name}' ({layer.type}) has {count} "
                       f"{what}; it takes {expected}")


def _convert(builder: GraphBuilder, layer) -> None:
    converter = CONVERTERS.get(layer.type)
    if converter is None:
        raise UnsupportedModel(
            f"{builder.prototxt}: layer '{layer.name}' has type '{layer.type}', which the "
            f"Caffe importer does not support (supported: {', '.join(supported_types())})")
    _check_count(builder, layer, "bottoms", len(layer.bottom), converter.bottoms)
    _check_count(builder, layer, "tops", len(layer.top), converter.tops)
    for blob in layer.bottom:
        if blob not in builder.blob_tensor:
            raise BadInput(f"{builder.prototxt}: layer '{layer.name}' ({layer.type}) reads "
                           f"blob '{blob}', which no earlier layer or net input produces")
    ctx = LayerContext(builder, layer)
    outputs = converter.fn(ctx)
    for blob in layer.bottom:
        builder.available.pop(blob, None)
    for blob, (tensor, shape) in zip(layer.top, outputs):
        if any(d <= 0 for d in shape):
            raise BadInput(f"{ctx.where}: top '{blob}' would have the empty shape "
                           f"{shape_text(shape)}")
        builder.blob_tensor[blob] = tensor
        builder.shapes[tensor] = tuple(shape)
        builder.available.pop(blob, None)
        builder.available[blob] = tensor
        if ctx.keeps_batch and len(shape) >= 1:
            builder.batch_tensors.add(tensor)
    logger.debug("layer %s (%s) -> %s", layer.name, layer.type,
                 [tensor for tensor, _ in outputs])


def _finish(builder: GraphBuilder, definition: NetDefinition) -> onnx.ModelProto:
    model, graph = builder.model, builder.graph
    batches = {shape[0] for tensor, shape in builder.inputs if tensor in builder.batch_tensors}
    if len(batches) > 1:
        builder.pinned_by = builder.pinned_by or "net inputs declare different batch sizes"
    symbolic = builder.pinned_by is None
    if not symbolic:
        builder.notes.append(f"batch size fixed to the prototxt's value: {builder.pinned_by}")

    def dims(tensor: str):
        shape = builder.shapes[tensor]
        if not symbolic:
            return shape
        if tensor in builder.batch_tensors:
            return (BATCH_PARAM,) + tuple(shape[1:])
        return (None,) * len(shape)     # depends on the batch in a way not tracked: rank only

    input_names = set()
    for tensor, shape in builder.inputs:
        input_names.add(tensor)
        graph.input.append(value_info(tensor, dims(tensor) if symbolic else shape))
    outputs = []
    for blob, tensor in builder.available.items():
        if tensor in input_names:
            builder.notes.append(f"net input '{blob}' is consumed by no layer; it is not "
                                 f"made a graph output")
            continue
        if tensor not in outputs:
            outputs.append(tensor)
    if not outputs:
        raise BadInput(f"{builder.prototxt}: the net has no output (every blob is consumed)")
    for tensor in outputs:
        graph.output.append(value_info(tensor, dims(tensor)))

    graph.name = definition.name
    model.ir_version = IR_VERSION
    model.opset_import.add(domain="", version=OPSET)
    model.producer_name = "lrnconv.caffe"
    model.producer_version = "1"
    source = os.path.basename(builder.prototxt)
    if builder.weights_path:
        source += f" + {os.path.basename(builder.weights_path)}"
    model.doc_string = f"Imported from Caffe {source}" + (
        " (V1 format)" if definition.legacy_v1 else "")
    declare_sites(model, builder.sites)
    return model
