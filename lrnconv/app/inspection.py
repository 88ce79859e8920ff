"""``inspect``: every LRN site of a model, what each strategy would do with it and why.

Static by default: nothing runs. The strategies' checks see the graph (opset, ranks,
producers, shared weights), so the reasons say, for example, where ``fold`` would put the
scale or why it could only be an explicit ``Mul``. Each site also says whether common
deployment targets could keep it as a native LRN (``lrnconv.graph.targets``).

With data, it also measures how much each site matters on that data
(``lrnconv.measure.importance``): the energy no per-channel scale explains, the divisor's
spread, the end-to-end effect of removing or folding that site alone on held-out samples
(and, with ``quantize``, of each variant's INT8 model), a verdict with its rule and a
ranking. Without data, the result says that importance needs data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import onnx

from ..engine.plan import verdicts
from ..engine.protocol import Verdict
from ..graph.preserve import EditableModel
from ..graph.sites import LrnSite, find_lrn
from ..graph.targets import target_support
from ..maths.drift import Tolerance
from ..measure.importance import DEFAULT_STRATEGIES, Importance, measure_importance
from ..measure.quantization import PROXY_NOTE, Int8Options
from ..runtime.inputs import Samples, array_samples
from ..runtime.runnable import RunnableReference
from .conversion import quantize_options

NEEDS_DATA = ("importance needs data: give --data (the API: inspect(model, data=...)) to measure, per site, "
              "the energy no per-channel scale explains, the divisor's spread and the effect of removing or "
              "folding it alone")


@dataclass
class Inspection:
    """The sites of a model, every strategy's verdict per site, native-LRN support per target,
    and, when data was given, every site's importance."""

    sites: List[LrnSite]
    verdicts: Dict[str, Dict[str, Verdict]]
    """Site output -> strategy name -> verdict."""
    importance: Optional[Importance] = None
    notes: List[str] = field(default_factory=list)

    def targets(self, site: LrnSite) -> Dict[str, str]:
        return target_support(site)

    def to_dict(self, model_path: str) -> Dict[str, object]:
        """``inspect --json``'s document (``importance`` per site when measured, else null)."""
        measured = {s.site.output: s for s in self.importance.sites} if self.importance else {}
        sites = []
        for s in self.sites:
            entry = dict(s.to_dict(), strategies={n: v.status.value for n, v in self.verdicts[s.output].items()},
                         reasons={n: v.reason for n, v in self.verdicts[s.output].items()},
                         targets=target_support(s))
            entry["importance"] = measured[s.output].to_dict() if s.output in measured else None
            sites.append(entry)
        return {"model": model_path, "sites": sites,
                "importance": self.importance.to_dict() if self.importance else None,
                "notes": list(self.notes)}


def inspect(model: onnx.ModelProto, data: Union[None, Mapping[str, np.ndarray], Samples] = None, *,
            tolerance: Optional[Tolerance] = None, strategies: Sequence[str] = DEFAULT_STRATEGIES,
            quantize: Union[None, str, Int8Options] = None, provider: str = "cpu", reference: str = "native",
            options: Optional[Mapping[str, object]] = None, input_values: Optional[Mapping[str, np.ndarray]] = None,
            drop_nonfinite: bool = False) -> Inspection:
    """Find every LRN site of ``model``, ask every strategy about each one, and with data measure importance.

    Args:
        data: arrays keyed by input name (leading axis = samples) or ``Samples``; the first
            half fits ``fold``'s scale (and calibrates the INT8 quantizer), the second half is
            what every effect is measured on. Defaults to None: static only, with a note.
        tolerance: what the verdicts judge the effects by (``auto``'s). Defaults to ``Tolerance()``.
        strategies: applied to each site alone; remove and fold always are.
        quantize: ``"int8"`` or ``Int8Options``: also measure the INT8 models.
        provider: where to run.
        reference: ``native`` or ``exact`` (every LRN in float64).

    Raises:
        InvalidSite: an LRN node with illegal attributes.
        BadInput: data that does not fit the model, or fewer than 2 samples.
    """
    sites = find_lrn(model)
    inspection = Inspection(sites, verdicts(EditableModel(model), sites))
    if data is None:
        if sites:
            inspection.notes.append(NEEDS_DATA)
        return inspection
    if not sites:
        inspection.notes.append("no LRN site: nothing to measure")
        return inspection
    samples = data if isinstance(data, Samples) else array_samples(model, data, values=input_values)
    runnable = RunnableReference(model, sites, reference)
    quantize = quantize_options(quantize)
    inspection.importance = measure_importance(runnable, samples, provider=provider, tolerance=tolerance,
                                               strategies=strategies, quantize=quantize, options=options,
                                               drop_nonfinite=drop_nonfinite)
    inspection.notes.extend(inspection.importance.notes)
    if quantize is not None:
        inspection.notes.append(PROXY_NOTE)
    return inspection

