"""Per-site calibration statistics, accumulated in streaming form.

For each LRN site, per channel c, over every sample and position: n, sum x, sum y,
sum x^2, sum x*y, sum y^2 (float64), and for the ``l2`` fit the sums of u*y and u^2 with
u = x / ||x||_2 over channels. Memory is O(C) per site whatever the number of samples.
The approximating strategies fit their parameters from these by least squares:

* ``fold``: y ~ s_c x           s_c = sum xy / sum x^2   (positive for LRN: y = x * f, f > 0)
* ``bn``:   y ~ a_c x + b_c     ordinary least squares per channel
* ``l2``:   y ~ k * x / ||x||    k = sum u*y / sum u^2
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np


@dataclass
class SiteStats:
    """Streaming sums of one site's input x and output y, per channel (axis 1)."""

    channels: int
    count: np.ndarray = field(init=False)
    sum_x: np.ndarray = field(init=False)
    sum_y: np.ndarray = field(init=False)
    sum_xx: np.ndarray = field(init=False)
    sum_xy: np.ndarray = field(init=False)
    sum_yy: np.ndarray = field(init=False)
    sum_uy: float = 0.0
    sum_uu: float = 0.0

    def __post_init__(self) -> None:
        for name in ("count", "sum_x", "sum_y", "sum_xx", "sum_xy", "sum_yy"):
            setattr(self, name, np.zeros(self.channels, dtype=np.float64))

    def update(self, x: np.ndarray, y: np.ndarray) -> None:
        """Add a batch of site inputs x and outputs y, shaped [N, C, ...]."""
        x64 = x.astype(np.float64, copy=False).reshape(x.shape[0], x.shape[1], -1)
        y64 = y.astype(np.float64, copy=False).reshape(x64.shape)
        self.count += x64.shape[0] * x64.shape[2]
        self.sum_x += x64.sum(axis=(0, 2))
        self.sum_y += y64.sum(axis=(0, 2))
        self.sum_xx += np.einsum("ncl,ncl->c", x64, x64)
        self.sum_xy += np.einsum("ncl,ncl->c", x64, y64)
        self.sum_yy += np.einsum("ncl,ncl->c", y64, y64)
        norm = np.sqrt(np.einsum("ncl,ncl->nl", x64, x64))[:, None, :]
        u = np.divide(x64, norm, out=np.zeros_like(x64), where=norm > 0)
        self.sum_uy += float(np.einsum("ncl,ncl->", u, y64))
        self.sum_uu += float(np.einsum("ncl,ncl->", u, u))

    def scale(self) -> np.ndarray:
        """Least-squares s_c in y ~ s_c x (channels never seen non-zero get 1)."""
        return np.divide(self.sum_xy, self.sum_xx, out=np.ones(self.channels), where=self.sum_xx > 0)

    def affine(self) -> Tuple[np.ndarray, np.ndarray]:
        """Least-squares (a_c, b_c) in y ~ a_c x + b_c (constant channels: a = fold scale)."""
        n = np.maximum(self.count, 1)
        variance = self.sum_xx - self.sum_x ** 2 / n
        covariance = self.sum_xy - self.sum_x * self.sum_y / n
        scale = self.scale()
        a = np.divide(covariance, variance, out=scale.copy(), where=variance > 1e-12 * np.maximum(self.sum_xx, 1e-300))
        b = (self.sum_y - a * self.sum_x) / n
        return a, b

    def l2_scale(self) -> float:
        """Least-squares k in y ~ k x / ||x||_2."""
        return self.sum_uy / self.sum_uu if self.sum_uu > 0 else 1.0

    def residual_rms(self, a: np.ndarray, b: np.ndarray) -> float:
        """RMS of y - (a x + b) over everything seen, relative to the RMS of y."""
        n = self.count
        sse = (self.sum_yy - 2 * a * self.sum_xy - 2 * b * self.sum_y + a * a * self.sum_xx
               + 2 * a * b * self.sum_x + b * b * n)
        total_y = self.sum_yy.sum()
        return float(np.sqrt(max(sse.sum(), 0.0) / total_y)) if total_y > 0 else 0.0


def summarize(values) -> Dict[str, float]:
    """min / max / mean of fitted per-channel values, for reports."""
    array = np.asarray(values, dtype=np.float64).ravel()
    return {"min": float(array.min()), "max": float(array.max()), "mean": float(array.mean())}
