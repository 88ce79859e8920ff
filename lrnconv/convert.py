"""``convert``: load -> find_lrn -> rewrite each site -> restore -> (verify).

The one orchestration point of the library. Each site is handed to the chosen
strategy from the registry; the graph is edited with onnx-graphsurgeon and spliced
back into the original ``ModelProto`` by ``EditableModel.commit`` (nothing untouched is
lost, no weight is copied). Verification, when asked for, compares against the model
as it was before the rewrite.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import onnx

from .calibrate import DEFAULT_CALIBRATION_SAMPLES, Calibration, calibrate
from .drift import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance
from .errors import UnsupportedModel, UsageError
from .formulation import AUTO as FORMULATION_AUTO, DEFAULT_BUDGET_SECONDS, FormulationChoice, candidates, fastest
from .inputs import random_inputs
from .passes.decompose import DEFAULT_POWER, DEFAULT_WINDOW
from .preserve import EditableModel
from .sites import SITES_METADATA_KEY, LrnSite, declared_sites, find_lrn
from .strategy import EXACT, NOT_APPLICABLE, NameAllocator, RewriteContext, SiteRecord
from .runtime import resolve_providers
from .verify import DEFAULT_SAMPLES, DriftReport, verify as run_verify

log = logging.getLogger(__name__)

AUTO = "auto"


def strategies():
    """The registry of strategies (name -> object), cheapest first."""
    from .passes import REGISTRY

    return REGISTRY


@dataclass(frozen=True)
class VerifyOptions:
    """How ``convert`` verifies its result (see ``lrnconv.verify``)."""

    inputs: Optional[Mapping[str, np.ndarray]] = None
    providers: Sequence[str] = ("cpu",)
    samples: int = DEFAULT_SAMPLES
    seed: int = 0
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL


@dataclass
class ConversionResult:
    """The converted model, what happened at each site, and the verification verdict."""

    model: onnx.ModelProto
    strategy: str
    sites: List[SiteRecord]
    verify: Optional[DriftReport] = None
    notes: List[str] = field(default_factory=list)
    formulation: Optional[FormulationChoice] = None
    """decompose's formulation when the options asked for ``auto`` (what was timed, what won)."""

    @property
    def passed(self) -> bool:
        """True unless verification ran and failed."""
        return self.verify is None or self.verify.passed

    def to_dict(self, input_path: Optional[str] = None, output_path: Optional[str] = None) -> Dict[str, object]:
        found = {"input": input_path, "output": output_path, "strategy": self.strategy,
                 "sites": [r.to_dict() for r in self.sites],
                 "verify": self.verify.to_dict() if self.verify is not None else None,
                 "notes": list(self.notes)}
        if self.formulation is not None:  # only when asked for: the report keeps its documented keys
            found["formulation"] = self.formulation.to_dict()
        return found


def rewrite(model: onnx.ModelProto, plan: Mapping[str, str], *, inplace: bool = False,
            options: Optional[Mapping[str, object]] = None,
            sites: Optional[Sequence[LrnSite]] = None) -> Tuple[onnx.ModelProto, List[SiteRecord]]:
    """Apply a per-site plan (site output -> strategy name); the one place passes run.

    Args:
        sites: the model's sites when the caller already has them. Defaults to None
            (discovered here).

    Raises:
        UnsupportedModel: a strategy cannot handle its site (the reason names it).
    """
    registry = strategies()
    sites = find_lrn(model) if sites is None else sites
    for site in sites:
        verdict = registry[plan[site.output]].check(site)
        if verdict.status == NOT_APPLICABLE:
            raise UnsupportedModel(f"strategy '{plan[site.output]}' cannot rewrite LRN '{site.name}': {verdict.reason}")
    target = model
    if not inplace:
        target = onnx.ModelProto()
        target.CopyFrom(model)
    editable = EditableModel(target)
    ctx = RewriteContext(editable, NameAllocator(editable.all_names()), dict(options or {}))
    records: List[SiteRecord] = []
    carriers: Dict[str, str] = {}
    for site in sites:
        if site.input in carriers:  # an earlier site was bypassed: its input carries the value now
            site = dataclasses.replace(site, input=carriers[site.input])
        record = registry[plan[site.output]].rewrite(ctx, site)
        carrier = record.details.get("tensor")
        if carrier and carrier != site.output:
            carriers[site.output] = carrier
        log.debug("%s: %s %s (%s)", site.name, record.strategy, record.status, record.reason)
        records.append(record)
    converted = editable.commit()
    _forget_rewritten_sites(converted, records)
    return converted, records


def _forget_rewritten_sites(model: onnx.ModelProto, records: Sequence[SiteRecord]) -> None:
    """Drop importer-declared sites that no longer exist, so a later find_lrn does not see them."""
    declared = declared_sites(model)
    if not declared:
        return
    gone = {r.site.name for r in records
            if (r.site.is_node and r.strategy != "keep") or (not r.site.is_node and r.strategy not in ("keep", "decompose"))}
    kept = [entry for name, entry in declared.items() if name not in gone]
    for prop in model.metadata_props:
        if prop.key == SITES_METADATA_KEY:
            prop.value = json.dumps(kept)


def convert(model: onnx.ModelProto, strategy: str = "decompose", *,
            calibration: Optional[Mapping[str, np.ndarray]] = None,
            tolerance: Optional[Tolerance] = None, verify: Optional[VerifyOptions] = None,
            inplace: bool = False, options: Optional[Mapping[str, object]] = None,
            calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES) -> ConversionResult:
    """Rewrite every LRN site of ``model`` with ``strategy``.

    Approximating strategies (``fold``, ``bn``, ``l2``, and ``auto``) fit their parameters
    on the first half of ``calibration``; the second half is what ``auto`` judges them
    on and what verification runs on, so nothing is judged on the samples it was fitted
    on. The default is ``decompose`` (exact), so that nothing is approximated unless asked.

    Args:
        model: the model; left untouched unless ``inplace``.
        strategy: ``auto`` or a name from ``lrnconv.passes.REGISTRY``.
        calibration: arrays keyed by input name, leading axis = samples. Defaults to None:
            seeded random pixel-like inputs, with a loud note (approximating strategies only).
        tolerance: what ``auto`` accepts, and what verification of an approximate result
            is judged by. Defaults to ``Tolerance()`` (top-1 >= 99.5 %, cosine >= 0.999).
        verify: verify the result against the original with these options. Defaults to
            None (no verification).
        inplace: edit ``model`` itself (saves a copy of the weights; the CLI uses it).
        options: strategy options. ``decompose``: ``window``, ``power`` (a formulation name,
            or ``auto``: timed on this machine, see ``lrnconv.formulation``), and for
            ``auto`` ``tune_seconds`` (the timing budget; 0 = the default formulation, not
            timed; defaults to 30) and ``tune_batch`` (the batch it is timed at, for models
            whose batch is not fixed; defaults to 1).

    Raises:
        UsageError: unknown strategy.
        UnsupportedModel: the strategy cannot handle a site (the reason names it).
    """
    registry = strategies()
    if strategy not in registry and strategy != AUTO:
        raise UsageError(f"unknown strategy '{strategy}'; choose from {', '.join(list(registry) + [AUTO])}")
    sites = find_lrn(model)
    tolerance = tolerance or Tolerance()
    notes: List[str] = [] if sites else ["no LRN site found; the model is unchanged"]
    options = dict(options or {})
    fitted: Optional[Calibration] = None
    provider = (verify.providers[0] if verify is not None and verify.providers else "cpu")
    formulation = None
    if sites and FORMULATION_AUTO in (options.get("window"), options.get("power")):
        formulation = _choose_formulation(model, sites, options, provider)
        options.update(window=formulation.window, power=formulation.power)
        notes.append(formulation.note())
    if "stats" not in options and _needs_statistics(strategy, sites):
        fitted = calibrate(model, sites, calibration, samples=calibration_samples, provider=provider)
        options["stats"] = fitted.stats
        notes.extend(fitted.notes)

    reference_bytes = model.SerializeToString() if (verify is not None or strategy == AUTO) else None
    choices: Dict[str, List[Dict[str, object]]] = {}
    if strategy == AUTO:
        from .auto import select

        plan, choices = select(reference_bytes, sites, fitted, tolerance, provider, options)
    else:
        plan = {s.output: strategy for s in sites}
    converted, records = rewrite(model, plan, inplace=inplace, options=options, sites=sites)
    for record in records:
        if record.site.output in choices:
            record.details["auto"] = choices[record.site.output]
    result = ConversionResult(converted, strategy, records, notes=notes, formulation=formulation)
    if verify is not None:
        reference = onnx.ModelProto()
        reference.ParseFromString(reference_bytes)
        del reference_bytes
        approximate = any(r.status != EXACT for r in records)
        inputs = verify.inputs
        if inputs is None and fitted is not None:
            inputs = fitted.evaluation
            result.notes.append(f"verified on the {fitted.evaluation_samples} held-out samples "
                                f"(the second half of the data; the first {fitted.calibration_samples} fitted it)")
        elif inputs is None and calibration is not None:
            inputs = calibration  # nothing was fitted on it, so all of it is fair to verify on
        site_tensors = {r.site.output: r.details.get("tensor", r.site.output) for r in records}
        site_tensors = {k: v for k, v in site_tensors.items() if v is not None}  # folded forward: none
        result.verify = run_verify(reference, converted, inputs, verify.providers,
                                   samples=verify.samples, seed=verify.seed, atol=verify.atol,
                                   rtol=verify.rtol, per_site=True, site_tensors=site_tensors,
                                   tolerance=tolerance if approximate else None)
        _attach_site_drift(result)
        result.notes.extend(n for n in result.verify.notes if n not in result.notes)
    log.info("%d LRN site(s) rewritten with %s", len(records), strategy)
    return result


def _choose_formulation(model: onnx.ModelProto, sites: Sequence[LrnSite], options: Mapping[str, object],
                        provider: str) -> FormulationChoice:
    """decompose's window/power where the options say ``auto``: timed on ``provider`` (see
    ``lrnconv.formulation``), with every site decomposed by each candidate."""
    window = str(options.get("window", DEFAULT_WINDOW))
    power = str(options.get("power", DEFAULT_POWER))
    shortlist = candidates(window, power, (DEFAULT_WINDOW, DEFAULT_POWER))
    budget = float(options.get("tune_seconds", DEFAULT_BUDGET_SECONDS))
    if budget <= 0:
        return FormulationChoice(*shortlist[0], measured=False, reason="the default; not timed (budget 0)")
    plan = {s.output: "decompose" for s in sites}

    def builder(formulation):
        chosen = {**options, "window": formulation[0], "power": formulation[1]}
        return lambda: rewrite(model, plan, options=chosen, sites=sites)[0]

    (provider,) = resolve_providers([provider])
    feeds = random_inputs(model, int(options.get("tune_batch") or 1), seed=0)
    return fastest({f: builder(f) for f in shortlist}, feeds, provider, budget)


def _needs_statistics(strategy: str, sites) -> bool:
    """Whether any site needs fitted parameters (auto: any site some strategy could fit)."""
    candidates = list(strategies().values()) if strategy == AUTO else [strategies()[strategy]]
    return any(getattr(c, "needs_stats", lambda _: False)(site) for c in candidates for site in sites)


def _attach_site_drift(result: ConversionResult) -> None:
    for record in result.sites:
        per_provider = {p: r.sites[record.site.output].to_dict()
                        for p, r in result.verify.providers.items() if record.site.output in r.sites}
        record.drift = per_provider or None
