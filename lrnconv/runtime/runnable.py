"""The original model as ONNX Runtime can run it, built once and handed to every measurement.

Two references exist. The *native* one is the model as ONNX Runtime runs it, its own LRN
kernel included; the *exact* one is the original with every LRN evaluated exactly in float64
(``decompose`` with ``compute: float64``: the site input cast to float64, the LRN maths by
plain summation, the result rounded once to the site's type; everything else unchanged).
ONNX Runtime's CPU LRN kernel keeps a running window sum that loses precision on large
activations, so the exact reference is what that kernel's own error is measured against.

ONNX Runtime refuses some legal LRN models: at session creation (even ``size``,
``alpha = 0``) or only at run time (rank != 4 on CPU). Where it refuses the original on a
provider, the exact reference stands in for it, and a note says so and why. The refusal is
probed once per provider and the exact model made at most once, whatever calibration,
``auto`` and verification then ask of the reference.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Set

import onnx

from ..base.errors import RunFailed, UsageError
from ..engine.plan import rewrite, uniform_plan
from ..graph.sites import LrnSite
from ..passes.decompose import decompose
from .inputs import Samples, input_specs, rows_per_run
from .providers import short_name
from .sessions import RuntimeRefused, Session, create_session

REFERENCES = ("native", "exact")
EXACT_OPTIONS = {"compute": "float64", "window": "shifts"}
"""``decompose`` options that make the exact reference."""


class RunnableReference:
    """Sessions of the reference: the original as ONNX Runtime runs it, or the exact model.

    Args:
        model: the original model (not modified; the caller must not modify it either).
        sites: its sites (``lrnconv.find_lrn``).
        mode: ``native`` (the model as ONNX Runtime runs it, the default) or ``exact``
            (every LRN evaluated exactly in float64).
    """

    def __init__(self, model: onnx.ModelProto, sites: Sequence[LrnSite], mode: str = "native"):
        if mode not in REFERENCES:
            raise UsageError(f"unknown reference '{mode}'; choose from {', '.join(REFERENCES)}")
        self.model = model
        self.sites = list(sites)
        self.mode = mode
        self._refusals: Dict[str, str] = {}
        self._accepted: Set[str] = set()
        self._exact: Optional[onnx.ModelProto] = None

    @property
    def has_native_lrn(self) -> bool:
        """Whether the model holds an LRN node that ONNX Runtime's own kernel computes."""
        return any(s.family.is_lrn_node for s in self.sites)

    def is_exact(self, provider: str) -> bool:
        """Whether the reference on ``provider`` is the exact model (asked for, or stood in)."""
        return self.mode == "exact" or provider in self._refusals or not self.has_native_lrn

    def session(self, provider: str, probe: Samples, expose: Sequence[str] = ()) -> Session:
        """A session of the reference on ``provider`` with ``expose`` as extra outputs.

        Args:
            probe: samples whose first one is run, the first time a provider is asked for, to
                find the refusals ONNX Runtime only raises at run time.

        Raises:
            RunFailed: ONNX Runtime cannot run even the exact model.
        """
        if self.mode == "native" and provider not in self._refusals:
            try:
                session = create_session(self.model, provider, expose)
                if provider not in self._accepted:
                    rows, pad = rows_per_run(input_specs(self.model), probe.rows_hint)
                    session.run_chunk(next(probe.subset(0, 1).chunks(rows, pad)))
                    self._accepted.add(provider)
                return session
            except RuntimeRefused as refusal:
                if not self.has_native_lrn:
                    raise RunFailed(f"ONNX Runtime cannot run the reference model on {provider}: {refusal}",
                                    "reference") from None
                self._refusals[provider] = str(refusal)
        return self.exact_session(provider, expose)

    def exact_session(self, provider: str, expose: Sequence[str] = ()) -> Session:
        """A session of the exact model (every LRN in float64).

        Raises:
            RunFailed: ONNX Runtime cannot run it.
        """
        try:
            return create_session(self.exact_model(), provider, expose)
        except RuntimeRefused as again:
            raise RunFailed(f"ONNX Runtime cannot run the reference model on {provider}: {again}",
                            "reference") from None

    def note(self, provider: str) -> Optional[str]:
        """What the reference on ``provider`` is, when it is not the model as ONNX Runtime runs it."""
        refusal = self._refusals.get(provider)
        if refusal is not None:
            return (f"ONNX Runtime refused the reference on {short_name(provider)} ({refusal}); the reference "
                    "is the original with every LRN evaluated exactly in float64, everything else unchanged "
                    "(what --reference exact compares against)")
        if self.mode == "exact" and self.has_native_lrn:
            return ("the reference is the original with every LRN evaluated exactly in float64, everything "
                    "else unchanged (--reference exact)")
        return None

    def exact_model(self) -> onnx.ModelProto:
        """The original with every LRN evaluated exactly in float64 (made once)."""
        if self._exact is None:
            self._exact, _ = rewrite(self.model, uniform_plan(self.sites, decompose.name), sites=self.sites,
                                     options=EXACT_OPTIONS)
        return self._exact
