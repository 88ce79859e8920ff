"""Verification: run the original and the converted model in ONNX Runtime, measure drift.

Both models see the same inputs on each requested provider. Where ONNX Runtime refuses
to create a session for the *reference* (its CPU LRN kernel rejects even sizes,
alpha = 0 and ranks other than 4), the reference is evaluated through its exact
decomposition with everything else unchanged, and the report says so and why. With a
GPU provider next to ``cpu``, the reference's own difference between the two providers
is reported as the noise floor: drift below it is the runtime's, not the rewrite's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import onnx

from ..base.errors import UnsupportedModel
from ..graph.sites import find_lrn
from ..maths.drift import DEFAULT_ATOL, DEFAULT_RTOL, Drift, Tolerance, compare
from ..runtime.inputs import PIXEL_HIGH, PIXEL_LOW, random_inputs
from ..runtime.providers import resolve_providers, short_name
from ..runtime.runnable import RunnableReference
from ..runtime.sessions import DEFAULT_BATCH, RuntimeRefused, create_session

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 8


@dataclass
class ProviderDrift:
    """Drift of every output (and, on request, every LRN site) on one provider."""

    outputs: Dict[str, Drift]
    sites: Dict[str, Drift] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(d.passed for d in self.outputs.values())

    def to_dict(self) -> Dict[str, object]:
        return {"passed": self.passed,
                "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
                "sites": {k: v.to_dict() for k, v in self.sites.items()}}


@dataclass
class DriftReport:
    """The verdict of a verification; truthy when every output passes on every provider."""

    providers: Dict[str, ProviderDrift]
    noise_floor: Dict[str, Dict[str, Drift]]
    atol: float
    rtol: float
    inputs: str
    notes: List[str] = field(default_factory=list)
    tolerance: Optional[Tolerance] = None
    """When set, outputs pass by this task-level tolerance instead of atol/rtol."""

    @property
    def passed(self) -> bool:
        if self.tolerance is not None:
            return all(self.tolerance.accepts(d) for p in self.providers.values() for d in p.outputs.values())
        return all(p.passed for p in self.providers.values())

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> Dict[str, object]:
        return {"passed": self.passed, "atol": self.atol, "rtol": self.rtol,
                "tolerance": self.tolerance.to_dict() if self.tolerance else None, "inputs": self.inputs,
                "providers": {k: v.to_dict() for k, v in self.providers.items()},
                "noise_floor": {p: {o: d.to_dict() for o, d in outs.items()}
                                for p, outs in self.noise_floor.items()} or None,
                "notes": list(self.notes)}


def _tensor_names(model: onnx.ModelProto) -> set:
    names = {o for n in model.graph.node for o in n.output}
    return names | {i.name for i in model.graph.input}


def verify(reference: onnx.ModelProto, candidate: onnx.ModelProto,
           inputs: Optional[Mapping[str, np.ndarray]] = None,
           providers: Sequence[str] = ("cpu",), **options) -> DriftReport:
    """Run both models on the same inputs and measure the candidate's drift.

    The keyword options are those of ``verify_against``; see there.

    Args:
        reference: the original model.
        candidate: the converted model (same input and output names).
        inputs: arrays keyed by input name, leading axis = samples. Defaults to None:
            seeded random pixel-like inputs, and a note in the report.
        providers: ``cpu``, ``cuda`` or full ONNX Runtime provider names.

    Returns:
        A DriftReport, truthy when every output passes.
    """
    return verify_against(RunnableReference(reference, find_lrn(reference)), candidate, inputs, providers,
                          **options)


def verify_against(reference: RunnableReference, candidate: onnx.ModelProto,
                   inputs: Optional[Mapping[str, np.ndarray]] = None,
                   providers: Sequence[str] = ("cpu",), *, samples: int = DEFAULT_SAMPLES, seed: int = 0,
                   atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, per_site: bool = False,
                   site_tensors: Optional[Mapping[str, str]] = None, tolerance: Optional[Tolerance] = None,
                   batch_size: int = DEFAULT_BATCH) -> DriftReport:
    """``verify`` against a reference whose sites (and ONNX Runtime's refusals) are already known.

    Args:
        reference: the original model as ONNX Runtime can run it.
        candidate: the converted model (same input and output names).
        inputs: arrays keyed by input name, leading axis = samples. Defaults to None:
            ``samples`` seeded random pixel-like inputs, and a note in the report.
        providers: ``cpu``, ``cuda`` or full ONNX Runtime provider names.
        per_site: also compare the tensor right after each LRN site of the reference
            (where the candidate still has a tensor of that name).
        site_tensors: reference site output -> candidate tensor carrying its value, for
            rewrites that rename it (``fold``, ``remove``). Defaults to the same names.
        tolerance: judge outputs by task-level tolerance instead of atol/rtol.

    Returns:
        A DriftReport, truthy when every output passes ``|a - b| <= atol + rtol * |b|``.

    Raises:
        ProviderUnavailable: a provider is missing or ONNX Runtime silently replaced it.
        UnsupportedModel: ONNX Runtime cannot run one of the models at all.
    """
    resolved = resolve_providers(providers)
    notes: List[str] = []
    if inputs is None:
        feeds = random_inputs(reference.model, samples, seed)
        described = (f"{samples} seeded random inputs (uniform [{PIXEL_LOW:g}, {PIXEL_HIGH:g}), "
                     f"seed {seed}); no data given, drift on real data may differ")
        notes.append("NO DATA GIVEN: verified on " + described)
    else:
        feeds = dict(inputs)
        described = f"{next(iter(feeds.values())).shape[0]} given samples" if feeds else "no inputs"
    pairs: Dict[str, str] = {}
    if per_site:
        present = _tensor_names(candidate)
        mapping = dict(site_tensors or {})
        for site in reference.sites:
            target = mapping.get(site.output, site.output)
            if not site.graph_path and target in present:
                pairs[site.output] = target
    outputs = [o.name for o in reference.model.graph.output]

    results: Dict[str, ProviderDrift] = {}
    reference_runs: Dict[str, Dict[str, np.ndarray]] = {}
    for provider in resolved:
        want = list(dict.fromkeys(outputs + list(pairs)))
        session = reference.session(provider, feeds, want)
        note = reference.note(provider)
        if note and note not in notes:
            notes.append(note)
        expected = session.run(feeds, batch_size, want)
        try:
            cand_want = list(dict.fromkeys(outputs + list(pairs.values())))
            got = create_session(candidate, provider, cand_want).run(feeds, batch_size, cand_want)
        except RuntimeRefused as refusal:
            raise UnsupportedModel(f"ONNX Runtime cannot run the converted model on {provider}: {refusal}") from None
        reference_runs[provider] = expected
        results[short_name(provider)] = ProviderDrift(
            outputs={o: compare(got[o], expected[o], atol=atol, rtol=rtol) for o in outputs},
            sites={s: compare(got[t], expected[s], atol=atol, rtol=rtol) for s, t in pairs.items()})
        log.info("%s: %s", provider, "PASSED" if results[short_name(provider)].passed else "FAILED")

    noise_floor: Dict[str, Dict[str, Drift]] = {}
    if "CPUExecutionProvider" in reference_runs and len(reference_runs) > 1:
        cpu = reference_runs["CPUExecutionProvider"]
        for provider, run in reference_runs.items():
            if provider != "CPUExecutionProvider":
                noise_floor[short_name(provider)] = {
                    o: compare(run[o], cpu[o], atol=atol, rtol=rtol) for o in outputs}
    return DriftReport(results, noise_floor, atol, rtol, described, notes, tolerance)
