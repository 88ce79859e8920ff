"""Model I/O: ONNX and Caffe files in, atomic ONNX files out.

Loading refuses, with one line naming the file, what is not a model: missing, empty,
truncated or random bytes, external data whose location leaves the model's folder (a
crafted model must not read arbitrary files), and a model that is not valid ONNX
(``validation``). Saving goes through lrnconv's one write path (``lrnconv.base.files``):
atomic, never onto an input of the command; models over 2 GB are written with external data.
"""
from __future__ import annotations

import os
from typing import Optional

import onnx
from google.protobuf.message import DecodeError, EncodeError
from onnx import external_data_helper

from ..base.errors import BadInput
from ..base.files import OutputGuard, Writer, write_files
from .caffe import load_caffe
from .validation import check_external_locations, validate

CAFFE_SUFFIXES = (".prototxt", ".pbtxt")


def _load_onnx(path: str, check: bool) -> onnx.ModelProto:
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
    check_external_locations(model, path)
    try:
        external_data_helper.load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: cannot read external data ({exc})") from None
    validate(model, path, check=check)
    return model


def load(path: str, weights: Optional[str] = None, *, seed: int = 0, check: bool = True) -> onnx.ModelProto:
    """Load an ONNX model, or a Caffe prototxt (with optional caffemodel) imported to ONNX.

    Args:
        path: ``.onnx`` file, or Caffe ``.prototxt``.
        weights: Caffe ``.caffemodel`` for a prototxt. Defaults to None (seeded random
            weights, and a note in the model's metadata).
        seed: seed of the random Caffe weights.
        check: run the ONNX checker's full check on an ONNX file (``validation.validate``).

    Raises:
        BadInput: the file is missing, empty, truncated, not a model, or not valid ONNX.
    """
    path = os.fspath(path)
    if path.lower().endswith(CAFFE_SUFFIXES):
        model, _notes = load_caffe(path, weights, seed=seed)
        return model
    if weights is not None:
        raise BadInput(f"{weights}: --weights applies to Caffe prototxt models only, not to {path}")
    return _load_onnx(path, check)


def model_writer(model: onnx.ModelProto) -> Writer:
    """A writer of the model for ``lrnconv.base.files.write_files`` (external data beside it when
    its serialization would pass protobuf's 2 GB limit)."""
    def write(temporary: str) -> None:
        try:
            payload = model.SerializeToString()  # sizing it first would serialize twice
        except (EncodeError, ValueError):  # protobuf refuses messages over 2 GB
            payload = None
        if payload is None:
            onnx.save_model(model, temporary, save_as_external_data=True, all_tensors_to_one_file=True,
                            location=os.path.basename(temporary) + ".data", size_threshold=1024)
        else:
            with open(temporary, "wb") as f:
                f.write(payload)
            del payload
    return write


def save(model: onnx.ModelProto, path: str, *, guard: Optional[OutputGuard] = None) -> None:
    """Write a model atomically through lrnconv's one write path (``lrnconv.base.files``).

    Models whose serialization would pass protobuf's 2 GB limit are written with their
    weights in ``<name>.data`` beside the model; as with ``onnx.save_model``, the
    in-memory model's tensors then point into that file instead of holding the data.

    Args:
        guard: the command's inputs, which the model may not replace. Defaults to None.

    Raises:
        OutputError: the target is refused or cannot be written.
    """
    write_files([(os.fspath(path), model_writer(model))], guard)
