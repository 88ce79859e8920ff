"""``convert``: find_lrn -> (calibrate) -> (select) -> rewrite each site -> (verify).

The one orchestration point of the library. The sites are found once and the runnable
reference (the original, or its exact decomposition where ONNX Runtime refuses it) is
built once; calibration, ``auto`` and verification all get them handed down. The graph
is edited with onnx-graphsurgeon and spliced back into the original ``ModelProto``
(nothing untouched is lost, no weight is copied). Verification, when asked for, compares
against the model as it was before the rewrite.

With ``quantize`` (``--quantize int8``) the converted float model is also quantized with ONNX
Runtime's static quantizer on the first half of the data and verified on the held-out second
half against the *float original* (``lrnconv.measure.quantization``); the float verification
then runs on the same held-out half, so the two drifts stand side by side. ``auto`` judges every
candidate by its INT8 model's drift.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import onnx

from ..base.errors import UsageError
from ..engine.plan import rewrite, strategy_named, uniform_plan
from ..engine.protocol import EXACT, SiteRecord, Strategy
from ..graph.sites import LrnSite, find_lrn
from ..maths.drift import Tolerance
from ..maths.stats import SiteStats
from ..measure.calibration import DEFAULT_CALIBRATION_SAMPLES, Calibration, calibrate, split_halves
from ..measure.formulation import AUTO as FORMULATION_AUTO, DEFAULT_BUDGET_SECONDS, FormulationChoice, candidates, fastest
from ..measure.quantization import INT8, PROXY_NOTE, Int8Options, Int8Report, int8_trial, quantize_and_verify
from ..measure.selection import select
from ..measure.verification import DEFAULT_SAMPLES, DriftReport, PerOutput, samples_for, verify_against
from ..passes import AUTO_ORDER, REGISTRY
from ..passes.decompose import DEFAULT_POWER, DEFAULT_WINDOW
from ..runtime.inputs import Samples, array_samples, input_specs, random_samples
from ..runtime.providers import resolve_providers
from ..runtime.runnable import RunnableReference

log = logging.getLogger(__name__)

AUTO = "auto"
INT8_SUFFIX = ".int8.onnx"


def int8_path(output: str) -> str:
    """Where the INT8 model of ``output`` goes: ``OUT.int8.onnx`` beside it (``net.onnx`` -> ``net.int8.onnx``)."""
    root, ext = os.path.splitext(output)
    return (root if ext.lower() == ".onnx" else output) + INT8_SUFFIX


def quantize_options(quantize: Union[None, str, Int8Options]) -> Optional[Int8Options]:
    """``"int8"`` or ``Int8Options`` -> options; None stays None.

    Raises:
        UsageError: anything else.
    """
    if quantize is None or isinstance(quantize, Int8Options):
        return quantize
    if isinstance(quantize, str) and quantize.lower() == INT8:
        return Int8Options()
    raise UsageError(f"unknown quantization '{quantize}'; choose from {INT8}")


def strategies() -> Dict[str, Strategy]:
    """The registry of strategies (name -> object), cheapest first."""
    return dict(REGISTRY)


@dataclass(frozen=True)
class VerifyOptions:
    """How ``convert`` verifies its result (see ``lrnconv.verify``).

    ``atol`` / ``rtol``: one for every output, or per output name (the key "" for the others);
    None: each output's element-type default. ``error_stat``: ``elemwise``, ``max``, ``mean`` or
    ``median`` (``lrnconv.maths.drift``).
    """

    inputs: Optional[Mapping[str, np.ndarray]] = None
    providers: Sequence[str] = ("cpu",)
    samples: int = DEFAULT_SAMPLES
    seed: int = 0
    atol: PerOutput = None
    rtol: PerOutput = None
    error_stat: str = "elemwise"


@dataclass
class ConversionResult:
    """The converted model, what happened at each site, and the verification verdict."""

    model: onnx.ModelProto
    strategy: str
    sites: List[SiteRecord]
    verify: Optional[DriftReport] = None
    notes: List[str] = field(default_factory=list)
    random_inputs: List[str] = field(default_factory=list)
    """What was done on seeded random inputs for want of data: 'fitting', 'verifying', 'quantizing'."""
    int8: Optional[Int8Report] = None
    """With ``quantize``: the INT8 model, its drift from the float original, its float islands."""
    formulation: Optional[FormulationChoice] = None
    """decompose's formulation when the options asked for ``auto`` (what was timed, what won)."""

    @property
    def passed(self) -> bool:
        """True unless verification ran and failed (the INT8 model's too, when there is one)."""
        return (self.verify is None or self.verify.passed) and (self.int8 is None or self.int8.passed)

    def to_dict(self, input_path: Optional[str] = None, output_path: Optional[str] = None,
                int8_output: Optional[str] = None) -> Dict[str, object]:
        out = {"input": input_path, "output": output_path, "strategy": self.strategy,
               "sites": [r.to_dict() for r in self.sites],
               "verify": self.verify.to_dict() if self.verify is not None else None,
               "notes": list(self.notes)}
        if self.int8 is not None:
            out["int8"] = self.int8.to_dict(int8_output)
        if self.formulation is not None:  # only when asked for: the report keeps its documented keys
            out["formulation"] = self.formulation.to_dict()
        return out


def needs_calibration(strategy: str, sites: Sequence[LrnSite]) -> bool:
    """Whether converting ``sites`` with ``strategy`` fits anything on data (auto: any candidate)."""
    candidates = AUTO_ORDER if strategy == AUTO else (strategy_named(strategy),)
    return any(c.needs_stats(site) for c in candidates for site in sites)


def convert(model: onnx.ModelProto, strategy: str = "decompose", *,
            calibration: Union[None, Mapping[str, np.ndarray], Samples] = None,
            tolerance: Optional[Tolerance] = None, verify: Optional[VerifyOptions] = None,
            inplace: bool = False, options: Optional[Mapping[str, object]] = None,
            stats: Optional[Mapping[str, SiteStats]] = None,
            calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES, reference: str = "native",
            input_shapes: Optional[Mapping[str, Tuple[int, ...]]] = None,
            input_values: Optional[Mapping[str, np.ndarray]] = None,
            drop_nonfinite: bool = False, quantize: Union[None, str, Int8Options] = None) -> ConversionResult:
    """Rewrite every LRN site of ``model`` with ``strategy``.

    Approximating strategies (``fold``, ``bn``, ``l2``, and ``auto``) fit their parameters
    on the first half of ``calibration``; the second half is what ``auto`` judges them
    on and what verification runs on, so nothing is judged on the samples it was fitted
    on. The default is ``decompose`` (exact), so that nothing is approximated unless asked.

    Args:
        model: the model; left untouched unless ``inplace``.
        strategy: ``auto`` or a name from ``lrnconv.passes.REGISTRY``.
        calibration: arrays keyed by input name, leading axis = samples (or ``Samples``).
            Defaults to None: seeded random pixel-like samples, with a loud note.
        tolerance: what ``auto`` accepts, and what verification of an approximate result
            is judged by. Defaults to ``Tolerance()`` (top-1 >= 99.5 %, cosine >= 0.999).
        verify: verify the result against the original with these options. Defaults to
            None (no verification).
        inplace: edit ``model`` itself (saves a copy of the weights; the CLI uses it).
        options: strategy options. ``decompose``: ``window``, ``power`` (a formulation name,
            or ``auto``: timed on this machine, see ``lrnconv.measure.formulation``), and for
            ``auto`` ``tune_seconds`` (the timing budget; 0 = the default formulation, not
            timed; defaults to 30) and ``tune_batch`` (the batch it is timed at, for models
            whose batch is not fixed; defaults to 1).
        stats: calibration statistics keyed by site output, instead of fitting them on
            ``calibration``. Defaults to None (fitted when a strategy needs them).
        reference: what calibration, ``auto`` and verification compare against: ``native``
            (the model as ONNX Runtime runs it) or ``exact`` (every LRN in float64).
        input_shapes: shapes of inputs with symbolic dims, for random samples.
        input_values: values of the inputs fed whole (an ``If`` condition, a trip count).
        drop_nonfinite: leave calibration samples holding NaN or Inf out instead of refusing them.
        quantize: ``"int8"`` or ``Int8Options``: also quantize the result (ONNX Runtime, QDQ,
            per-channel symmetric int8) on the first half of ``calibration`` and verify it on the
            held-out half against the float original (``result.int8``); ``auto`` then judges
            candidates by their INT8 drift. Defaults to None (no quantization).

    Raises:
        UsageError: unknown strategy.
        UnsupportedModel: the strategy cannot handle a site (the reason names it).
    """
    if strategy != AUTO and strategy not in REGISTRY:
        raise UsageError(f"unknown strategy '{strategy}'; choose from {', '.join(list(REGISTRY) + [AUTO])}")
    quantize = quantize_options(quantize)
    sites = find_lrn(model)
    tolerance = tolerance or Tolerance()
    notes: List[str] = [] if sites else ["no LRN site found; the model is unchanged"]
    notes += [f"LRN '{s.name}' has bias = 0 (LRN as an L2 norm): where a whole window of its input is zero "
              "it computes 0/0, which is NaN" for s in sites if s.bias == 0]
    provider = verify.providers[0] if verify is not None and verify.providers else "cpu"
    options = dict(options or {})
    tuning = {k: options.pop(k) for k in ("tune_seconds", "tune_batch") if k in options}
    formulation = None
    if sites and FORMULATION_AUTO in (options.get("window"), options.get("power")):
        formulation = _choose_formulation(model, sites, options, tuning, provider, input_shapes, input_values)
        options.update(window=formulation.window, power=formulation.power)
        notes.append(formulation.note())
    needs_data = stats is None and needs_calibration(strategy, sites)
    runnable = None
    if verify is not None or strategy == AUTO or needs_data or quantize is not None:
        original = model
        if inplace:  # the rewrite edits ``model``: the reference keeps what it was
            original = onnx.ModelProto()
            original.CopyFrom(model)
        runnable = RunnableReference(original, sites, reference)
    data = calibration
    if data is not None and not isinstance(data, Samples):
        data = array_samples(model, data, values=input_values, what="calibration data")
    fitted: Optional[Calibration] = None
    halves: Optional[Tuple[Samples, Samples]] = None
    if (needs_data or quantize is not None) and data is None:
        data, guessed = random_samples(model, calibration_samples, shapes=input_shapes, values=input_values)
        notes.extend(guessed)
    if quantize is not None:
        if not data.random:
            data, dropped = data.finite(drop_nonfinite)
            if dropped:
                notes.append(f"{dropped} sample(s) of {data.origin} held NaN or Inf and were left out")
        halves = split_halves(data)  # the quantizer calibrates on the first, INT8 is judged on the second
        if data.random:
            notes.append(f"NO CALIBRATION DATA: INT8 ranges calibrated and judged on {data.description}; "
                         "INT8 drift on real data may differ")
    if needs_data:
        fitted = calibrate(runnable, data, provider=provider, drop_nonfinite=drop_nonfinite)
        stats = fitted.stats
        notes.extend(n for n in fitted.notes if n not in notes)
    stats = dict(stats or {})

    attempts = {}
    if strategy == AUTO:
        prepare, label = None, ""
        if quantize is not None:
            prepare, label = int8_trial(halves[0], quantize), "INT8"
            if fitted is None:  # nothing to fit, but the candidates are still judged on the held-out half
                fitted = Calibration({}, halves[1], halves[0].count)
        plan, attempts = select(runnable, fitted, tolerance, provider, stats=stats, options=dict(options),
                                prepare=prepare, label=label)
    else:
        plan = uniform_plan(sites, strategy)
    converted, records = rewrite(model, plan, sites=sites, stats=stats, options=options, inplace=inplace)
    for record in records:
        record.attempts = attempts.get(record.site.output, [])
    result = ConversionResult(converted, strategy, records, notes=notes, formulation=formulation)
    if fitted is not None and data.random and needs_data:
        result.random_inputs.append("fitting")
    if verify is not None:
        approximate = any(r.status != EXACT for r in records)
        if verify.inputs is not None:
            checked = array_samples(model, verify.inputs, values=input_values, what="verification data")
        elif halves is not None:
            checked = halves[1]
            result.notes.append(f"verified on the {halves[1].count} held-out samples (the second half of the "
                                f"data; the first {halves[0].count} calibrated the INT8 quantizer and fitted any approximation)")
        elif fitted is not None:
            checked = fitted.evaluation
            result.notes.append(f"verified on the {fitted.evaluation_samples} held-out samples "
                                f"(the second half of the data; the first {fitted.calibration_samples} fitted it)")
        elif data is not None:
            checked = data  # nothing was fitted on it, so all of it is fair to verify on
        else:
            checked, guessed = samples_for(runnable.model, samples=verify.samples, seed=verify.seed,
                                           input_shapes=input_shapes, input_values=input_values)
            result.notes.extend(n for n in guessed if n not in result.notes)
        if checked.random:
            result.random_inputs.append("verifying")
        site_tensors = {r.site.output: r.tensor for r in records if r.tensor is not None}
        result.verify = verify_against(runnable, converted, checked, verify.providers,
                                       atol=verify.atol, rtol=verify.rtol, error_stat=verify.error_stat,
                                       per_site=True,
                                       site_tensors=site_tensors, tolerance=tolerance if approximate else None)
        _attach_site_drift(result)
        result.notes.extend(n for n in result.verify.notes if n not in result.notes)
    if quantize is not None:
        evaluation = halves[1] if verify is None or verify.inputs is None else checked
        providers = verify.providers if verify is not None else ("cpu",)
        result.int8 = quantize_and_verify(runnable, converted, halves[0], evaluation, options=quantize,
                                          providers=providers, tolerance=tolerance, records=records)
        if data.random:
            result.random_inputs.append("quantizing")
        result.notes.append(PROXY_NOTE)
    log.info("%d LRN site(s) rewritten with %s", len(records), strategy)
    return result


def _choose_formulation(model: onnx.ModelProto, sites: Sequence[LrnSite], options: Mapping[str, object],
                        tuning: Mapping[str, object], provider: str,
                        input_shapes: Optional[Mapping[str, Tuple[int, ...]]],
                        input_values: Optional[Mapping[str, np.ndarray]]) -> FormulationChoice:
    """decompose's window/power where the options say ``auto``: timed on ``provider`` (see
    ``lrnconv.measure.formulation``), with every site decomposed by each candidate."""
    window = str(options.get("window", DEFAULT_WINDOW))
    power = str(options.get("power", DEFAULT_POWER))
    shortlist = candidates(window, power, (DEFAULT_WINDOW, DEFAULT_POWER))
    budget = float(tuning.get("tune_seconds", DEFAULT_BUDGET_SECONDS))
    if budget <= 0:
        return FormulationChoice(*shortlist[0], measured=False, reason="the default; not timed (budget 0)")
    plan = {s.output: "decompose" for s in sites}

    def builder(formulation):
        chosen = {**options, "window": formulation[0], "power": formulation[1]}
        return lambda: rewrite(model, plan, options=chosen, sites=sites)[0]

    (provider,) = resolve_providers([provider])
    fixed = sorted({s.fixed_batch for s in input_specs(model) if s.batched and s.fixed_batch})
    batch = fixed[0] if fixed else int(tuning.get("tune_batch") or 1)
    drawn, _ = random_samples(model, batch, shapes=input_shapes, values=input_values)
    feeds = {**drawn.rows(0, batch), **drawn.whole}
    return fastest({f: builder(f) for f in shortlist}, feeds, provider, budget)


def _attach_site_drift(result: ConversionResult) -> None:
    for record in result.sites:
        per_provider = {p: r.sites[record.site.output].to_dict()
                        for p, r in result.verify.providers.items() if record.site.output in r.sites}
        record.drift = per_provider or None
