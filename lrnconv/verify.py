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
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import onnx

from .drift import DEFAULT_ATOL, DEFAULT_RTOL, Drift, compare
from .errors import UnsupportedModel
from .inputs import PIXEL_HIGH, PIXEL_LOW, random_inputs
from .runtime import RuntimeRefused, create_session, resolve_providers, short_name
from .sites import find_lrn

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 8
DEFAULT_BATCH = 16


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

    @property
    def passed(self) -> bool:
        return all(p.passed for p in self.providers.values())

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> Dict[str, object]:
        return {"passed": self.passed, "atol": self.atol, "rtol": self.rtol, "inputs": self.inputs,
                "providers": {k: v.to_dict() for k, v in self.providers.items()},
                "noise_floor": {p: {o: d.to_dict() for o, d in outs.items()}
                                for p, outs in self.noise_floor.items()} or None,
                "notes": list(self.notes)}


def _exactly_decomposed(model: onnx.ModelProto) -> onnx.ModelProto:
    from .convert import convert

    return convert(model, "decompose").model


def _run_reference(model: onnx.ModelProto, provider: str, feeds, want: Sequence[str],
                   batch_size: int, notes: List[str], fallback: Dict[str, onnx.ModelProto]):
    """Reference outputs; through the exact decomposition where ONNX Runtime refuses LRN."""
    if "model" not in fallback:
        try:
            return create_session(model, provider, want).run(feeds, batch_size, want)
        except RuntimeRefused as refusal:
            if not any(s.is_node for s in find_lrn(model)):
                raise UnsupportedModel(f"ONNX Runtime cannot run the reference model on {provider}: {refusal}") from None
            fallback["model"] = _exactly_decomposed(model)
            notes.append(f"ONNX Runtime refused the reference on {short_name(provider)} ({refusal}); "
                         "the reference is evaluated through its exact decomposition "
                         "(every LRN -> primitive ops, everything else unchanged)")
    try:
        return create_session(fallback["model"], provider, want).run(feeds, batch_size, want)
    except RuntimeRefused as refusal:
        raise UnsupportedModel(f"ONNX Runtime cannot run the reference model on {provider}: {refusal}") from None


def _tensor_names(model: onnx.ModelProto) -> set:
    names = {o for n in model.graph.node for o in n.output}
    return names | {i.name for i in model.graph.input}


def verify(reference: onnx.ModelProto, candidate: onnx.ModelProto,
           inputs: Optional[Mapping[str, np.ndarray]] = None,
           providers: Sequence[str] = ("cpu",), *, samples: int = DEFAULT_SAMPLES, seed: int = 0,
           atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, per_site: bool = False,
           batch_size: int = DEFAULT_BATCH) -> DriftReport:
    """Run both models on the same inputs and measure the candidate's drift.

    Args:
        reference: the original model.
        candidate: the converted model (same input and output names).
        inputs: arrays keyed by input name, leading axis = samples. Defaults to None:
            ``samples`` seeded random pixel-like inputs, and a note in the report.
        providers: ``cpu``, ``cuda`` or full ONNX Runtime provider names.
        per_site: also compare the tensor right after each LRN site of the reference
            (where the candidate still has a tensor of that name).

    Returns:
        A DriftReport, truthy when every output passes ``|a - b| <= atol + rtol * |b|``.

    Raises:
        ProviderUnavailable: a provider is missing or ONNX Runtime silently replaced it.
        UnsupportedModel: ONNX Runtime cannot run one of the models at all.
    """
    resolved = resolve_providers(providers)
    notes: List[str] = []
    if inputs is None:
        feeds = random_inputs(reference, samples, seed)
        described = (f"{samples} seeded random inputs (uniform [{PIXEL_LOW:g}, {PIXEL_HIGH:g}), "
                     f"seed {seed}); no data given, drift on real data may differ")
        notes.append("NO DATA GIVEN: verified on " + described)
    else:
        feeds = dict(inputs)
        described = f"{next(iter(feeds.values())).shape[0]} given samples" if feeds else "no inputs"
    site_names: List[str] = []
    if per_site:
        present = _tensor_names(candidate)
        site_names = [s.output for s in find_lrn(reference) if not s.graph_path and s.output in present]
    outputs = [o.name for o in reference.graph.output]

    fallback: Dict[str, onnx.ModelProto] = {}
    results: Dict[str, ProviderDrift] = {}
    reference_runs: Dict[str, Dict[str, np.ndarray]] = {}
    for provider in resolved:
        want = outputs + site_names
        expected = _run_reference(reference, provider, feeds, want, batch_size, notes, fallback)
        try:
            got = create_session(candidate, provider, want).run(feeds, batch_size, want)
        except RuntimeRefused as refusal:
            raise UnsupportedModel(f"ONNX Runtime cannot run the converted model on {provider}: {refusal}") from None
        reference_runs[provider] = expected
        results[short_name(provider)] = ProviderDrift(
            outputs={o: compare(got[o], expected[o], atol=atol, rtol=rtol) for o in outputs},
            sites={s: compare(got[s], expected[s], atol=atol, rtol=rtol) for s in site_names})
        log.info("%s: %s", provider, "PASSED" if results[short_name(provider)].passed else "FAILED")

    noise_floor: Dict[str, Dict[str, Drift]] = {}
    if "CPUExecutionProvider" in reference_runs and len(reference_runs) > 1:
        cpu = reference_runs["CPUExecutionProvider"]
        for provider, run in reference_runs.items():
            if provider != "CPUExecutionProvider":
                noise_floor[short_name(provider)] = {
                    o: compare(run[o], cpu[o], atol=atol, rtol=rtol) for o in outputs}
    return DriftReport(results, noise_floor, atol, rtol, described, notes)
