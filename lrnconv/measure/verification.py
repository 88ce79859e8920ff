"""Verification: run the reference and the converted model in ONNX Runtime, measure drift.

Both models see the same samples on each requested provider, chunk by chunk in runs both
accept (a fixed batch of 1 or N included; the padding of a last run never reaches a metric),
and every metric accumulates in a ``DriftMeter``: memory stays flat in the number of samples,
per-site tensors included. The candidate's own graph outputs are compared, by name.

The reference's own error. At every LRN node the reference's site output is compared with
the LRN maths evaluated in float64 on the same site input: the *kernel floor*, the error of
ONNX Runtime's own LRN kernel (its CPU kernel keeps a running window sum that loses
precision on large activations). When the candidate fails against the native reference, it
is compared again against the exact reference (the original with every LRN in float64): if
it is within tolerance there, the drift is the native kernel's error, the verdict is PASS,
and the report says so, in numbers. ``reference="exact"`` compares against the exact
reference from the start; where ONNX Runtime refuses the original, the exact reference is
what stands in for it.

Tolerances follow each output's element type (``lrnconv.maths.drift.default_tolerance``)
unless given. NaN or Inf in either model's output never passes. With a GPU provider next to
``cpu``, the reference's own difference between the two providers is the noise floor.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import onnx

from ..base.errors import RunFailed, UsageError
from ..base.text import json_number
from ..graph.sites import LrnSite, find_lrn
from ..maths.drift import Drift, DriftMeter, Tolerance, default_tolerance
from ..maths.reference import lrn_onnx
from ..runtime.inputs import Samples, array_samples, input_specs, random_samples, rows_per_run
from ..runtime.progress import tracked
from ..runtime.providers import resolve_providers, short_name
from ..runtime.runnable import RunnableReference
from ..runtime.sessions import RuntimeRefused, Session, create_session
from .golden import Golden, GoldenRecorder

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 8
CPU = "CPUExecutionProvider"
PerOutput = Union[None, float, Mapping[str, float]]
"""A tolerance for every output, or per output name (the key "" for the others); None: by type."""


def _tolerances(outputs: Sequence[onnx.ValueInfoProto], atol: PerOutput, rtol: PerOutput) -> Dict[str, Tuple[float, float]]:
    """(atol, rtol) per output: given per name, given for all, or the element type's default.

    Raises:
        UsageError: a tolerance named for an output the model does not have.
    """
    names = [o.name for o in outputs]
    for given in (atol, rtol):
        if isinstance(given, Mapping):
            unknown = [k for k in given if k and k not in names]
            if unknown:
                raise UsageError(f"a tolerance is given for output {unknown[0]!r}, which the model does not have "
                                 f"(outputs: {', '.join(names)})")

    def pick(given: PerOutput, name: str, default: float) -> float:
        if isinstance(given, Mapping):
            given = given.get(name, given.get(""))
        return default if given is None else float(given)

    found = {}
    for o in outputs:
        type_atol, type_rtol = default_tolerance(onnx.helper.tensor_dtype_to_np_dtype(
            o.type.tensor_type.elem_type or onnx.TensorProto.FLOAT))
        found[o.name] = (pick(atol, o.name, type_atol), pick(rtol, o.name, type_rtol))
    return found


@dataclass
class ProviderDrift:
    """Drift of every output (and, on request, every LRN site) on one provider.

    Attributes:
        outputs: the candidate against the reference (native unless asked otherwise).
        sites: the tensor right after each LRN site, candidate against reference.
        kernel_floor: per LRN node (by site output), the reference's site output against the
            LRN maths in float64 on the same site input (the reference kernel's own error).
        exact_outputs: the candidate against the exact reference, where it was measured
            (it is when the candidate fails against the native one).
        explained: the candidate failed against the native reference and passes against
            the exact one: the drift is the native kernel's error.
    """

    outputs: Dict[str, Drift]
    sites: Dict[str, Drift] = field(default_factory=dict)
    kernel_floor: Dict[str, Drift] = field(default_factory=dict)
    exact_outputs: Dict[str, Drift] = field(default_factory=dict)
    explained: bool = False

    @property
    def passed(self) -> bool:
        return all(d.passed for d in self.outputs.values()) or self.explained

    def to_dict(self) -> Dict[str, object]:
        return {"passed": self.passed, "explained_by_reference": self.explained,
                "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
                "sites": {k: v.to_dict() for k, v in self.sites.items()},
                "kernel_floor": {k: v.to_dict() for k, v in self.kernel_floor.items()},
                "exact_outputs": {k: v.to_dict() for k, v in self.exact_outputs.items()} or None}


@dataclass
class DriftReport:
    """The verdict of a verification; truthy when every output passes on every provider.

    ``status`` is ``passed``, ``failed``, or ``not verifiable`` (ONNX Runtime cannot run the
    candidate on a provider: ``unverifiable`` says why).
    """

    providers: Dict[str, ProviderDrift]
    noise_floor: Dict[str, Dict[str, Drift]]
    tolerances: Dict[str, Tuple[float, float]]
    """Output -> (atol, rtol) it was judged by."""
    inputs: str
    samples: int
    reference: str = "native"
    notes: List[str] = field(default_factory=list)
    tolerance: Optional[Tolerance] = None
    """When set, outputs pass by this task-level tolerance instead of atol/rtol."""
    unverifiable: Dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        if self.unverifiable:
            return False
        if self.tolerance is not None:
            return all(self.tolerance.accepts(d) for p in self.providers.values() for d in p.outputs.values())
        return all(p.passed for p in self.providers.values())

    @property
    def status(self) -> str:
        if self.unverifiable:
            return "not verifiable"
        return "passed" if self.passed else "failed"

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> Dict[str, object]:
        return {"passed": self.passed, "status": self.status, "samples": self.samples,
                "reference": self.reference, "inputs": self.inputs,
                "tolerances": {o: {"atol": json_number(a), "rtol": json_number(r)} for o, (a, r) in self.tolerances.items()},
                "tolerance": self.tolerance.to_dict() if self.tolerance else None,
                "providers": {k: v.to_dict() for k, v in self.providers.items()},
                "noise_floor": {p: {o: d.to_dict() for o, d in outs.items()}
                                for p, outs in self.noise_floor.items()} or None,
                "unverifiable": dict(self.unverifiable) or None,
                "notes": list(self.notes)}


def samples_for(model: onnx.ModelProto, inputs: Union[None, Mapping[str, np.ndarray], Samples] = None, *,
                samples: int = DEFAULT_SAMPLES, seed: int = 0,
                input_shapes: Optional[Mapping[str, Tuple[int, ...]]] = None,
                input_values: Optional[Mapping[str, np.ndarray]] = None) -> Tuple[Samples, List[str]]:
    """The samples to verify on: ``inputs`` (leading axis = samples), else seeded random ones.

    Returns:
        (samples, notes on the random values chosen for inputs fed whole).
    """
    if inputs is None:
        return random_samples(model, samples, seed, shapes=input_shapes, values=input_values)
    if isinstance(inputs, Samples):
        return inputs, []
    return array_samples(model, inputs, values=input_values), []


def verify(reference: onnx.ModelProto, candidate: onnx.ModelProto,
           inputs: Union[None, Mapping[str, np.ndarray], Samples] = None,
           providers: Sequence[str] = ("cpu",), *, samples: int = DEFAULT_SAMPLES, seed: int = 0,
           input_shapes: Optional[Mapping[str, Tuple[int, ...]]] = None,
           input_values: Optional[Mapping[str, np.ndarray]] = None,
           reference_mode: str = "native", **options) -> DriftReport:
    """Run both models on the same inputs and measure the candidate's drift.

    Args:
        reference: the original model.
        candidate: the converted model (the same output names).
        inputs: arrays keyed by input name, leading axis = samples (inputs fed whole, such as
            an ``If`` condition, as they are). Defaults to None: ``samples`` seeded random
            pixel-like samples, and a note in the report.
        providers: ``cpu``, ``cuda`` or full ONNX Runtime provider names.
        input_shapes: shapes for inputs with symbolic dims, for random samples.
        input_values: values of inputs fed whole (``--input NAME=VALUE``).
        reference_mode: ``native`` (the model as ONNX Runtime runs it) or ``exact`` (every
            LRN in float64).
        options: those of ``verify_against`` (``atol``, ``rtol``, ``per_site``, ``tolerance``,
            ``site_tensors``, ``error_stat``, ``golden``, ``record``); with ``golden`` its samples
            are what the candidate runs on.

    Returns:
        A DriftReport, truthy when every output passes.
    """
    runnable = RunnableReference(reference, find_lrn(reference), reference_mode)
    golden = options.get("golden")
    if golden is not None:
        data, notes = golden.samples, []
    else:
        data, notes = samples_for(reference, inputs, samples=samples, seed=seed, input_shapes=input_shapes,
                                  input_values=input_values)
    report = verify_against(runnable, candidate, data, providers, **options)
    report.notes[:0] = notes
    return report


def _floor_sites(reference: RunnableReference) -> List[LrnSite]:
    """The LRN nodes whose kernel error can be measured (main graph; subgraph tensors cannot be exposed)."""
    return [s for s in reference.sites if s.family.is_lrn_node and not s.graph_path]


def _exact_site(site: LrnSite, x: np.ndarray) -> np.ndarray:
    """The LRN maths in float64 on the site's input (ONNX and Caffe ACROSS share it); a base that
    goes negative gives NaN, which the meter counts (no warning)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return lrn_onnx(np.asarray(x, np.float64), site.size, alpha=site.alpha, beta=site.beta, bias=site.bias)


def _run(session: Session, chunk, outputs: Sequence[str], role: str) -> Dict[str, np.ndarray]:
    try:
        return session.run_chunk(chunk, outputs)
    except RuntimeRefused as refusal:
        what = "the reference model" if role == "reference" else "the converted model"
        raise RunFailed(f"ONNX Runtime failed running {what} on {short_name(session.provider)}: {refusal}",
                        role) from None


def verify_against(reference: RunnableReference, candidate: onnx.ModelProto, samples: Samples,
                   providers: Sequence[str] = ("cpu",), *, atol: PerOutput = None,
                   rtol: PerOutput = None, per_site: bool = False,
                   site_tensors: Optional[Mapping[str, str]] = None,
                   tolerance: Optional[Tolerance] = None, error_stat: str = "elemwise",
                   golden: Optional[Golden] = None, record: Optional[GoldenRecorder] = None) -> DriftReport:
    """``verify`` against a reference whose sites (and ONNX Runtime's refusals) are already known.

    Args:
        reference: the original model as ONNX Runtime can run it.
        samples: what both models run on.
        atol, rtol: the tolerance for every output, or per output name (``{"prob": 1e-4, "": 1e-5}``).
            Defaults to None: each output's element-type default (``default_tolerance``).
        error_stat: ``elemwise``, ``max``, ``mean`` or ``median`` (``lrnconv.maths.drift``).
        golden: reference outputs from a file (``golden.load_golden``): the reference model is then
            not run, and the comparison is at the outputs only.
        record: collects the samples and the reference's outputs on the first provider, for
            ``golden.golden_writer``.
        per_site: also compare the tensor right after each LRN site of the reference
            (where the candidate still has a tensor that carries it).
        site_tensors: reference site output -> candidate tensor carrying its value, for
            rewrites that rename it (``fold``, ``remove``). Defaults to the same names.
        tolerance: judge outputs by task-level tolerance instead of atol/rtol.

    Raises:
        ProviderUnavailable: a provider is missing or ONNX Runtime silently replaced it.
        RunFailed: the candidate lacks an output of the reference, or ONNX Runtime cannot run the
            reference (``role`` says which model).
    """
    resolved = resolve_providers(providers)
    notes: List[str] = []
    if samples.random:
        notes.append(f"NO DATA GIVEN: verified on {samples.description}; drift on real data may differ")
    reference_outputs = list(reference.model.graph.output)
    outputs = [o.name for o in reference_outputs]
    candidate_outputs = [o.name for o in candidate.graph.output]
    missing = [o for o in outputs if o not in candidate_outputs]
    if missing:
        raise RunFailed(f"the converted model has no output {missing[0]!r} (its outputs: "
                        f"{', '.join(candidate_outputs)}); it must keep the original's output names", "candidate")
    tolerances = _tolerances(reference_outputs, atol, rtol)
    if golden is not None:
        notes.append(f"the reference is the golden outputs of {golden.samples.origin} "
                     f"({', '.join(f'{k} {v}' for k, v in golden.meta.items() if k in ('provider', 'source'))}); "
                     "compared at the outputs only")
        per_site = False
    pairs: Dict[str, str] = {}
    if per_site:
        present = {t for n in candidate.graph.node for t in n.output} | {i.name for i in candidate.graph.input}
        mapping = dict(site_tensors or {})
        for site in reference.sites:
            target = mapping.get(site.output, site.output)
            if not site.graph_path and target in present:
                pairs[site.output] = target
    floors = _floor_sites(reference) if golden is None else []
    want = list(dict.fromkeys(outputs + list(pairs) + [n for s in floors for n in (s.input, s.output)]))
    cand_want = list(dict.fromkeys(outputs + list(pairs.values())))
    rows, pad = rows_per_run(input_specs(reference.model) + input_specs(candidate), samples.rows_hint)

    def meters(names, detail=False):  # sites are judged like the first output (the same type, in a CNN)
        return {n: DriftMeter(*tolerances.get(n, tolerances[outputs[0]]), error_stat=error_stat if detail else
                              "elemwise", detail=detail) for n in names}

    results: Dict[str, ProviderDrift] = {}
    noise_floor: Dict[str, Dict[str, Drift]] = {}
    unverifiable: Dict[str, str] = {}
    reference_nonfinite: Dict[str, int] = {o: 0 for o in outputs}
    for index, provider in enumerate(resolved):
        session = reference.session(provider, samples, want) if golden is None else None
        note = reference.note(provider) if golden is None else None
        if note and note not in notes:
            notes.append(note)
        try:
            cand_session = create_session(candidate, provider, cand_want)
        except RuntimeRefused as refusal:
            unverifiable[short_name(provider)] = str(refusal)
            continue
        cpu = (reference.session(CPU, samples, outputs) if provider != CPU and CPU in resolved and golden is None
               else None)
        out_meters, site_meters = meters(outputs, detail=True), meters(pairs)
        floor_meters = meters([s.output for s in floors])
        noise_meters = meters(outputs) if cpu is not None else {}
        for chunk in tracked(samples.chunks(rows, pad), f"verifying on {short_name(provider)}", samples.count):
            expected = golden.expected(chunk, outputs) if golden is not None else _run(session, chunk, want, "reference")
            if record is not None and index == 0:
                record.add(chunk, samples.whole, {o: expected[o] for o in outputs})
            try:
                got = cand_session.run_chunk(chunk, cand_want)
            except RuntimeRefused as refusal:
                unverifiable[short_name(provider)] = str(refusal)
                break
            for o in outputs:
                out_meters[o].update(got[o], expected[o])
                reference_nonfinite[o] += int(np.size(expected[o]) - np.count_nonzero(np.isfinite(expected[o])))
            for s, t in pairs.items():
                site_meters[s].update(got[t], expected[s])
            for site in floors:
                floor_meters[site.output].update(expected[site.output], _exact_site(site, expected[site.input]))
            if cpu is not None:
                on_cpu = _run(cpu, chunk, outputs, "reference")
                for o in outputs:
                    noise_meters[o].update(expected[o], on_cpu[o])
        if short_name(provider) in unverifiable:
            continue
        drift = ProviderDrift({o: m.result() for o, m in out_meters.items()},
                              {s: m.result() for s, m in site_meters.items()},
                              {s.output: floor_meters[s.output].result() for s in floors})
        if noise_meters:
            noise_floor[short_name(provider)] = {o: m.result() for o, m in noise_meters.items()}
        if tolerance is None and not drift.passed and golden is None and not reference.is_exact(provider):
            _compare_with_exact(reference, cand_session, samples, rows, pad, outputs, meters, drift)
        results[short_name(provider)] = drift
        log.info("%s: %s", provider, "PASSED" if drift.passed else "FAILED")
    for o, count in reference_nonfinite.items():
        if count and samples.random:
            notes.append(f"the random samples made the reference itself non-finite at '{o}' ({count} NaN/Inf "
                         "elements): pixel-scale random inputs may be outside this model's range; verify with "
                         "real data (--data)")
    for provider, drift in results.items():
        if drift.explained:
            notes.append(_explanation(provider, drift))
    if record is not None:
        record.meta.update({"provider": short_name(resolved[0]), "samples": samples.count,
                            "reference": reference.mode, "inputs": samples.description})
    return DriftReport(results, noise_floor, tolerances, samples.description, samples.count, reference.mode,
                       notes, tolerance, unverifiable)


def _compare_with_exact(reference: RunnableReference, cand_session: Session, samples: Samples, rows: int,
                        pad: bool, outputs: Sequence[str], meters, drift: ProviderDrift) -> None:
    """The candidate against the exact reference: does the native kernel's error explain its drift?"""
    exact = reference.exact_session(cand_session.provider, outputs)
    exact_meters = meters(outputs, detail=True)
    for chunk in tracked(samples.chunks(rows, pad), "comparing with the exact reference", samples.count):
        expected = _run(exact, chunk, outputs, "reference")
        got = _run(cand_session, chunk, outputs, "candidate")
        for o in outputs:
            exact_meters[o].update(got[o], expected[o])
    drift.exact_outputs = {o: m.result() for o, m in exact_meters.items()}
    drift.explained = all(d.passed for d in drift.exact_outputs.values())


def _explanation(provider: str, drift: ProviderDrift) -> str:
    """Whose error it is, in numbers."""
    worst = max(drift.outputs, key=lambda o: drift.outputs[o].max_rel)
    native, exact = drift.outputs[worst], drift.exact_outputs[worst]
    text = (f"[{provider}] against ONNX Runtime's native LRN the candidate drifts by max rel {native.max_rel:.3g} "
            f"at '{worst}' (outside atol {native.atol:g}, rtol {native.rtol:g}); against the exact reference "
            f"(every LRN in float64) it is within tolerance (max rel {exact.max_rel:.3g}): the drift is the native "
            "LRN kernel's own error")
    if drift.kernel_floor:
        site = max(drift.kernel_floor, key=lambda s: drift.kernel_floor[s].max_rel)
        text += f" (kernel floor up to max rel {drift.kernel_floor[site].max_rel:.3g} at LRN '{site}')"
    return text
