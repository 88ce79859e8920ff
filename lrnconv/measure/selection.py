"""``auto``: per site, the cheapest strategy whose measured end-to-end drift is tolerable.

A selection, not a rewrite: it walks ``lrnconv.passes.AUTO_ORDER`` (remove, fold, bn, l2,
decompose) and, for each site in graph (topological) order, rewrites a trial copy of the
model with every earlier site's choice in place, this site's candidate, and every later
site decomposed (exact, and runnable where ONNX Runtime refuses the original LRN). The
trial runs on the held-out evaluation half of the calibration samples, chunk by chunk, and
is accepted when every output passes the tolerance. Exact candidates are accepted without a
run; ``decompose`` is the exact fallback. Every candidate that is not taken is recorded with
the reason: not applicable on this graph, no statistics, outside the tolerance (with the
numbers), or refused by ONNX Runtime; the walk goes on to the next.

With ``prepare`` (``--quantize int8``), each trial model is first turned into the model the
candidate is judged by (its INT8 model, ``lrnconv.measure.quantization.int8_trial``), and every
candidate is measured, exact ones included: a rewrite that is exact in float can still drift
after quantization. Where no candidate's prepared model is within tolerance, ``decompose`` is
the fallback as before, and the attempts say that it was outside too.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnx

from ..base.errors import LrnConvError
from ..engine.plan import rewrite
from ..engine.protocol import EXACT, Attempt, SiteRecord
from ..graph.preserve import EditableModel
from ..maths.drift import DriftMeter, Tolerance
from ..maths.stats import SiteStats
from ..passes import AUTO_FALLBACK, AUTO_ORDER
from ..runtime.inputs import input_specs, rows_per_run
from ..runtime.progress import tracked
from ..runtime.providers import resolve_providers
from ..runtime.runnable import RunnableReference
from ..runtime.sessions import RuntimeRefused, create_session
from .calibration import Calibration

log = logging.getLogger(__name__)


def _describe(drifts) -> str:
    worst_cos = min(d.cosine for d in drifts.values())
    tops = [d.top1 for d in drifts.values() if d.top1 is not None]
    text = f"cosine {worst_cos:.6f}"
    if tops:
        text += f", top-1 {min(tops):.4f}"
    text += f", max rel {max(d.max_rel for d in drifts.values()):.3g}"
    bad = sum(d.nonfinite for d in drifts.values())
    return text + (f", {bad} NaN/Inf" if bad else "")


Prepare = Callable[[onnx.ModelProto, Sequence[SiteRecord], onnx.ModelProto], onnx.ModelProto]
"""(trial model, its records, the original) -> the model the trial is judged by."""


def select(reference: RunnableReference, calibration: Optional[Calibration], tolerance: Tolerance,
           provider: str, *, stats: Mapping[str, SiteStats], options: Mapping[str, object],
           prepare: Optional[Prepare] = None, label: str = ""
           ) -> Tuple[Dict[str, str], Dict[str, List[Attempt]]]:
    """Choose a strategy per site.

    Args:
        prepare: turns each trial model into the model it is judged by (e.g. its INT8 model);
            every candidate, exact ones included, is then measured. Defaults to None.
        label: what the measured model is called in the attempts' reasons (``INT8``).

    Returns:
        (plan: site output -> strategy name, attempts: site output -> what was tried, in order).
    """
    (provider,) = resolve_providers([provider])
    sites = reference.sites
    graphs = EditableModel(reference.model)  # read only: the checks see the original graph
    evaluation = calibration.evaluation if calibration is not None else None
    outputs = [o.name for o in reference.model.graph.output]
    expected: Optional[List[Dict[str, np.ndarray]]] = None
    if evaluation is not None:
        rows, pad = rows_per_run(input_specs(reference.model), evaluation.rows_hint)
        session = reference.session(provider, evaluation, outputs)
        expected = [session.run_chunk(chunk, outputs)  # outputs only
                    for chunk in tracked(evaluation.chunks(rows, pad), "auto: the reference", evaluation.count)]

    plan: Dict[str, str] = {}
    attempts: Dict[str, List[Attempt]] = {}
    for index, site in enumerate(sites):
        tried: List[Attempt] = []
        for strategy in AUTO_ORDER:
            verdict = strategy.check(site, graphs)
            if not verdict.applicable:
                tried.append(Attempt(strategy.name, False, verdict.reason))
                continue
            if verdict.status == EXACT and (prepare is None or expected is None):
                tried.append(Attempt(strategy.name, True, f"exact: {verdict.reason}"))
                plan[site.output] = strategy.name
                break
            if expected is None or (strategy.needs_stats(site) and site.output not in stats):
                tried.append(Attempt(strategy.name, False, "approximate and no calibration statistics for this site"))
                continue
            trial = dict(plan)
            trial[site.output] = strategy.name
            trial.update({later.output: AUTO_FALLBACK.name for later in sites[index + 1:]})
            meters = {o: DriftMeter() for o in outputs}
            try:
                candidate, records = rewrite(reference.model, trial, sites=sites, stats=stats, options=options)
                if prepare is not None:
                    candidate = prepare(candidate, records, reference.model)
                trial_session = create_session(candidate, provider)
                trial_chunks = tracked(evaluation.chunks(rows, pad), f"auto: {site.name} {strategy.name}",
                                       evaluation.count)
                for chunk, reference_outputs in zip(trial_chunks, expected):
                    got = trial_session.run_chunk(chunk, outputs)
                    for o in outputs:
                        meters[o].update(got[o], reference_outputs[o])
            except RuntimeRefused as refusal:
                tried.append(Attempt(strategy.name, False, f"ONNX Runtime refused the trial model: {refusal}"))
                continue
            except LrnConvError as exc:
                tried.append(Attempt(strategy.name, False, f"the trial rewrite failed: {exc}"))
                continue
            drifts = {o: m.result() for o, m in meters.items()}
            accepted = all(tolerance.accepts(d) for d in drifts.values())
            measured = f"{label} " if label else ""
            tried.append(Attempt(strategy.name, accepted,
                                 f"{measured}{'within' if accepted else 'outside'} tolerance: {_describe(drifts)}"))
            log.debug("auto %s %s: %s", site.name, strategy.name, tried[-1].reason)
            if accepted:
                plan[site.output] = strategy.name
                break
        else:
            plan[site.output] = AUTO_FALLBACK.name
        attempts[site.output] = tried
    return plan, attempts
