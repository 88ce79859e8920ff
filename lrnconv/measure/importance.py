"""How much each LRN matters in this model, on this data: the numbers behind ``inspect --data``.

For every main-graph site, on the given samples (split like calibration: the first half
fits, the second half is held out and everything below is measured on it):

* **unexplained energy**: the share of the site's output energy ``sum y^2`` that no
  per-channel scale explains, ``min_s sum (y - s_c x)^2 / sum y^2`` (what ``fold`` cannot
  capture even with the best scale for these very samples), and the same with a per-channel
  scale and shift (``bn``'s ``y ~ a_c x + b_c``). From streaming sums (``SiteStats``).
* **divisor**: the distribution of ``d = (bias + alpha/size * sum x^2)^beta`` over every
  element of the site (``LogHistogram``: percentiles in fixed memory). A divisor that is
  nearly constant is one a scale can stand in for; one near 1 is one removing drops little.
* **alone**: the end-to-end effect of rewriting *that site alone* (every other site kept
  as it is) with each strategy asked for (by default ``remove`` and ``fold``, the cheap
  ones): top-1 agreement with the original, cosine and max-rel at every output. The
  approximating strategies are fitted on the first half.
* with ``quantize``, the same per strategy for the INT8 models (quantized on the first
  half), next to the INT8 model of the original itself (every LRN left in float).

The verdict, per site, first rule that holds (``tolerance`` is ``auto``'s):

* ``negligible`` — removing it alone is within tolerance: drop it;
* ``foldable`` — removing it is not, folding it alone is: a free per-channel scale;
* ``important`` — neither is: keep it exact (``decompose`` or ``keep``).

Sites are ranked by how much removing them alone costs: lowest top-1 agreement first
(cosine where there are no class scores), then lowest cosine, then largest max-rel.

Everything streams: one reference session with every site's tensors exposed and one
session per candidate run chunk by chunk over the held-out half, so memory does not grow
with the number of samples.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnx

from ..base.errors import LrnConvError, UsageError
from ..engine.plan import rewrite
from ..engine.protocol import SiteRecord
from ..graph.families import Family
from ..graph.preserve import EditableModel
from ..graph.sites import LrnSite
from ..maths.divisor import LogHistogram, lrn_divisor
from ..maths.drift import Drift, DriftMeter, Tolerance
from ..maths.stats import SiteStats
from ..passes import AUTO_ORDER, REGISTRY
from ..runtime.inputs import Samples, input_specs, rows_per_run
from ..runtime.progress import tracked
from ..runtime.providers import resolve_providers
from ..runtime.runnable import RunnableReference
from ..runtime.sessions import RuntimeRefused, create_session
from .calibration import calibrate, split_halves
from .quantization import Int8Options, quantize_model, rewrite_nodes

log = logging.getLogger(__name__)

DEFAULT_STRATEGIES = ("remove", "fold")
NEGLIGIBLE, FOLDABLE, IMPORTANT = "negligible", "foldable", "important"
KEEP = "keep"


def _summary(drifts: Mapping[str, Drift]) -> Dict[str, object]:
    """The worst over the outputs: top-1 agreement, cosine, max-rel, NaN/Inf count."""
    tops = [d.top1 for d in drifts.values() if d.top1 is not None]
    return {"top1": min(tops) if tops else None, "cosine": min(d.cosine for d in drifts.values()),
            "max_rel": max(d.max_rel for d in drifts.values()),
            "nonfinite": sum(d.nonfinite for d in drifts.values())}


@dataclass
class Effect:
    """The end-to-end effect of one model variant against the original, worst over the outputs."""

    outputs: Dict[str, Drift]
    accepted: bool
    """Within the tolerance the verdicts are judged by."""

    @property
    def top1(self) -> Optional[float]:
        return _summary(self.outputs)["top1"]

    @property
    def cosine(self) -> float:
        return _summary(self.outputs)["cosine"]

    @property
    def max_rel(self) -> float:
        return _summary(self.outputs)["max_rel"]

    def to_dict(self) -> Dict[str, object]:
        return dict(_summary(self.outputs), accepted=self.accepted,
                    outputs={k: v.to_dict() for k, v in self.outputs.items()})


@dataclass
class Alone:
    """One strategy applied to one site alone: float, and INT8 when asked for."""

    strategy: str
    status: str
    """``exact`` or ``approximate`` (the strategy's own verdict for the site)."""
    float: Optional[Effect] = None
    int8: Optional[Effect] = None
    error: Optional[str] = None
    """Why it could not be measured (not applicable, refused by ONNX Runtime ...)."""

    def to_dict(self) -> Dict[str, object]:
        return {"strategy": self.strategy, "status": self.status, "error": self.error,
                "float": self.float.to_dict() if self.float else None,
                "int8": self.int8.to_dict() if self.int8 else None}


@dataclass
class SiteImportance:
    """What one LRN site does on the data, and the verdict."""

    site: LrnSite
    unexplained: float
    """Share of the output energy no per-channel scale explains (best scale on the held-out half)."""
    unexplained_affine: float
    """The same with a per-channel scale and shift."""
    divisor: LogHistogram
    alone: Dict[str, Alone]
    verdict: str = ""
    rule: str = ""
    rank: int = 0
    """1 = the site whose removal costs most."""

    def to_dict(self) -> Dict[str, object]:
        return {"name": self.site.name, "output": self.site.output, "rank": self.rank, "verdict": self.verdict,
                "rule": self.rule, "unexplained_energy": self.unexplained,
                "unexplained_energy_affine": self.unexplained_affine, "divisor": self.divisor.summary(),
                "alone": {k: v.to_dict() for k, v in self.alone.items()}}


@dataclass
class Importance:
    """Every site's importance, the ranking, and how it was measured."""

    sites: List[SiteImportance]
    tolerance: Tolerance
    calibration_samples: int
    evaluation_samples: int
    inputs: str
    int8_original: Optional[Effect] = None
    """The INT8 model of the original (every LRN left in float), when quantization was asked for."""
    int8_settings: Optional[str] = None
    notes: List[str] = field(default_factory=list)

    @property
    def ranking(self) -> List[SiteImportance]:
        return sorted(self.sites, key=lambda s: s.rank)

    def site(self, name: str) -> SiteImportance:
        for s in self.sites:
            if s.site.name == name or s.site.output == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> Dict[str, object]:
        return {"tolerance": self.tolerance.to_dict(), "calibration_samples": self.calibration_samples,
                "evaluation_samples": self.evaluation_samples, "inputs": self.inputs,
                "ranking": [s.site.name for s in self.ranking],
                "int8": {"quantizer": self.int8_settings,
                         "original": self.int8_original.to_dict() if self.int8_original else None}
                if self.int8_settings else None,
                "notes": list(self.notes)}


def unexplained_energy(stats: SiteStats) -> Tuple[float, float]:
    """(scale only, scale and shift): share of sum y^2 the best per-channel fit leaves."""
    scale = stats.scale()
    a, b = stats.affine()
    return stats.residual_rms(scale, np.zeros_like(scale)) ** 2, stats.residual_rms(a, b) ** 2


def site_divisor(site: LrnSite, x: np.ndarray) -> np.ndarray:
    """The site's divisor on its input ``x`` (float64)."""
    return lrn_divisor(x, size=site.size, alpha=site.alpha, beta=site.beta, bias=site.bias, window=site.window,
                       spatial=site.family is Family.CAFFE_WITHIN, alpha_divided=site.family is not Family.TF_PATTERN)


def rank_key(alone: Optional[Alone]) -> Tuple[float, float, float]:
    """Sort key: most damaging removal first."""
    if alone is None or alone.float is None:
        return (float("inf"), float("inf"), float("-inf"))
    e = alone.float
    top1 = e.top1 if e.top1 is not None else e.cosine
    return (top1, e.cosine, -e.max_rel)


def _verdict(importance: SiteImportance, tolerance: Tolerance, samples: int) -> Tuple[str, str]:
    def numbers(effect: Effect) -> str:
        def bound(value: float, limit: float, low: bool, text: str) -> str:
            ok = value >= limit if low else value <= limit
            return text.format(value=value, limit=limit, op=(">=" if ok else "<") if low else ("<=" if ok else ">"))

        parts = []
        if effect.top1 is not None:
            parts.append(bound(effect.top1, tolerance.top1, True, "top-1 {value:.2%} {op} {limit:.2%}"))
        parts.append(bound(effect.cosine, tolerance.cosine, True, "cosine {value:.5f} {op} {limit:g}"))
        if tolerance.max_rel is not None:
            parts.append(bound(effect.max_rel, tolerance.max_rel, False, "max rel {value:.3g} {op} {limit:g}"))
        if effect.outputs and any(d.nonfinite for d in effect.outputs.values()):
            parts.append("NaN/Inf in the outputs")
        return ", ".join(parts)

    remove, fold = importance.alone.get("remove"), importance.alone.get("fold")
    held = f"on {samples} held-out samples"
    if remove is not None and remove.float is not None and remove.float.accepted:
        return NEGLIGIBLE, f"removing it alone keeps {numbers(remove.float)} {held}: within tolerance"
    if fold is not None and fold.float is not None and fold.float.accepted:
        lead = f"removing it alone does not ({numbers(remove.float)}); " if remove and remove.float else ""
        return FOLDABLE, f"{lead}folding it alone keeps {numbers(fold.float)} {held}: within tolerance"
    parts = []
    for name, alone in (("removing", remove), ("folding", fold)):
        if alone is None:
            continue
        parts.append(f"{name} it alone gives {numbers(alone.float)}" if alone.float is not None
                     else f"{name} it is not possible ({alone.error})")
    return IMPORTANT, ("; ".join(parts) + f" {held}: outside tolerance" if parts
                       else "neither removing nor folding it was measured")


def measure_importance(reference: RunnableReference, samples: Samples, *, provider: str = "cpu",
                       tolerance: Optional[Tolerance] = None, strategies: Sequence[str] = DEFAULT_STRATEGIES,
                       quantize: Optional[Int8Options] = None, options: Optional[Mapping[str, object]] = None,
                       drop_nonfinite: bool = False) -> Importance:
    """Measure every main-graph site's importance on ``samples`` (see the module docstring).

    Args:
        reference: the original as ONNX Runtime can run it, with its sites.
        samples: at least 2; the first half fits, the second is held out.
        strategies: those applied to each site alone; ``remove`` and ``fold`` are always
            measured (the verdict needs them). Defaults to remove and fold.
        quantize: also measure the INT8 model of each variant and of the original.
        options: strategy options (``decompose``: window, power).

    Raises:
        UsageError: an unknown strategy.
        BadInput: fewer than 2 samples, or samples with NaN or Inf (unless dropped).
    """
    tolerance = tolerance or Tolerance()
    wanted = list(dict.fromkeys(list(DEFAULT_STRATEGIES) + list(strategies)))
    for name in wanted:
        if name not in REGISTRY or name == KEEP:
            raise UsageError(f"unknown strategy '{name}' for importance; choose from "
                             f"{', '.join(s.name for s in AUTO_ORDER)}")
    (provider,) = resolve_providers([provider])
    notes: List[str] = []
    if not samples.random:
        samples, dropped = samples.finite(drop_nonfinite)
        if dropped:
            notes.append(f"{dropped} sample(s) of {samples.origin} held NaN or Inf and were left out")
    fit, _ = split_halves(samples)
    fitted = calibrate(reference, samples, provider=provider)
    evaluation = fitted.evaluation
    notes.extend(fitted.notes)
    sites = [s for s in reference.sites if not s.graph_path]
    model = reference.model
    graphs = EditableModel(model)
    others = "decompose" if reference.is_exact(provider) else KEEP
    if others != KEEP:
        notes.append("ONNX Runtime cannot run the original as it is; every site not under test is decomposed "
                     "(exact) instead of kept")

    variants: Dict[Tuple[str, str], onnx.ModelProto] = {}
    records_of: Dict[Tuple[str, str], List[SiteRecord]] = {}
    alone: Dict[str, Dict[str, Alone]] = {s.output: {} for s in sites}
    for site in sites:
        for name in wanted:
            strategy = REGISTRY[name]
            verdict = strategy.check(site, graphs)
            entry = Alone(name, verdict.status.value)
            alone[site.output][name] = entry
            if not verdict.applicable:
                entry.error = verdict.reason
                continue
            plan = {s.output: (name if s.output == site.output else others) for s in reference.sites}
            try:
                variants[(site.output, name)], records_of[(site.output, name)] = rewrite(
                    model, plan, sites=reference.sites, stats=fitted.stats, options=options)
            except LrnConvError as exc:
                entry.error = f"the rewrite failed: {exc}"

    int8_models: Dict[Tuple[str, str], onnx.ModelProto] = {}
    int8_settings = None
    if quantize is not None:
        int8_settings = quantize.settings().describe()
        original, _ = quantize_model(model, fit, quantize)
        int8_models[("", KEEP)] = original.model
        notes.extend(n for n in original.notes if n not in notes)
        for key, variant in variants.items():
            site_nodes = rewrite_nodes(model, variant, records_of[key])
            decomposition = [n for n, (_, s) in site_nodes.items() if s == "decompose"]
            try:
                int8_models[key] = quantize_model(variant, fit, quantize, decomposition_nodes=decomposition)[0].model
            except LrnConvError as exc:
                alone[key[0]][key[1]].error = f"INT8 quantization failed: {exc}"

    outputs = [o.name for o in model.graph.output]
    exposed = list(dict.fromkeys(outputs + [n for s in sites for n in (s.input, s.output)]))
    session = reference.session(provider, evaluation, exposed)
    sessions = {}
    for kind, models in (("float", variants), ("int8", int8_models)):
        for key, candidate in models.items():
            try:
                sessions[(kind,) + key] = create_session(candidate, provider, outputs)
            except RuntimeRefused as refusal:
                if key[0]:
                    alone[key[0]][key[1]].error = f"ONNX Runtime refused the {kind} model: {refusal}"
                else:
                    notes.append(f"ONNX Runtime refused the INT8 model of the original: {refusal}")
    meters = {key: {o: DriftMeter() for o in outputs} for key in sessions}
    held_stats = {s.output: SiteStats(s.channels or 1) for s in sites}
    divisors = {s.output: LogHistogram() for s in sites}
    rows, pad = rows_per_run(input_specs(model), evaluation.rows_hint)
    failed = set()
    for chunk in tracked(evaluation.chunks(rows, pad), "importance", evaluation.count):
        expected = session.run_chunk(chunk, exposed)
        for s in sites:
            x, y = expected[s.input], expected[s.output]
            if held_stats[s.output].channels != x.shape[1]:
                held_stats[s.output] = SiteStats(x.shape[1])
            held_stats[s.output].update(x, y)
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                divisors[s.output].update(site_divisor(s, x))
        for key, candidate_session in sessions.items():
            if key in failed:
                continue
            try:
                got = candidate_session.run_chunk(chunk, outputs)
            except RuntimeRefused as refusal:
                failed.add(key)
                if key[1]:
                    alone[key[1]][key[2]].error = f"ONNX Runtime failed running the {key[0]} model: {refusal}"
                continue
            for o in outputs:
                meters[key][o].update(got[o], expected[o])

    def effect(key) -> Optional[Effect]:
        if key not in meters or key in failed:
            return None
        drifts = {o: m.result() for o, m in meters[key].items()}
        return Effect(drifts, all(tolerance.accepts(d) for d in drifts.values()))

    results: List[SiteImportance] = []
    for s in sites:
        for name, entry in alone[s.output].items():
            entry.float = effect(("float", s.output, name))
            entry.int8 = effect(("int8", s.output, name))
        scale_share, affine_share = unexplained_energy(held_stats[s.output])
        importance = SiteImportance(s, scale_share, affine_share, divisors[s.output], alone[s.output])
        importance.verdict, importance.rule = _verdict(importance, tolerance, evaluation.count)
        results.append(importance)
    for rank, importance in enumerate(sorted(results, key=lambda i: rank_key(i.alone.get("remove"))), start=1):
        importance.rank = rank
    for s in reference.sites:
        if s.graph_path:
            notes.append(f"site '{s.name}' is inside a subgraph ({s.location}); its importance is not measured")
    log.info("importance of %d site(s) on %d held-out samples", len(results), evaluation.count)
    return Importance(results, tolerance, fitted.calibration_samples, evaluation.count,
                      evaluation.description, effect(("int8", "", KEEP)), int8_settings, notes)
