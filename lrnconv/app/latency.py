"""Latency of a converted model against its original, for the zoo report.

A cheap, paired measurement: one sample (batch 1) of seeded random inputs, one
intra-op thread (so parallel zoo workers do not skew each other's numbers), one warm-up
run each, then ``runs`` runs of the original and of the converted model *interleaved*
(load drifting over the measurement hits both alike); the report gives both medians and
``ratio = after / before`` (below 1: the converted model is faster). Sessions come from
``lrnconv.runtime.sessions``, the one place that runs ONNX Runtime.
"""
from __future__ import annotations

import statistics
import time
from typing import Dict, List, Optional

import onnx

from ..base.errors import LrnConvError
from ..runtime.inputs import random_inputs
from ..runtime.providers import short_name
from ..runtime.sessions import Session, create_session

THREADS = 1


def _once(session: Session, feeds) -> float:
    start = time.perf_counter()
    session.inner.run(None, feeds)
    return time.perf_counter() - start


class LatencyProbe:
    """Times one original against each of its conversions (the original's session is made once).

    Args:
        original: the model as it was loaded.
        provider: the full ONNX Runtime provider name to time on.
        runs: timed runs of each model (after one warm-up each).
    """

    def __init__(self, original: onnx.ModelProto, provider: str, runs: int, seed: int = 0):
        self.original = original
        self.provider = provider
        self.runs = runs
        self.seed = seed
        self._feeds = None
        self._session: Optional[Session] = None
        self._refusal: Optional[str] = None

    def _prepare(self) -> None:
        if self._feeds is not None or self._refusal is not None:
            return
        try:
            self._feeds = random_inputs(self.original, 1, self.seed)
        except LrnConvError as exc:
            self._refusal = f"no timing: {exc}"
            return
        try:
            self._session = create_session(self.original, self.provider, threads=THREADS)
            _once(self._session, self._feeds)
        except Exception as exc:  # RuntimeRefused, or ORT's own types at run time
            self._session = None
            self._refusal = f"ONNX Runtime cannot run the original ({exc}); no 'before' time"

    def measure(self, converted: onnx.ModelProto) -> Dict[str, object]:
        """``{"provider", "batch", "threads", "runs", "before_ms", "after_ms", "ratio", "note"}``.

        ``before_ms`` and ``ratio`` are None where ONNX Runtime cannot run the original (the
        note says why); every value is None where the converted model cannot run either.
        """
        self._prepare()
        result: Dict[str, object] = {"provider": short_name(self.provider), "batch": 1, "threads": THREADS,
                                     "runs": self.runs, "before_ms": None, "after_ms": None, "ratio": None,
                                     "note": self._refusal}
        if self._feeds is None:
            return result
        try:
            session = create_session(converted, self.provider, threads=THREADS)
            _once(session, self._feeds)
        except Exception as exc:  # ORT raises its own types
            result["note"] = f"ONNX Runtime cannot run the converted model ({exc})"
            return result
        before: List[float] = []
        after: List[float] = []
        for _ in range(self.runs):
            if self._session is not None:
                before.append(_once(self._session, self._feeds))
            after.append(_once(session, self._feeds))
        result["after_ms"] = statistics.median(after) * 1e3
        if before:
            result["before_ms"] = statistics.median(before) * 1e3
            result["ratio"] = result["after_ms"] / result["before_ms"]
        return result
