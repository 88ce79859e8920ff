"""Caffe import: ``deploy.prototxt`` (+ ``.caffemodel``) to an ONNX model, exactly.

Public API:

- :func:`load_caffe` ``(prototxt, weights=None, *, seed=0) -> (onnx.ModelProto, notes)``
- :func:`read_prototxt` ``(path) -> NetParameter``
- :class:`NetBuilder`, :func:`blob_from_array`: build a ``NetParameter`` in Python
- :func:`write_prototxt`, :func:`write_caffemodel`
- :mod:`lrnconv.caffe.schema`: the Caffe message classes (``NetParameter`` ...)
- :data:`SITES_KEY`, :data:`NOTES_KEY`: the ``metadata_props`` keys of the recorded LRN
  sites and of the import notes
"""
from .importer import NOTES_KEY, SITES_KEY, load_caffe
from .layers import supported_types
from .netspec import NetBuilder, blob_from_array, write_caffemodel, write_prototxt
from .reader import read_prototxt
from .schema import BlobProto, BlobShape, LayerParameter, NetParameter, V1LayerParameter

__all__ = [
    "load_caffe", "read_prototxt", "write_prototxt", "write_caffemodel", "NetBuilder",
    "blob_from_array", "supported_types", "SITES_KEY", "NOTES_KEY", "NetParameter", "LayerParameter",
    "V1LayerParameter", "BlobProto", "BlobShape",
]
