"""Validation of an ONNX model before any work: is it a model that ONNX itself accepts?

A model that is not valid ONNX (a cycle, two nodes writing one tensor, a node reading a
tensor nothing produces, an LRN on int32, a tensor whose data is shorter than its shape)
would otherwise be rewritten and written out, and fail later wherever it is deployed. So
every loaded model gets the ONNX checker's full check (with strict shape inference) on its
weightless copy (``lrnconv.graph.skeleton``: no weight is copied), and every tensor's data is
measured against its dims. ``check=False`` (``--no-check``) skips the checker for models that
use operators the installed ``onnx`` does not know (custom domains); the tensor sizes and the
external-data locations are checked regardless.
"""
from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import onnx
from onnx import external_data_helper

from ..base.errors import BadInput
from ..graph.skeleton import weightless_copy

_TYPED_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data")


def all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor a model holds: initializers, sparse initializers (values and indices) and
    node attributes, in the main graph, every subgraph and every function."""
    def sparse(s: onnx.SparseTensorProto):
        yield s.values
        yield s.indices

    def graph_tensors(graph: onnx.GraphProto):
        yield from graph.initializer
        for s in graph.sparse_initializer:
            yield from sparse(s)
        yield from node_tensors(graph.node)

    def node_tensors(nodes):
        for node in nodes:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("sparse_tensor"):
                    yield from sparse(attr.sparse_tensor)
                for s in attr.sparse_tensors:
                    yield from sparse(s)
                if attr.HasField("g"):
                    yield from graph_tensors(attr.g)
                for g in attr.graphs:
                    yield from graph_tensors(g)

    yield from graph_tensors(model.graph)
    for function in model.functions:
        yield from node_tensors(function.node)


def check_external_locations(model: onnx.ModelProto, path: str) -> None:
    """Refuse external data outside the model's folder (a crafted model must not read arbitrary files).

    Raises:
        BadInput: a location is absolute or leaves the folder, or its file is missing.
    """
    base = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for tensor in all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        target = os.path.realpath(os.path.join(base, info.location))
        if os.path.isabs(info.location) or os.path.commonpath([base, target]) != base:
            raise BadInput(f"{path}: external data of tensor '{tensor.name}' points outside the "
                           f"model's folder ('{info.location}'); refusing to read it")
        if not os.path.isfile(target):
            raise BadInput(f"{path}: external data file '{info.location}' of tensor "
                           f"'{tensor.name}' is missing")


def _check_sizes(model: onnx.ModelProto, path: str) -> None:
    """Every tensor's data holds as many elements as its dims say (no copy of any weight)."""
    for tensor in all_tensors(model):
        if external_data_helper.uses_external_data(tensor) or tensor.data_type == onnx.TensorProto.STRING:
            continue
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
        except (KeyError, TypeError, ValueError):
            raise BadInput(f"{path}: tensor '{tensor.name}' has an unknown data type {tensor.data_type}") from None
        if dtype.itemsize == 0 or dtype.name.endswith(("int4", "float4_e2m1fn")):
            continue  # packed sub-byte types: their byte count is not elements * itemsize
        expected = int(np.prod(tensor.dims, dtype=np.int64))
        if tensor.HasField("raw_data"):
            got, unit = len(tensor.raw_data), dtype.itemsize
            if got != expected * unit:
                raise BadInput(f"{path}: tensor '{tensor.name}' has {got} bytes of data; its dims "
                               f"{list(tensor.dims)} of {dtype.name} need {expected * unit}")
            continue
        counts = [len(getattr(tensor, f)) for f in _TYPED_FIELDS if len(getattr(tensor, f))]
        if counts and counts[0] not in (expected, 2 * expected):  # complex types hold two numbers each
            raise BadInput(f"{path}: tensor '{tensor.name}' holds {counts[0]} values; its dims "
                           f"{list(tensor.dims)} need {expected}")


def validate(model: onnx.ModelProto, path: str, *, check: bool = True) -> None:
    """Refuse a model that is not valid ONNX, with one line naming the file and the reason.

    Args:
        check: run the ONNX checker (full check). Defaults to True; ``--no-check`` turns it off.

    Raises:
        BadInput: the checker's first complaint, or a tensor whose data does not fit its dims.
    """
    _check_sizes(model, path)
    if not check:
        return
    try:
        onnx.checker.check_model(weightless_copy(model), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        reason = " ".join(str(exc).split())
        if len(reason) > 400:
            reason = reason[:397] + "..."
        raise BadInput(f"{path}: not a valid ONNX model ({reason}); --no-check skips this check") from None
