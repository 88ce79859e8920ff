"""The LRN families lrnconv knows, as one type used everywhere.

A family says which framework's maths a site follows (``lrnconv.maths.reference`` has
one float64 function per family) and how it appears in an ONNX graph: as an ONNX ``LRN``
node (ONNX, Caffe ACROSS_CHANNELS), or as a chain of primitive ops that only the
importer's metadata (Caffe WITHIN_CHANNEL) or a pattern matcher (PyTorch, TensorFlow
exports) can point at.
"""
from __future__ import annotations

from typing import Tuple

from ..base.text import TextEnum


class Family(TextEnum):
    """An LRN family; its value is the name reports and ``inspect --json`` use."""

    ONNX = "onnx"
    CAFFE_ACROSS = "caffe-across"
    CAFFE_WITHIN = "caffe-within"
    TORCH_PATTERN = "torch-pattern"
    TF_PATTERN = "tf-pattern"

    @property
    def is_lrn_node(self) -> bool:
        """True when the site is one ONNX ``LRN`` node (else an op chain stands for it)."""
        return self in (Family.ONNX, Family.CAFFE_ACROSS)

    @property
    def across_channels(self) -> bool:
        """True when the window runs over channels (Caffe WITHIN_CHANNEL's is spatial)."""
        return self is not Family.CAFFE_WITHIN

    def window(self, size: int) -> Tuple[int, int]:
        """Channels before and after c in the window [c - lo, c + hi].

        ONNX (and Caffe, TensorFlow: odd sizes only) reach ``(size-1)//2`` back and
        ``size//2`` ahead; PyTorch pads the other way round, which differs for even sizes.
        """
        if self is Family.TORCH_PATTERN:
            return size // 2, (size - 1) // 2
        return (size - 1) // 2, size // 2
