"""The LRN divisor and its distribution, accumulated in streaming form.

Every LRN family divides its input by ``d = (bias + alpha/n * S)^beta`` where ``S`` sums
``x^2`` over the window (channels for ONNX, Caffe ACROSS, PyTorch and TensorFlow; a
``size x size`` spatial square for Caffe WITHIN, whose shift is fixed at 1 and whose
``n`` is ``size^2``). ``lrn_divisor`` computes ``d`` in float64 from the site input.

How much ``d`` varies says how far the LRN is from a constant scale: a divisor that is
nearly the same everywhere is what ``remove`` (if it is ~1) or ``fold`` (a scale) can
stand in for. ``LogHistogram`` keeps its distribution in fixed memory, whatever the number
of samples: counts in bins that are uniform in ``log2(d)`` with 256 bins per octave
(each bin spans 0.27 %), from 2^-64 to 2^64, plus exact count, zeros, min, max and mean.
Percentiles are read from the bins (the geometric centre of the bin that holds them:
within 0.14 % of the exact value, clamped to the exact min and max); values equal to the
minimum are counted exactly (an LRN's divisor is exactly ``bias^beta`` wherever its window
is all zeros, as after a ReLU), so a percentile that falls on them is the minimum itself.
"""
from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .reference import window_sum

BINS_PER_OCTAVE = 256
LOW_OCTAVE, HIGH_OCTAVE = -64, 64
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def lrn_divisor(x: np.ndarray, *, size: int, alpha: float, beta: float, bias: float,
                window: Tuple[int, int], spatial: bool = False, alpha_divided: bool = True) -> np.ndarray:
    """``(bias + alpha/n * S)^beta`` in float64, the shape of ``x`` (channels on axis 1).

    Args:
        x: the LRN input, rank >= 2 (rank 4 for ``spatial``).
        size: the window size.
        window: channels (lo, hi) the window reaches before and after c (``LrnSite.window``).
        spatial: Caffe WITHIN_CHANNEL: a ``size x size`` spatial window, ``n = size^2``,
            shift fixed at 1 (``bias`` is ignored, as Caffe does).
        alpha_divided: False for TensorFlow's convention (alpha not divided by the window).
    """
    xd = np.asarray(x, dtype=np.float64)
    sq = xd * xd
    if spatial:
        p = (size - 1) // 2
        padded = np.pad(sq, [(0, 0), (0, 0), (p, p), (p, p)])
        total = sliding_window_view(padded, (size, size), axis=(2, 3)).sum(axis=(-2, -1))
        return (1.0 + alpha / size ** 2 * total) ** beta
    lo, hi = window
    scale = alpha / size if alpha_divided else alpha
    return (bias + scale * window_sum(sq, lo, hi)) ** beta


class LogHistogram:
    """The distribution of positive values in fixed memory (see the module docstring)."""

    def __init__(self) -> None:
        self.counts = np.zeros((HIGH_OCTAVE - LOW_OCTAVE) * BINS_PER_OCTAVE, dtype=np.int64)
        self.count = 0
        self.zeros = 0
        self.nonfinite = 0
        self.minimum = float("inf")
        self.maximum = float("-inf")
        self.at_minimum = 0
        self.total = 0.0

    def update(self, values: np.ndarray) -> None:
        """Add values (any shape); zeros, negatives and non-finite values are counted apart."""
        flat = np.asarray(values, dtype=np.float64).ravel()
        finite = np.isfinite(flat)
        self.nonfinite += int(flat.size - np.count_nonzero(finite))
        flat = flat[finite]
        positive = flat[flat > 0]
        self.zeros += int(flat.size - positive.size)
        if positive.size == 0:
            return
        self.count += int(positive.size)
        low = float(positive.min())
        if low < self.minimum:
            self.minimum, self.at_minimum = low, 0
        if low == self.minimum:
            self.at_minimum += int(np.count_nonzero(positive == low))
        self.maximum = max(self.maximum, float(positive.max()))
        self.total += float(positive.sum())
        index = np.floor((np.log2(positive) - LOW_OCTAVE) * BINS_PER_OCTAVE).astype(np.int64)
        np.clip(index, 0, self.counts.size - 1, out=index)
        self.counts += np.bincount(index, minlength=self.counts.size)

    def edges(self) -> np.ndarray:
        """Bin edges (one more than the bins)."""
        return 2.0 ** (LOW_OCTAVE + np.arange(self.counts.size + 1) / BINS_PER_OCTAVE)

    def percentile(self, q: float) -> float:
        """The q-th percentile (0..100) of the positive values, from the bins (NaN when empty)."""
        if self.count == 0:
            return float("nan")
        rank = q / 100.0 * (self.count - 1)
        if rank <= self.at_minimum - 1:
            return self.minimum
        cumulative = np.cumsum(self.counts)
        index = int(np.searchsorted(cumulative, rank + 1, side="left"))
        centre = 2.0 ** (LOW_OCTAVE + (index + 0.5) / BINS_PER_OCTAVE)
        return float(min(max(centre, self.minimum), self.maximum))

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def occupied(self) -> Tuple[np.ndarray, np.ndarray]:
        """(edges, counts) of the span from the first to the last occupied bin, for figures."""
        nonzero = np.flatnonzero(self.counts)
        if nonzero.size == 0:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        first, last = int(nonzero[0]), int(nonzero[-1]) + 1
        return self.edges()[first:last + 1], self.counts[first:last]

    def summary(self, percentiles: Sequence[float] = PERCENTILES) -> Dict[str, float]:
        """min, max, mean and the percentiles (``p50`` ...), for reports and JSON."""
        out = {"count": self.count, "min": self.minimum if self.count else float("nan"),
               "max": self.maximum if self.count else float("nan"), "mean": self.mean}
        out.update({f"p{q:g}": self.percentile(q) for q in percentiles})
        if self.zeros:
            out["zeros"] = self.zeros
        if self.nonfinite:
            out["nonfinite"] = self.nonfinite
        return out
