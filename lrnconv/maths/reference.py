"""Float64 numpy reference implementations of every LRN family lrnconv handles.

This is the project's ground truth wherever ONNX Runtime's own ``LRN`` kernel cannot
run (even ``size``, rank 3 or 5, float16 on CPU, ``alpha = 0``). Each function is
itself checked against ONNX Runtime and PyTorch where they apply
(``tests/test_reference.py``).

Let ``sq = x**2``. Channel windows are closed intervals, zero padded (channels
outside ``[0, C)`` contribute 0, but the divisor stays the nominal window size):

``onnx`` (ONNX ``LRN``, opsets 1 and 13)
    ``y = x / (bias + alpha/size * sum_W sq) ** beta`` with
    ``W(c) = [c - (size-1)//2, c + size//2]``.
``caffe-across`` (Caffe ``ACROSS_CHANNELS``)
    The same with ``bias = k``; ``local_size`` must be odd.
``caffe-within`` (Caffe ``WITHIN_CHANNEL``)
    ``y = x * (1 + alpha/size**2 * sum_S sq) ** -beta`` with ``S`` the
    ``size x size`` spatial window, ``(size-1)/2`` zeros on each side, padded cells
    counted. ``k`` is ignored (Caffe fixes the shift at 1).
``torch-pattern`` (PyTorch ``nn.LocalResponseNorm``)
    ``y = x / (k + alpha/size * sum_W sq) ** beta`` with
    ``W(c) = [c - size//2, c + (size-1)//2]``.
``tf-pattern`` (TensorFlow ``local_response_normalization``, channels last)
    ``y = x / (bias + alpha * sum_{[d-r, d+r]} sq) ** beta``; alpha is not divided
    by the window.

``size//2`` equals ``ceil((size-1)/2)``, the ONNX spec's notation. For odd ``size``
the ONNX and PyTorch windows coincide; for even ``size`` PyTorch's window is ONNX's
mirrored (one more channel before ``c`` instead of after), so
``lrn_onnx(x) == flip(lrn_torch(flip(x)))`` with ``flip`` reversing the channel axis.
TF maps onto ONNX exactly with ``size = 2r + 1`` and ``alpha_onnx = alpha_tf * size``.

All arithmetic is float64 whatever the input dtype; results are cast back to
``x.dtype`` so a reference output can stand in for the layer it models.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "FAMILIES",
    "lrn_caffe_across",
    "lrn_caffe_within",
    "lrn_onnx",
    "lrn_tf",
    "lrn_torch",
    "window_sum",
]


def window_sum(sq, lo, hi):
    """Sum ``sq`` over the zero-padded channel window ``[c - lo, c + hi]`` (axis 1).

    Padding and a sliding-window view keep it vectorized and exact in the sense of
    plain summation (no cumulative-sum cancellation), for any ``lo + hi + 1``
    including windows wider than the channel count.

    Args:
        sq (np.ndarray): Rank >= 2 array, channels on axis 1.
        lo (int): Channels the window reaches before ``c`` (>= 0).
        hi (int): Channels the window reaches after ``c`` (>= 0).

    Returns:
        np.ndarray: Same shape and dtype as ``sq``.
    """
    if lo < 0 or hi < 0:
        raise ValueError(f"window reaches must be >= 0, got lo={lo}, hi={hi}")
    pad = [(0, 0)] * sq.ndim
    pad[1] = (lo, hi)
    padded = np.pad(sq, pad)
    return sliding_window_view(padded, lo + hi + 1, axis=1).sum(axis=-1)


def _as_input(x, min_rank=2):
    """Return ``(x, x as float64)`` after checking the rank."""
    x = np.asarray(x)
    if x.ndim < min_rank:
        raise ValueError(f"LRN input must have rank >= {min_rank}, got shape {x.shape}")
    return x, x.astype(np.float64)


def _check_size(size, name="size", odd=False):
    if int(size) != size or size < 1:
        raise ValueError(f"{name} must be a positive integer, got {size!r}")
    if odd and size % 2 == 0:
        raise ValueError(f"Caffe LRN requires an odd {name}, got {size}")
    return int(size)


def _channel_lrn(x, size, lo, hi, alpha, beta, bias):
    """``x / (bias + alpha/size * window_sum(x**2, lo, hi)) ** beta`` in float64."""
    x, xd = _as_input(x)
    y = xd / (bias + alpha / size * window_sum(xd * xd, lo, hi)) ** beta
    return y.astype(x.dtype, copy=False)


def lrn_onnx(x, size, alpha=1e-4, beta=0.75, bias=1.0):
    """ONNX ``LRN`` (opset 1 and 13): the window reaches ``(size-1)//2`` back, ``size//2`` ahead.

    Args:
        x (np.ndarray): Rank >= 2, layout ``N, C, spatial...``.
        size (int): Window size, >= 1; may exceed the channel count.
        alpha (float): Scale, divided by ``size``. Defaults to 1e-4.
        beta (float): Exponent. Defaults to 0.75.
        bias (float): Shift. Defaults to 1.0.

    Returns:
        np.ndarray: Same shape and dtype as ``x``.
    """
    size = _check_size(size)
    return _channel_lrn(x, size, (size - 1) // 2, size // 2, alpha, beta, bias)


def lrn_caffe_across(x, local_size, alpha=1.0, beta=0.75, k=1.0):
    """Caffe ``LRN`` with ``norm_region: ACROSS_CHANNELS``: ONNX ``LRN`` with ``bias = k``.

    Args:
        x (np.ndarray): Rank >= 2, layout ``N, C, spatial...``.
        local_size (int): Odd window size (Caffe rejects even ones; so do we).
        alpha (float): Scale, divided by ``local_size``. Defaults to 1.0 (Caffe's).
        beta (float): Exponent. Defaults to 0.75.
        k (float): Shift. Defaults to 1.0.

    Returns:
        np.ndarray: Same shape and dtype as ``x``.

    Raises:
        ValueError: ``local_size`` is even or not positive.
    """
    size = _check_size(local_size, "local_size", odd=True)
    return lrn_onnx(x, size, alpha=alpha, beta=beta, bias=k)


def lrn_caffe_within(x, local_size, alpha=1.0, beta=0.75):
    """Caffe ``LRN`` with ``norm_region: WITHIN_CHANNEL``.

    ``y = x * (1 + alpha/local_size**2 * S) ** -beta`` where ``S`` sums ``x**2`` over the
    ``local_size x local_size`` spatial window centred on each pixel, zero padded by
    ``(local_size-1)/2`` on every side; padded cells count in the average (Caffe's
    average pooling divides by the full window). The shift is fixed at 1: Caffe
    ignores ``k`` in this mode, so there is no ``k`` parameter.

    Args:
        x (np.ndarray): Rank 4, layout ``N, C, H, W``.
        local_size (int): Odd window side (Caffe rejects even ones; so do we).
        alpha (float): Scale, divided by ``local_size**2``. Defaults to 1.0.
        beta (float): Exponent. Defaults to 0.75.

    Returns:
        np.ndarray: Same shape and dtype as ``x``.

    Raises:
        ValueError: ``x`` is not rank 4, or ``local_size`` is even or not positive.
    """
    size = _check_size(local_size, "local_size", odd=True)
    x, xd = _as_input(x)
    if x.ndim != 4:
        raise ValueError(f"Caffe WITHIN_CHANNEL LRN needs a rank-4 input, got shape {x.shape}")
    p = (size - 1) // 2
    padded = np.pad(xd * xd, [(0, 0), (0, 0), (p, p), (p, p)])
    s = sliding_window_view(padded, (size, size), axis=(2, 3)).sum(axis=(-2, -1))
    y = xd * (1.0 + alpha / size**2 * s) ** -beta
    return y.astype(x.dtype, copy=False)


def lrn_torch(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """PyTorch ``nn.LocalResponseNorm``: the window reaches ``size//2`` back, ``(size-1)//2`` ahead.

    The average divides by ``size`` even where the window hangs over the channel
    edge (PyTorch zero-pads before pooling). Same as ``lrn_onnx`` for odd ``size``;
    the mirror image of it for even ``size``.

    Args:
        x (np.ndarray): Rank >= 2, layout ``N, C, spatial...`` (PyTorch itself needs >= 3).
        size (int): Window size, >= 1.
        alpha (float): Scale of the average. Defaults to 1e-4.
        beta (float): Exponent. Defaults to 0.75.
        k (float): Shift. Defaults to 1.0.

    Returns:
        np.ndarray: Same shape and dtype as ``x``.
    """
    size = _check_size(size)
    return _channel_lrn(x, size, size // 2, (size - 1) // 2, alpha, beta, k)


def lrn_tf(x_nhwc, depth_radius=5, bias=1.0, alpha=1.0, beta=0.5):
    """TensorFlow ``tf.nn.local_response_normalization`` (channels last).

    ``y = x / (bias + alpha * sum_{[d-r, d+r]} x**2) ** beta``; alpha is *not* divided
    by the window ``2r + 1``.

    Args:
        x_nhwc (np.ndarray): Rank >= 2 with channels on the last axis (TF needs rank 4).
        depth_radius (int): Half-width ``r`` >= 0. Defaults to 5.
        bias (float): Shift. Defaults to 1.0.
        alpha (float): Scale of the plain window sum. Defaults to 1.0.
        beta (float): Exponent. Defaults to 0.5.

    Returns:
        np.ndarray: Same shape and dtype as ``x_nhwc``.
    """
    if int(depth_radius) != depth_radius or depth_radius < 0:
        raise ValueError(f"depth_radius must be a non-negative integer, got {depth_radius!r}")
    r = int(depth_radius)
    x, xd = _as_input(x_nhwc)
    xc = np.moveaxis(xd, -1, 1)
    y = xc / (bias + alpha * window_sum(xc * xc, r, r)) ** beta
    return np.moveaxis(y, 1, -1).astype(x.dtype, copy=False)


FAMILIES = {
    "onnx": lrn_onnx,
    "caffe-across": lrn_caffe_across,
    "caffe-within": lrn_caffe_within,
    "torch-pattern": lrn_torch,
    "tf-pattern": lrn_tf,
}
"""Family name (as in ``LrnSite.family`` and ``inspect --json``) to its reference.

The functions keep their framework's parameter names (``size`` / ``local_size`` /
``depth_radius``, ``bias`` / ``k``), so callers pass keywords per family.
"""
