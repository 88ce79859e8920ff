"""Calibration: per-site statistics from data, with evaluation kept apart.

The samples are split in two halves: the first fits the approximating strategies, the
second judges them (``auto``) and verifies the result, so no strategy is judged on the
samples it was fitted on. One ONNX Runtime session of the runnable reference runs with
every site's input and output exposed, chunk by chunk in runs the model accepts (a fixed
batch of 1 or N included, padding cut off), and each chunk is folded into ``SiteStats``:
memory does not grow with the number of samples. Without data, seeded random pixel-like
samples are used and the result says so loudly.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from ..base.errors import BadInput
from ..maths.stats import SiteStats
from ..runtime.inputs import Samples, input_specs, rows_per_run
from ..runtime.progress import tracked
from ..runtime.providers import resolve_providers
from ..runtime.runnable import RunnableReference

log = logging.getLogger(__name__)

DEFAULT_CALIBRATION_SAMPLES = 64


@dataclass
class Calibration:
    """Statistics per site (keyed by site output) and the held-out evaluation samples."""

    stats: Dict[str, SiteStats]
    evaluation: Samples
    calibration_samples: int
    notes: List[str] = field(default_factory=list)

    @property
    def evaluation_samples(self) -> int:
        return self.evaluation.count


def split_halves(samples: Samples) -> Tuple[Samples, Samples]:
    """(calibration half, evaluation half); needs at least 2 samples.

    Raises:
        BadInput: fewer than 2 samples.
    """
    if samples.count < 2:
        raise BadInput(f"calibration needs at least 2 samples (one to fit, one to evaluate); got {samples.count}")
    return samples.halves()


def calibrate(reference: RunnableReference, samples: Samples, *, provider: str = "cpu",
              drop_nonfinite: bool = False) -> Calibration:
    """Fit statistics for every main-graph site on half the samples; keep the other half.

    Args:
        reference: the original model and its sites, as ONNX Runtime can run them.
        samples: the data (``lrnconv.runtime.inputs.array_samples`` or ``random_samples``).
        provider: where to run the calibration session.
        drop_nonfinite: leave out samples holding NaN or Inf instead of refusing the data.

    Raises:
        BadInput: fewer than 2 samples, or a sample with NaN or Inf (unless dropped).
    """
    notes: List[str] = []
    if not samples.random:
        samples, dropped = samples.finite(drop_nonfinite)
        if dropped:
            notes.append(f"{dropped} sample(s) of {samples.origin} held NaN or Inf and were left out")
    if samples.random:
        notes.append(f"NO CALIBRATION DATA: fitted and evaluated on {samples.description}; approximations "
                     "fitted this way may be far off on real data")
    fit, evaluation = split_halves(samples)
    (provider,) = resolve_providers([provider])
    sites = reference.sites
    reachable = [s for s in sites if not s.graph_path]
    for s in sites:
        if s.graph_path:
            notes.append(f"site '{s.name}' is inside a subgraph ({s.location}); it gets no calibration "
                         "statistics and only exact strategies apply to it")
    exposed: List[str] = list(dict.fromkeys(n for s in reachable for n in (s.input, s.output)))
    stats: Dict[str, SiteStats] = {}
    if exposed:
        session = reference.session(provider, fit, exposed)
        note = reference.note(provider)
        if note:
            notes.append(note)
        rows, pad = rows_per_run(input_specs(reference.model), fit.rows_hint)
        for chunk in tracked(fit.chunks(rows, pad), "calibrating", fit.count):
            values = session.run_chunk(chunk, exposed)
            for s in reachable:
                x, y = values[s.input], values[s.output]
                if s.output not in stats:
                    stats[s.output] = SiteStats(x.shape[1])
                stats[s.output].update(x, y)
    log.info("calibrated %d site(s) on %d samples, %d held out", len(stats), fit.count, evaluation.count)
    return Calibration(stats, evaluation, fit.count, notes)
