"""Model I/O: ONNX and Caffe files in, atomic ONNX files out.

Loading refuses, with one line naming the file, what is not a model: missing, empty,
truncated or random bytes, and external data whose location leaves the model's folder
(a crafted model must not read arbitrary files). Saving writes to a temporary file in
the destination folder and renames it over the target, so a crash or a full disk never
leaves a half-written model; models over 2 GB are written with external data.
"""
from __future__ import annotations

import os
from typing import Optional

import onnx
from google.protobuf.message import DecodeError, EncodeError
from onnx import external_data_helper

from ..base.errors import BadInput
from ..base.files import staged
from .caffe import load_caffe

CAFFE_SUFFIXES = (".prototxt", ".pbtxt")


def _check_external_locations(model: onnx.ModelProto, path: str) -> None:
    base = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    for tensor in external_data_helper._get_all_tensors(model):
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


def _load_onnx(path: str) -> onnx.ModelProto:
    if not os.path.exists(path):
        raise BadInput(f"{path}: no such file")
    if os.path.isdir(path):
        raise BadInput(f"{path}: is a folder, not a model file")
    if os.path.getsize(path) == 0:
        raise BadInput(f"{path}: empty file")
    try:
        model = onnx.load_model(path, load_external_data=False)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise BadInput(f"{path}: not a valid ONNX model (protobuf parse failed: {exc})") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror or exc})") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.opset_import:
        raise BadInput(f"{path}: not an ONNX model (no IR version, graph or opset import)")
    _check_external_locations(model, path)
    try:
        external_data_helper.load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: cannot read external data ({exc})") from None
    return model


def load(path: str, weights: Optional[str] = None, *, seed: int = 0) -> onnx.ModelProto:
    """Load an ONNX model, or a Caffe prototxt (with optional caffemodel) imported to ONNX.

    Args:
        path: ``.onnx`` file, or Caffe ``.prototxt``.
        weights: Caffe ``.caffemodel`` for a prototxt. Defaults to None (seeded random
            weights, and a note in the model's metadata).
        seed: seed of the random Caffe weights.

    Raises:
        BadInput: the file is missing, empty, truncated or not a model.
    """
    path = os.fspath(path)
    if path.lower().endswith(CAFFE_SUFFIXES):
        model, _notes = load_caffe(path, weights, seed=seed)
        return model
    if weights is not None:
        raise BadInput(f"{weights}: --weights applies to Caffe prototxt models only, not to {path}")
    return _load_onnx(path)


def save(model: onnx.ModelProto, path: str) -> None:
    """Write a model atomically (temporary file in the same folder, then rename).

    Models whose serialization would pass protobuf's 2 GB limit are written with their
    weights in ``<name>.data`` beside the model; as with ``onnx.save_model``, the
    in-memory model's tensors then point into that file instead of holding the data.

    Raises:
        OutputError: the folder does not exist or is not writable.
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    with staged(path) as temporary:
        try:
            payload = model.SerializeToString()  # sizing it first would serialize twice
        except (EncodeError, ValueError):  # protobuf refuses messages over 2 GB
            payload = None
        if payload is None:
            onnx.save_model(model, temporary, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=name + ".data", size_threshold=1024)
        else:
            with open(temporary, "wb") as f:
                f.write(payload)
            del payload
