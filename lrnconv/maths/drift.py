"""Drift metrics between a reference output and a candidate output, accumulated chunk by chunk.

Pass means every element satisfies ``|a - b| <= atol + rtol * |b|`` (numpy ``allclose``
semantics, reference second), like Polygraphy's comparator, and that no element of either
tensor is NaN or Inf: a non-finite value fails whatever the other side holds (NaN == NaN is
not agreement), and is counted with the index of the first one. The other metrics are taken
over the elements where both sides are finite. They also say which tolerance would have been
needed, and for score outputs ``[N, K]`` how often the candidate still picks the reference's
class.

``DriftMeter`` keeps only running sums, maxima and a histogram of the absolute error, so
verification memory does not grow with the number of samples; ``compare`` is the one-shot form.

Error statistics (Polygraphy's ``check_error_stat``): ``elemwise`` (the default) is the
element-wise rule above; ``max``, ``mean`` and ``median`` pass unless that statistic of the
absolute error exceeds ``atol`` *and* the same statistic of the relative error
``|a - b| / |b|`` (``|b|`` = 0 counted as 2.2e-16) exceeds ``rtol``. The median needs every
element's error, so with ``median`` the meter keeps them (memory then grows with the samples).

Default tolerances follow the element type (``default_tolerance``): float32 and float64 allow
``atol 1e-5, rtol 1e-4`` (about 840 float32 ulps of relative slack, room for a different but
exact order of summation through a deep network); float16 ``atol 1e-3, rtol 1e-2`` (about 10
ulps of its 11-bit significand: a rewrite that computes in float32 and rounds once differs
from a float16 kernel by an ulp at each rounding, and the layers after it carry that on);
bfloat16 ``atol 1e-2, rtol 6e-2`` (about 8 ulps of its 8-bit significand).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Dict, Optional, Tuple

import numpy as np

from ..base.text import json_number

DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-4
ERROR_STATS = ("elemwise", "max", "mean", "median")
HISTOGRAM_EDGES = (0.0,) + tuple(10.0 ** e for e in range(-12, 3)) + (float("inf"),)
"""Bins of the absolute-error histogram: [0, 1e-12), [1e-12, 1e-11), ..., [100, inf)."""
_TINY = 2.220446049250313e-16
TYPE_TOLERANCES: Dict[str, Tuple[float, float]] = {
    "float32": (DEFAULT_ATOL, DEFAULT_RTOL),
    "float64": (DEFAULT_ATOL, DEFAULT_RTOL),
    "float16": (1e-3, 1e-2),
    "bfloat16": (1e-2, 6e-2),
}
"""numpy dtype name -> (atol, rtol) that verification uses unless told otherwise."""


def default_tolerance(dtype) -> Tuple[float, float]:
    """(atol, rtol) for outputs of this numpy dtype (float32's for anything not listed)."""
    return TYPE_TOLERANCES.get(np.dtype(dtype).name, TYPE_TOLERANCES["float32"])


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
    nonfinite: int = 0
    """Elements where the candidate or the reference is NaN or Inf."""
    first_nonfinite: Optional[tuple] = None
    """Index of the first of them (the sample first)."""
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    """The tolerance this drift was judged by."""
    error_stat: str = "elemwise"
    max_reldiff: Optional[float] = None
    """max |a - b| / |b| over the elements (outputs only)."""
    mean_reldiff: Optional[float] = None
    median_absdiff: Optional[float] = None
    median_reldiff: Optional[float] = None
    histogram: Optional[Tuple[Tuple[float, int], ...]] = None
    """(upper bin edge, count) of the absolute error, for the bins that hold any (outputs only)."""

    def to_dict(self) -> Dict[str, object]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name in ("nonfinite",) and value == 0):
                continue
            if f.name == "histogram":
                value = [[json_number(edge), count] for edge, count in value]
            elif isinstance(value, tuple):
                value = [int(v) for v in value]
            out[f.name] = json_number(value)
        return out


def _scores(array: np.ndarray) -> Optional[np.ndarray]:
    """[N, K] view of a score output ([N, K, 1, 1] squeezed), or None."""
    if array.ndim >= 2 and array.shape[1] >= 2 and all(d == 1 for d in array.shape[2:]):
        return array.reshape(array.shape[0], array.shape[1])
    return None


class DriftMeter:
    """Drift of a candidate tensor against its reference, fed chunk by chunk along axis 0.

    Args:
        atol, rtol: the tolerance the verdict is judged by.
        error_stat: which error statistic is judged (see the module docstring).
        detail: also keep the relative-error statistics and the histogram (for outputs; the
            large per-site tensors skip them).
    """

    def __init__(self, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, error_stat: str = "elemwise",
                 detail: bool = False):
        if error_stat not in ERROR_STATS:
            raise ValueError(f"unknown error statistic '{error_stat}'; choose from {', '.join(ERROR_STATS)}")
        self.atol, self.rtol = float(atol), float(rtol)
        self.error_stat = error_stat
        self.detail = detail or error_stat != "elemwise"
        self.sum_rel = self.max_reldiff = 0.0
        self.histogram = np.zeros(len(HISTOGRAM_EDGES) - 1, np.int64)
        self.kept: Optional[Tuple[list, list]] = ([], []) if error_stat == "median" else None
        self.rows = 0
        self.inner: Optional[tuple] = None
        self.mismatch = False
        self.count = 0
        self.max_abs = self.scale = self.sum_abs = 0.0
        self.dot = self.aa = self.bb = 0.0
        self.needed_atol = self.needed_rtol = 0.0
        self.within = True
        self.nonfinite = 0
        self.first_nonfinite: Optional[tuple] = None
        self.scored = 0
        self.top1_hits = self.top5_hits = 0
        self.top5_possible = True

    def update(self, candidate: np.ndarray, reference: np.ndarray) -> None:
        """Add one chunk: the next ``len(reference)`` samples of both tensors."""
        candidate, reference = np.asarray(candidate), np.asarray(reference)
        if candidate.shape != reference.shape or (self.inner is not None and reference.shape[1:] != self.inner):
            self.mismatch = True
            self.inner = tuple(reference.shape[1:])
            self.rows += reference.shape[0] if reference.ndim else 1
            return
        self.inner = tuple(reference.shape[1:])
        offset = self.rows
        self.rows += reference.shape[0] if reference.ndim else 1
        a = candidate.astype(np.float64)
        b = reference.astype(np.float64)
        finite = np.isfinite(a)
        finite &= np.isfinite(b)
        bad = int(finite.size - np.count_nonzero(finite))
        if bad:
            if self.first_nonfinite is None:
                index = np.unravel_index(int(np.argmin(finite.ravel())), finite.shape) if finite.ndim else ()
                self.first_nonfinite = tuple(int(i) + (offset if k == 0 else 0) for k, i in enumerate(index))
            self.nonfinite += bad
            a, b = np.where(finite, a, 0.0), np.where(finite, b, 0.0)
        diff = np.abs(a - b)
        magnitude = np.abs(b)
        if diff.size:
            self.count += diff.size - bad
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.scale = max(self.scale, float(magnitude.max()))
            self.sum_abs += float(diff.sum())
            flat_a, flat_b = a.ravel(), b.ravel()
            self.dot += float(np.dot(flat_a, flat_b))
            self.aa += float(np.dot(flat_a, flat_a))
            self.bb += float(np.dot(flat_b, flat_b))
            scaled = self.rtol * magnitude
            self.needed_atol = max(self.needed_atol, float(np.max(diff - scaled)))
            self.within = self.within and bool(np.all(diff <= self.atol + scaled))
            over = diff > self.atol  # only these elements need any rtol at all
            if over.any():
                with np.errstate(divide="ignore"):
                    ratio = (diff[over] - self.atol) / magnitude[over]
                self.needed_rtol = max(self.needed_rtol, float(ratio.max()))
            if self.detail:
                kept = finite if bad else slice(None)
                absolute = diff[kept]
                relative = absolute / np.where(magnitude[kept] == 0, _TINY, magnitude[kept])
                self.sum_rel += float(relative.sum())
                self.max_reldiff = max(self.max_reldiff, float(relative.max()) if relative.size else 0.0)
                self.histogram += np.histogram(absolute, bins=HISTOGRAM_EDGES)[0]
                if self.kept is not None:
                    self.kept[0].append(absolute.astype(np.float32).ravel())
                    self.kept[1].append(relative.astype(np.float32).ravel())
        sa, sb = _scores(a), _scores(b)
        if sa is not None and sb is not None:
            reference_class = np.argmax(sb, axis=1)
            self.scored += sa.shape[0]
            self.top1_hits += int(np.sum(np.argmax(sa, axis=1) == reference_class))
            if sa.shape[1] >= 5:
                best5 = np.argsort(-sa, axis=1)[:, :5]
                self.top5_hits += int(np.sum(np.any(best5 == reference_class[:, None], axis=1)))
            else:
                self.top5_possible = False

    def result(self) -> Drift:
        shape = (self.rows,) + (self.inner or ())
        if self.mismatch:
            inf = float("inf")
            return Drift(shape, inf, inf, inf, 0.0, inf, inf, False, atol=self.atol, rtol=self.rtol)
        max_rel = self.max_abs / self.scale if self.scale > 0 else (0.0 if self.max_abs == 0 else float("inf"))
        needed_atol = max(self.needed_atol, 0.0)
        norm = math.sqrt(self.aa) * math.sqrt(self.bb)
        cosine = self.dot / norm if norm > 0 else (1.0 if self.max_abs == 0 else 0.0)
        top1 = self.top1_hits / self.scored if self.scored else None
        top5 = self.top5_hits / self.scored if self.scored and self.top5_possible else None
        mean_abs = self.sum_abs / self.count if self.count else 0.0
        extra: Dict[str, object] = {}
        if self.detail:
            extra = {"max_reldiff": self.max_reldiff, "mean_reldiff": self.sum_rel / self.count if self.count else 0.0,
                     "histogram": tuple((HISTOGRAM_EDGES[i + 1], int(n)) for i, n in enumerate(self.histogram) if n)}
        if self.kept is not None:
            absolute = np.concatenate(self.kept[0]) if self.kept[0] else np.zeros(1)
            relative = np.concatenate(self.kept[1]) if self.kept[1] else np.zeros(1)
            extra.update(median_absdiff=float(np.median(absolute)), median_reldiff=float(np.median(relative)))
        statistic = {"max": (self.max_abs, extra.get("max_reldiff")),
                     "mean": (mean_abs, extra.get("mean_reldiff")),
                     "median": (extra.get("median_absdiff"), extra.get("median_reldiff"))}.get(self.error_stat)
        if statistic is None:
            passed = self.within
        else:
            passed = not (statistic[0] > self.atol and statistic[1] > self.rtol)
        return Drift(shape, self.max_abs, max_rel, mean_abs, cosine, needed_atol, self.needed_rtol,
                     passed and self.nonfinite == 0, top1, top5, self.nonfinite, self.first_nonfinite,
                     self.atol, self.rtol, self.error_stat, **extra)


def compare(candidate: np.ndarray, reference: np.ndarray, *, atol: float = DEFAULT_ATOL,
            rtol: float = DEFAULT_RTOL) -> Drift:
    """Metrics of ``candidate`` against ``reference`` (computed in float64), in one go."""
    meter = DriftMeter(atol, rtol)
    meter.update(candidate, reference)
    return meter.result()


@dataclass(frozen=True)
class Tolerance:
    """Task-level acceptance for approximate rewrites (``auto`` and approximate strategies).

    An output is accepted when it has no NaN or Inf, its cosine similarity to the reference
    is at least ``cosine``, its top-1 agreement (score outputs only) at least ``top1``, and,
    if set, its max-rel error at most ``max_rel``. Defaults: top-1 >= 99.5 %, cosine >= 0.999.

    Raises:
        ValueError: a bound out of its range (cosine in [-1, 1], top1 in [0, 1], max_rel a
            finite number >= 0), NaN included.
    """

    top1: float = 0.995
    cosine: float = 0.999
    max_rel: Optional[float] = None

    def __post_init__(self) -> None:
        if not -1.0 <= self.cosine <= 1.0:
            raise ValueError(f"cosine={self.cosine!r} is not in [-1, 1]")
        if not 0.0 <= self.top1 <= 1.0:
            raise ValueError(f"top1={self.top1!r} is not in [0, 1]")
        if self.max_rel is not None and not (math.isfinite(self.max_rel) and self.max_rel >= 0):
            raise ValueError(f"max_rel={self.max_rel!r} is not a finite number >= 0")

    def accepts(self, drift: Drift) -> bool:
        if drift.nonfinite or drift.cosine < self.cosine:
            return False
        if drift.top1 is not None and drift.top1 < self.top1:
            return False
        return self.max_rel is None or drift.max_rel <= self.max_rel

    def to_dict(self) -> Dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def parse(cls, text: str) -> "Tolerance":
        """'top1=0.99,cosine=0.995,max_rel=0.05' (any subset) -> Tolerance."""
        values = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in ("top1", "cosine", "max_rel"):
                raise ValueError(f"tolerance '{part}': use top1=F, cosine=F and/or max_rel=F")
            try:
                values[key] = float(value)
            except ValueError:
                raise ValueError(f"tolerance '{part}': '{value.strip()}' is not a number") from None
        return cls(**values)
