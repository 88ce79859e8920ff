"""Drift metrics between a reference output and a candidate output.

Pass means every element satisfies ``|a - b| <= atol + rtol * |b|`` (numpy ``allclose``
semantics, reference second), like Polygraphy's comparator. The metrics also say which
tolerance would have been needed, and for score outputs ``[N, K]`` how often the
candidate still picks the reference's class.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional

import numpy as np

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4


@dataclass(frozen=True)
class Drift:
    """How far one candidate tensor is from its reference."""

    shape: tuple
    max_abs: float
    max_rel: float
    """max |a - b| / max |b|: the error relative to the tensor's scale."""
    mean_abs: float
    cosine: float
    needed_atol: float
    """Smallest atol that passes with the rtol in force."""
    needed_rtol: float
    """Smallest rtol that passes with the atol in force (inf where b == 0 and a != b)."""
    passed: bool
    top1: Optional[float] = None
    top5: Optional[float] = None

    def to_dict(self) -> Dict[str, object]:
        out = asdict(self)
        out["shape"] = list(self.shape)
        return {k: v for k, v in out.items() if v is not None}


def _scores(array: np.ndarray) -> Optional[np.ndarray]:
    """[N, K] view of a score output ([N, K, 1, 1] squeezed), or None."""
    if array.ndim >= 2 and array.shape[1] >= 2 and all(d == 1 for d in array.shape[2:]):
        return array.reshape(array.shape[0], array.shape[1])
    return None


def compare(candidate: np.ndarray, reference: np.ndarray, *, atol: float = DEFAULT_ATOL,
            rtol: float = DEFAULT_RTOL) -> Drift:
    """Metrics of ``candidate`` against ``reference`` (computed in float64)."""
    if candidate.shape != reference.shape:
        return Drift(tuple(reference.shape), float("inf"), float("inf"), float("inf"), 0.0,
                     float("inf"), float("inf"), False)
    a = candidate.astype(np.float64)
    b = reference.astype(np.float64)
    diff = np.abs(a - b)
    diff = np.where(np.isnan(a) & np.isnan(b), 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    with np.errstate(divide="ignore", invalid="ignore"):
        needed_atol = float(np.max(np.maximum(diff - rtol * np.abs(b), 0.0))) if diff.size else 0.0
        over = np.maximum(diff - atol, 0.0)
        ratio = np.where(over > 0, over / np.abs(b), 0.0)
        needed_rtol = float(np.max(ratio)) if diff.size else 0.0
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(np.dot(a.ravel(), b.ravel()) / norm) if norm > 0 else (1.0 if max_abs == 0 else 0.0)
    top1 = top5 = None
    sa, sb = _scores(a), _scores(b)
    if sa is not None and sb is not None:
        ref_class = np.argmax(sb, axis=1)
        top1 = float(np.mean(np.argmax(sa, axis=1) == ref_class))
        if sa.shape[1] >= 5:
            best5 = np.argsort(-sa, axis=1)[:, :5]
            top5 = float(np.mean(np.any(best5 == ref_class[:, None], axis=1)))
    passed = bool(np.all(diff <= atol + rtol * np.abs(b)))
    return Drift(tuple(reference.shape), max_abs, max_rel, float(diff.mean()) if diff.size else 0.0,
                 cosine, needed_atol, needed_rtol, passed, top1, top5)


@dataclass(frozen=True)
class Tolerance:
    """Task-level acceptance for approximate rewrites (``auto`` and approximate strategies).

    An output is accepted when its cosine similarity to the reference is at least
    ``cosine``, its top-1 agreement (score outputs only) at least ``top1``, and, if set,
    its max-rel error at most ``max_rel``. Defaults: top-1 >= 99.5 %, cosine >= 0.999.
    """

    top1: float = 0.995
    cosine: float = 0.999
    max_rel: Optional[float] = None

    def accepts(self, drift: Drift) -> bool:
        if drift.cosine < self.cosine:
            return False
        if drift.top1 is not None and drift.top1 < self.top1:
            return False
        return self.max_rel is None or drift.max_rel <= self.max_rel

    def to_dict(self) -> Dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def parse(cls, text: str) -> "Tolerance":
        """'top1=0.99,cosine=0.995,max_rel=0.05' (any subset) -> Tolerance."""
        values = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in ("top1", "cosine", "max_rel"):
                raise ValueError(f"tolerance '{part}': use top1=F, cosine=F and/or max_rel=F")
            values[key] = float(value)
        return cls(**values)
