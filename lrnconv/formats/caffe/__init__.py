"""Caffe import: ``deploy.prototxt`` (+ ``.caffemodel``) to an ONNX model, exactly.

Public API:

- :func:`load_caffe` ``(prototxt, weights=None, *, seed=0) -> (onnx.ModelProto, notes)``
- :func:`read_prototxt` ``(path) -> NetParameter``
- :class:`CaffeNetBuilder`, :func:`blob_from_array`: build a ``NetParameter`` in Python
- :func:`write_prototxt`, :func:`write_caffemodel`
- :mod:`lrnconv.formats.caffe.schema`: the Caffe message classes (``NetParameter`` ...)
"""
from .importer import load_caffe
from .layers import supported_types
from .netspec import CaffeNetBuilder, blob_from_array, write_caffemodel, write_prototxt
from .reader import read_prototxt
from .schema import BlobProto, BlobShape, LayerParameter, NetParameter, V1LayerParameter

__all__ = [
    "load_caffe", "read_prototxt", "write_prototxt", "write_caffemodel", "CaffeNetBuilder",
    "blob_from_array", "supported_types", "NetParameter", "LayerParameter",
    "V1LayerParameter", "BlobProto", "BlobShape",
]
