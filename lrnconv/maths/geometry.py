"""Caffe's output-extent arithmetic for pooling, written once.

Caffe rounds a pooled extent up (``round_mode: CEIL``, its default) or down, and then
drops a last window that would start in the bottom/right padding:
``if any pad and (pooled - 1) * stride >= size + pad: pooled -= 1``. ONNX has no such
clip, so both the Caffe importer and the built-in replicas compute the extent here and
emit explicit end pads (or ``ceil_mode``) that reach it.
"""
from __future__ import annotations

from typing import Optional


def caffe_pooled_extent(size: int, kernel: int, stride: int, pad: int, *, ceil: bool = True,
                        padded: Optional[bool] = None) -> int:
    """The number of windows along one axis, as Caffe counts them (pooling; with ``ceil=False``
    and ``padded=False`` it is the plain convolution extent).

    Args:
        size: the input extent along the axis.
        kernel, stride, pad: the window, its step and the padding on each side.
        ceil: round up (Caffe's CEIL, the default) or down (FLOOR).
        padded: whether the layer pads at all, on any axis (Caffe clips the last window
            of every axis when any pad is set). Defaults to ``pad > 0``.

    Raises:
        ValueError: the window is larger than the padded input.
    """
    span = size + 2 * pad - kernel
    if span < 0:
        raise ValueError(f"window {kernel} larger than padded input {size + 2 * pad}")
    pooled = (-(-span // stride) if ceil else span // stride) + 1
    if (pad > 0 if padded is None else padded) and (pooled - 1) * stride >= size + pad:
        pooled -= 1
    return pooled
