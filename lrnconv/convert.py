"""``convert``: load -> find_lrn -> rewrite each site -> restore -> (verify).

The one orchestration point of the library. Each site is handed to the chosen
strategy from the registry; the graph is edited with onnx-graphsurgeon and spliced
back into the original ``ModelProto`` by ``EditableModel.commit`` (nothing untouched is
lost, no weight is copied). Verification, when asked for, compares against the model
as it was before the rewrite.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import onnx

from .drift import DEFAULT_ATOL, DEFAULT_RTOL
from .errors import UnsupportedModel, UsageError
from .preserve import EditableModel
from .sites import find_lrn
from .strategy import NOT_APPLICABLE, NameAllocator, RewriteContext, SiteRecord
from .verify import DEFAULT_SAMPLES, DriftReport, verify as run_verify

log = logging.getLogger(__name__)


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

    @property
    def passed(self) -> bool:
        """True unless verification ran and failed."""
        return self.verify is None or self.verify.passed

    def to_dict(self, input_path: Optional[str] = None, output_path: Optional[str] = None) -> Dict[str, object]:
        return {"input": input_path, "output": output_path, "strategy": self.strategy,
                "sites": [r.to_dict() for r in self.sites],
                "verify": self.verify.to_dict() if self.verify is not None else None,
                "notes": list(self.notes)}


def convert(model: onnx.ModelProto, strategy: str = "decompose", *,
            verify: Optional[VerifyOptions] = None, inplace: bool = False,
            options: Optional[Mapping[str, object]] = None) -> ConversionResult:
    """Rewrite every LRN site of ``model`` with ``strategy``.

    Args:
        model: the model; left untouched unless ``inplace``.
        strategy: a name from ``lrnconv.passes.REGISTRY``. Defaults to ``decompose``.
        verify: verify the result against the original with these options. Defaults
            to None (no verification).
        inplace: edit ``model`` itself (saves a copy of the weights; the CLI uses it).
        options: strategy options (``decompose``: ``window``, ``power``).

    Raises:
        UsageError: unknown strategy.
        UnsupportedModel: the strategy cannot handle a site (the reason names it).
    """
    registry = strategies()
    if strategy not in registry:
        raise UsageError(f"unknown strategy '{strategy}'; choose from {', '.join(registry)}")
    chosen = registry[strategy]
    sites = find_lrn(model)
    for site in sites:
        verdict = chosen.check(site)
        if verdict.status == NOT_APPLICABLE:
            raise UnsupportedModel(f"strategy '{strategy}' cannot rewrite LRN '{site.name}': {verdict.reason}")

    reference_bytes = model.SerializeToString() if verify is not None else None
    target = model
    if not inplace:
        target = onnx.ModelProto()
        target.CopyFrom(model)
    editable = EditableModel(target)
    ctx = RewriteContext(editable, NameAllocator(editable.all_names()), dict(options or {}))
    records = [chosen.rewrite(ctx, site) for site in sites]
    converted = editable.commit()
    for record in records:
        log.debug("%s: %s (%s)", record.site.name, record.status, record.reason)
    notes = [] if sites else ["no LRN site found; the model is unchanged"]
    result = ConversionResult(converted, strategy, records, notes=notes)
    if verify is not None:
        reference = onnx.ModelProto()
        reference.ParseFromString(reference_bytes)
        del reference_bytes
        result.verify = run_verify(reference, converted, verify.inputs, verify.providers,
                                   samples=verify.samples, seed=verify.seed, atol=verify.atol,
                                   rtol=verify.rtol, per_site=True)
        _attach_site_drift(result)
        result.notes.extend(result.verify.notes)
    log.info("%d LRN site(s) rewritten with %s", len(records), strategy)
    return result


def _attach_site_drift(result: ConversionResult) -> None:
    for record in result.sites:
        per_provider = {p: r.sites[record.site.output].to_dict()
                        for p, r in result.verify.providers.items() if record.site.output in r.sites}
        record.drift = per_provider or None
