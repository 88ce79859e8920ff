"""The original model as ONNX Runtime can run it, built once and handed to every measurement.

ONNX Runtime refuses some legal LRN models: at session creation (even ``size``,
``alpha = 0``) or only at run time (rank != 4 on CPU). Where it refuses the original on a
provider, the reference is the model with every LRN rewritten by ``decompose`` (exact,
everything else unchanged), and a note says so and why. The refusal is probed once per
provider and the decomposition made at most once, whatever calibration, ``auto`` and
verification then ask of the reference.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Set

import numpy as np
import onnx

from ..base.errors import UnsupportedModel
from ..engine.plan import rewrite, uniform_plan
from ..graph.sites import LrnSite
from ..passes.decompose import decompose
from .providers import short_name
from .sessions import RuntimeRefused, Session, create_session


class RunnableReference:
    """Sessions of the original model, or of its exact decomposition where ORT refuses it.

    Args:
        model: the original model (not modified; the caller must not modify it either).
        sites: its sites (``lrnconv.find_lrn``).
    """

    def __init__(self, model: onnx.ModelProto, sites: Sequence[LrnSite]):
        self.model = model
        self.sites = list(sites)
        self._refusals: Dict[str, str] = {}
        self._accepted: Set[str] = set()
        self._decomposed: Optional[onnx.ModelProto] = None

    def session(self, provider: str, probe: Mapping[str, np.ndarray], expose: Sequence[str] = ()) -> Session:
        """A session on ``provider`` with ``expose`` as extra outputs.

        Args:
            probe: inputs whose first sample is run, the first time a provider is asked
                for, to find the refusals ONNX Runtime only raises at run time.

        Raises:
            UnsupportedModel: ONNX Runtime cannot run even the decomposition.
        """
        if provider not in self._refusals:
            try:
                session = create_session(self.model, provider, expose)
                if provider not in self._accepted:
                    session.run({k: v[:1] for k, v in probe.items()})
                    self._accepted.add(provider)
                return session
            except RuntimeRefused as refusal:
                if not any(s.family.is_lrn_node for s in self.sites):
                    raise UnsupportedModel(f"ONNX Runtime cannot run the reference model on {provider}: "
                                           f"{refusal}") from None
                self._refusals[provider] = str(refusal)
        try:
            return create_session(self._decomposition(), provider, expose)
        except RuntimeRefused as again:
            raise UnsupportedModel(f"ONNX Runtime cannot run the reference model on {provider}: {again}") from None

    def note(self, provider: str) -> Optional[str]:
        """Why the reference on ``provider`` is the decomposition, or None."""
        refusal = self._refusals.get(provider)
        if refusal is None:
            return None
        return (f"ONNX Runtime refused the reference on {short_name(provider)} ({refusal}); "
                "the reference is evaluated through its exact decomposition "
                "(every LRN -> primitive ops, everything else unchanged)")

    def _decomposition(self) -> onnx.ModelProto:
        if self._decomposed is None:
            self._decomposed, _ = rewrite(self.model, uniform_plan(self.sites, decompose.name), sites=self.sites)
        return self._decomposed
