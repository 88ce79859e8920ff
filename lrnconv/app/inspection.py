"""``inspect``: every LRN site of a model, what each strategy would do with it and why.

Static: nothing runs. The strategies' checks see the graph (opset, ranks, producers,
shared weights), so the reasons say, for example, where ``fold`` would put the scale or
why it could only be an explicit ``Mul``. Each site also says whether common deployment
targets could keep it as a native LRN (``lrnconv.graph.targets``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import onnx

from ..engine.plan import verdicts
from ..engine.protocol import Verdict
from ..graph.preserve import EditableModel
from ..graph.sites import LrnSite, find_lrn
from ..graph.targets import target_support


@dataclass
class Inspection:
    """The sites of a model, every strategy's verdict per site, and native-LRN support per target."""

    sites: List[LrnSite]
    verdicts: Dict[str, Dict[str, Verdict]]
    """Site output -> strategy name -> verdict."""

    def targets(self, site: LrnSite) -> Dict[str, str]:
        return target_support(site)

    def to_dict(self, model_path: str) -> Dict[str, object]:
        """``inspect --json``'s document."""
        return {"model": model_path, "sites": [
            dict(s.to_dict(), strategies={n: v.status.value for n, v in self.verdicts[s.output].items()},
                 reasons={n: v.reason for n, v in self.verdicts[s.output].items()},
                 targets=target_support(s)) for s in self.sites]}


def inspect(model: onnx.ModelProto) -> Inspection:
    """Find every LRN site of ``model`` and ask every strategy about each one.

    Raises:
        InvalidSite: an LRN node with illegal attributes.
    """
    sites = find_lrn(model)
    return Inspection(sites, verdicts(EditableModel(model), sites))
