"""``auto``: per site, the cheapest strategy whose measured end-to-end drift is tolerable.

A selection, not a rewrite: it walks the registry in cost order (remove < fold < bn <
l2 < decompose) and, for each site in graph (topological) order, rewrites a trial copy
of the model with every earlier site's choice in place, this site's candidate, and
every later site decomposed (exact, and runnable where ONNX Runtime refuses the
original LRN). The trial runs on the held-out evaluation half of the calibration data
and is accepted when every output passes the tolerance. Exact candidates are accepted
without a run; ``decompose`` is the exact fallback.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import onnx

from .calibrate import Calibration
from .drift import Tolerance, compare
from .runtime import create_session, resolve_providers
from .sites import LrnSite
from .strategy import EXACT, NOT_APPLICABLE
from .verify import DEFAULT_BATCH, reference_session

log = logging.getLogger(__name__)

FALLBACK = "decompose"


def _describe(drifts) -> str:
    worst_cos = min(d.cosine for d in drifts.values())
    tops = [d.top1 for d in drifts.values() if d.top1 is not None]
    text = f"cosine {worst_cos:.6f}"
    if tops:
        text += f", top-1 {min(tops):.4f}"
    return text + f", max rel {max(d.max_rel for d in drifts.values()):.3g}"


def select(reference_bytes: bytes, sites: Sequence[LrnSite], calibration: Optional[Calibration],
           tolerance: Tolerance, provider: str, options: Mapping[str, object]
           ) -> Tuple[Dict[str, str], Dict[str, List[Dict[str, object]]]]:
    """Choose a strategy per site.

    Returns:
        (plan: site output -> strategy name, attempts: site output -> what was tried,
        each with the strategy, whether it was accepted and why).
    """
    from .convert import rewrite, strategies

    ordered = [s for s in sorted(strategies().values(), key=lambda s: s.cost) if s.cost <= strategies()[FALLBACK].cost]
    (provider,) = resolve_providers([provider])
    reference = onnx.ModelProto()
    reference.ParseFromString(reference_bytes)
    evaluation = calibration.evaluation if calibration is not None else None
    expected = None
    if evaluation is not None:
        session, _ = reference_session(reference, provider, evaluation)
        outputs = [o.name for o in reference.graph.output]
        expected = session.run(evaluation, DEFAULT_BATCH, outputs)
    stats = options.get("stats", {})

    plan: Dict[str, str] = {}
    attempts: Dict[str, List[Dict[str, object]]] = {}
    for index, site in enumerate(sites):
        tried: List[Dict[str, object]] = []
        for strategy in ordered:
            verdict = strategy.check(site)
            if verdict.status == NOT_APPLICABLE:
                tried.append({"strategy": strategy.name, "accepted": False, "reason": verdict.reason})
                continue
            if verdict.status == EXACT:
                tried.append({"strategy": strategy.name, "accepted": True, "reason": f"exact: {verdict.reason}"})
                plan[site.output] = strategy.name
                break
            if expected is None or (getattr(strategy, "needs_calibration", False) and site.output not in stats):
                tried.append({"strategy": strategy.name, "accepted": False,
                              "reason": "approximate and no calibration statistics for this site"})
                continue
            trial = dict(plan)
            trial[site.output] = strategy.name
            trial.update({later.output: FALLBACK for later in sites[index + 1:]})
            model = onnx.ModelProto()
            model.ParseFromString(reference_bytes)
            candidate, _ = rewrite(model, trial, inplace=True, options=options, sites=sites)
            got = create_session(candidate, provider).run(evaluation, DEFAULT_BATCH, list(expected))
            drifts = {name: compare(got[name], expected[name]) for name in expected}
            accepted = all(tolerance.accepts(d) for d in drifts.values())
            tried.append({"strategy": strategy.name, "accepted": accepted,
                          "reason": ("within" if accepted else "outside") + f" tolerance: {_describe(drifts)}"})
            log.debug("auto %s %s: %s", site.name, strategy.name, tried[-1]["reason"])
            if accepted:
                plan[site.output] = strategy.name
                break
        else:
            plan[site.output] = FALLBACK
        attempts[site.output] = tried
    return plan, attempts
