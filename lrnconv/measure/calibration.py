"""Calibration: per-site statistics from data, with evaluation kept apart.

The data is split in two halves: the first fits the approximating strategies, the
second judges them (``auto``) and verifies the result, so no strategy is judged on the
samples it was fitted on. One ONNX Runtime session of the runnable reference runs with
every site's input and output exposed, batch by batch, and each batch is folded into
``SiteStats`` (memory does not grow with the number of samples). Without data, seeded
random pixel-like inputs are used and the result says so loudly.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional

import numpy as np

from ..base.errors import BadInput
from ..maths.stats import SiteStats
from ..runtime.inputs import PIXEL_HIGH, PIXEL_LOW, random_inputs
from ..runtime.providers import resolve_providers
from ..runtime.runnable import RunnableReference
from ..runtime.sessions import DEFAULT_BATCH

log = logging.getLogger(__name__)

DEFAULT_CALIBRATION_SAMPLES = 64


@dataclass
class Calibration:
    """Statistics per site (keyed by site output) and the held-out evaluation inputs."""

    stats: Dict[str, SiteStats]
    evaluation: Dict[str, np.ndarray]
    calibration_samples: int
    evaluation_samples: int
    notes: List[str] = field(default_factory=list)


def split_halves(inputs: Mapping[str, np.ndarray]):
    """(calibration half, evaluation half) along the leading axis; needs >= 2 samples."""
    total = next(iter(inputs.values())).shape[0]
    if total < 2:
        raise BadInput(f"calibration needs at least 2 samples (one to fit, one to evaluate); got {total}")
    half = (total + 1) // 2
    return {k: v[:half] for k, v in inputs.items()}, {k: v[half:] for k, v in inputs.items()}


def calibrate(reference: RunnableReference, inputs: Optional[Mapping[str, np.ndarray]] = None, *,
              samples: int = DEFAULT_CALIBRATION_SAMPLES, seed: int = 0, provider: str = "cpu",
              batch_size: int = DEFAULT_BATCH) -> Calibration:
    """Fit statistics for every main-graph site on half the data; keep the other half.

    Args:
        reference: the original model and its sites, as ONNX Runtime can run them.
        inputs: arrays keyed by input name, leading axis = samples. Defaults to None:
            ``samples`` seeded random pixel-like inputs, and a loud note.
        provider: where to run the calibration session.
    """
    notes: List[str] = []
    if inputs is None:
        inputs = random_inputs(reference.model, samples, seed)
        notes.append(f"NO CALIBRATION DATA: fitted and evaluated on {samples} seeded random inputs "
                     f"(uniform [{PIXEL_LOW:g}, {PIXEL_HIGH:g}), seed {seed}); approximations fitted "
                     "this way may be far off on real data")
    fit, evaluation = split_halves(inputs)
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
        for batch in session.batches(fit, batch_size, exposed):
            for s in reachable:
                x, y = batch[s.input], batch[s.output]
                if s.output not in stats:
                    stats[s.output] = SiteStats(x.shape[1])
                stats[s.output].update(x, y)
    count = next(iter(fit.values())).shape[0]
    held = next(iter(evaluation.values())).shape[0]
    log.info("calibrated %d site(s) on %d samples, %d held out", len(stats), count, held)
    return Calibration(stats, evaluation, count, held, notes)
