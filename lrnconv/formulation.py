"""``decompose``'s formulation chosen by timing it on this machine (``window``/``power`` = ``auto``).

Why measure: the exact formulations trade different resources, and CPUs price them
differently. The banded-Conv window costs C multiply-adds per element and runs in ONNX
Runtime's blocked (NCHWc) layout; the AveragePool window costs a few memory passes in
plain NCHW, and at batch 1 runs on one thread (MLAS splits a pool over batch x channels,
and the lifted tensor has one channel). Which wins depends on the site's channel count
and on the machine's arithmetic rate against its memory bandwidth: on a 2-core AMD EPYC
(Zen 5, AVX-512) the Conv-window formulations are 2-5 % faster than ``pool/roots`` on
AlexNet and VGG-CNN-M, and within 1 % on GoogLeNet at batch 16, whose 192-channel site
makes the band Conv 115 M multiply-adds per image (``FINDINGS.md``). A CPU with half the
multiply-add rate (AVX2) doubles the band Conv's cost and not the pool's memory passes.

What it does: every candidate (``candidates``: the shortlist, with the part the user
fixed kept) is applied to every site; the models are timed whole, at one batch, in
rounds that run each candidate once, the order rotated every round. The timing sessions
do not spin: with ONNX Runtime's default, the threads of the session that just ran keep
spinning over the next one's first runs (measured on the full AlexNet at batch 1: 24-27
ms a run, against 9.7-10 ms without spinning and 10-11 ms from the third run of a
session on). A
candidate replaces the default only when the median over rounds of its time divided by
the default's time in the same round is below ``SWITCH_RATIO``: closer than that is
within what a shared machine's noise does to a few rounds, and the default is then kept.
The budget bounds everything, session creation included; when it does not allow
``MIN_ROUNDS`` rounds, nothing is decided and the default is used, with a note. A
budget of 0 does not measure at all.

Timing lives here, above the passes (which never start ONNX Runtime) and beside
verification; ``convert`` builds the candidate models and hands them over.
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
import onnx

from .runtime import create_session

log = logging.getLogger(__name__)

AUTO = "auto"
SHORTLIST: Tuple[Tuple[str, str], ...] = (("pool", "roots"), ("conv", "roots"), ("conv", "inverse"),
                                          ("conv", "blocked"))
"""The formulations worth timing: the others were never fastest in a measured cell
(``cumsum`` is also less precise, ``pow`` and ``explog`` pay for ONNX Runtime's Pow and Log)."""
WINDOW_SHORTLIST = ("pool", "conv")
POWER_SHORTLIST = ("roots", "inverse", "blocked")
DEFAULT_BUDGET_SECONDS = 30.0
MIN_ROUNDS = 3
SWITCH_RATIO = 0.98

Formulation = Tuple[str, str]


@dataclass
class FormulationChoice:
    """What ``auto`` picked and why (the report's note says it in one line)."""

    window: str
    power: str
    measured: bool
    reason: str
    batch: Optional[int] = None
    median_ms: Dict[str, float] = field(default_factory=dict)
    """'window/power' -> median run time."""
    ratio_to_default: Dict[str, float] = field(default_factory=dict)
    """'window/power' -> median over rounds of its time / the default's time."""
    rounds: int = 0
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.window}/{self.power}"

    def note(self) -> str:
        if not self.measured:
            return f"decompose formulation: {self.name} ({self.reason})"
        times = ", ".join(f"{c} {ms:.2f} ms ({self.ratio_to_default[c]:.3f})" for c, ms in
                          sorted(self.median_ms.items(), key=lambda kv: kv[1]))
        return (f"decompose formulation: {self.name}, timed on this machine at batch {self.batch} "
                f"({self.rounds} rounds, {self.seconds:.1f} s; median, and ratio to the default in the "
                f"same round: {times}); {self.reason}")

    def to_dict(self) -> Dict[str, object]:
        return {"window": self.window, "power": self.power, "measured": self.measured,
                "reason": self.reason, "batch": self.batch, "median_ms": dict(self.median_ms),
                "ratio_to_default": dict(self.ratio_to_default), "rounds": self.rounds,
                "seconds": self.seconds}


def candidates(window: str, power: str, default: Formulation) -> List[Formulation]:
    """The formulations ``auto`` times, the default first.

    Both ``auto``: the shortlist. One fixed: the shortlist's choices for the other part.
    """
    if window == AUTO and power == AUTO:
        found = list(SHORTLIST)
    elif window == AUTO:
        found = [(w, power) for w in WINDOW_SHORTLIST]
    else:
        found = [(window, p) for p in POWER_SHORTLIST]
    first = default if default in found else found[0]
    return [first] + [c for c in found if c != first]


def fastest(builders: Mapping[Formulation, Callable[[], onnx.ModelProto]], feeds: Dict[str, np.ndarray],
            provider: str, budget_seconds: float) -> FormulationChoice:
    """Time whole models, one per formulation; the first of ``builders`` is the default.

    Args:
        builders: formulation -> a function that returns the model rewritten with it
            (called once, only while the budget lasts).
        feeds: one batch of inputs.
        provider: the ONNX Runtime provider to time on.
        budget_seconds: wall-clock bound for building, session creation and runs.

    Returns:
        The choice; the default whenever the measurement cannot decide.
    """
    order = list(builders)
    default = order[0]
    batch = int(next(iter(feeds.values())).shape[0]) if feeds else None
    started = time.perf_counter()
    deadline = started + budget_seconds
    sessions = {}
    for formulation in order:
        if sessions and time.perf_counter() >= deadline:
            break
        session = create_session(builders[formulation](), provider, spinning=False)
        session.inner.run(None, feeds)  # first-run allocations and kernel set-up
        sessions[formulation] = session
    times: Dict[Formulation, List[float]] = {f: [] for f in sessions}
    rounds = 0
    while len(sessions) > 1 and time.perf_counter() < deadline:
        rotated = order[rounds % len(order):] + order[:rounds % len(order)]
        for formulation in (f for f in rotated if f in sessions):
            start = time.perf_counter()
            sessions[formulation].inner.run(None, feeds)
            times[formulation].append(time.perf_counter() - start)
        rounds += 1
    seconds = time.perf_counter() - started
    if rounds < MIN_ROUNDS:
        return FormulationChoice(*default, measured=False, batch=batch, seconds=seconds,
                                 reason=f"the default: the {budget_seconds:g} s budget allowed {rounds} of the "
                                        f"{MIN_ROUNDS} timing rounds needed to compare {len(order)} formulations")
    label = {f: f"{f[0]}/{f[1]}" for f in times}
    median_ms = {label[f]: statistics.median(t) * 1e3 for f, t in times.items()}
    ratios = {label[f]: statistics.median(a / b for a, b in zip(t, times[default])) for f, t in times.items()}
    best = min(times, key=lambda f: ratios[label[f]])
    untimed = [f"{w}/{p}" for w, p in order if (w, p) not in sessions]
    suffix = f"; not timed within the budget: {', '.join(untimed)}" if untimed else ""
    if best == default:
        choice, reason = default, f"the default was fastest{suffix}"
    elif ratios[label[best]] < SWITCH_RATIO:
        choice = best
        reason = f"fastest, {1 - ratios[label[best]]:.1%} faster than the default {label[default]}{suffix}"
    else:
        choice = default
        reason = f"the default: {label[best]} was faster by less than {1 - SWITCH_RATIO:.0%}{suffix}"
    log.info("decompose formulation: %s/%s (%s)", choice[0], choice[1], reason)
    return FormulationChoice(*choice, measured=True, reason=reason, batch=batch, median_ms=median_ms,
                             ratio_to_default=ratios, rounds=rounds, seconds=seconds)
