"""Applying a rewrite plan: for each site, in graph order, the strategy the plan names.

A plan maps each site (by its output tensor) to a strategy name. Every site is checked
against its strategy, and the statistics it needs are looked up, before the first edit;
then the sites are rewritten one after another. When a site is bypassed (its consumers
now read its input), a later site that read it is handed the tensor that carries its
value now.

``rewrite`` works on a ``ModelProto`` and splices the result back losslessly
(``lrnconv.graph.preserve``); ``rewrite_graph`` runs the same passes on an
onnx-graphsurgeon ``Graph`` directly, for pipelines that already hold one.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import onnx
import onnx_graphsurgeon as gs

from ..base.errors import UnsupportedModel, UsageError
from ..graph.metadata import forget_sites
from ..graph.nodes import NameAllocator
from ..graph.preserve import EditableGraphs, EditableModel, quiet_graphsurgeon
from ..graph.sites import LrnSite, find_lrn
from ..maths.stats import SiteStats
from ..passes import REGISTRY
from .protocol import RewriteContext, SiteRecord, Strategy, Verdict

log = logging.getLogger(__name__)

Plan = Mapping[str, str]
"""Site output tensor -> strategy name."""


def strategy_named(name: str) -> Strategy:
    """The registered strategy called ``name``.

    Raises:
        UsageError: no strategy has that name (the valid ones are listed).
    """
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown strategy '{name}'; choose from {', '.join(REGISTRY)}") from None


def uniform_plan(sites: Sequence[LrnSite], strategy: str) -> Dict[str, str]:
    """The plan that rewrites every site with one strategy."""
    return {site.output: strategy for site in sites}


def verdicts(graphs: EditableGraphs, sites: Sequence[LrnSite]) -> Dict[str, Dict[str, Verdict]]:
    """Every strategy's answer for every site (site output -> strategy name -> verdict)."""
    return {site.output: {name: strategy.check(site, graphs) for name, strategy in REGISTRY.items()}
            for site in sites}


def _check_plan(graphs: EditableGraphs, sites: Sequence[LrnSite], plan: Plan,
                stats: Mapping[str, SiteStats]) -> None:
    """Refuse, before any edit, what a strategy cannot do or lacks the data for."""
    for site in sites:
        strategy = strategy_named(plan[site.output])
        verdict = strategy.check(site, graphs)
        if not verdict.applicable:
            raise UnsupportedModel(f"strategy '{strategy.name}' cannot rewrite LRN '{site.name}': {verdict.reason}")
        if not strategy.needs_stats(site):
            continue
        found = stats.get(site.output)
        if found is None:
            raise UsageError(
                f"strategy '{strategy.name}' needs calibration data for LRN '{site.name}' "
                f"(alpha = {site.alpha:g}, so its scale depends on the data): give calibration "
                f"inputs (--calib) or statistics keyed by '{site.output}'")
        if site.channels is not None and found.channels != site.channels:
            raise UsageError(f"calibration statistics for LRN '{site.name}' have {found.channels} "
                             f"channels; the site has {site.channels}")


def apply_plan(graphs: EditableGraphs, sites: Sequence[LrnSite], plan: Plan, *,
               stats: Optional[Mapping[str, SiteStats]] = None,
               options: Optional[Mapping[str, object]] = None) -> List[SiteRecord]:
    """Rewrite every site of ``graphs`` as ``plan`` says; the one place passes run.

    Raises:
        UsageError: an unknown strategy, or a site without the statistics it needs.
        UnsupportedModel: a strategy cannot handle its site (the reason names it).
    """
    stats = dict(stats or {})
    _check_plan(graphs, sites, plan, stats)
    ctx = RewriteContext(graphs, NameAllocator(graphs.all_names()), stats, dict(options or {}))
    records: List[SiteRecord] = []
    carriers: Dict[str, str] = {}
    for site in sites:
        strategy = REGISTRY[plan[site.output]]
        if site.input in carriers:  # an earlier site was bypassed: its input carries the value now
            site = dataclasses.replace(site, input=carriers[site.input])
        record = strategy.rewrite(ctx, site)
        if record.tensor and record.tensor != site.output:
            carriers[site.output] = record.tensor
        log.debug("%s: %s %s (%s)", site.name, record.strategy, record.status, record.reason)
        records.append(record)
    return records


def rewrite(model: onnx.ModelProto, plan: Plan, *, sites: Optional[Sequence[LrnSite]] = None,
            stats: Optional[Mapping[str, SiteStats]] = None,
            options: Optional[Mapping[str, object]] = None,
            inplace: bool = False) -> Tuple[onnx.ModelProto, List[SiteRecord]]:
    """Apply a plan to a model; everything no rewrite touched is kept as it was.

    Args:
        model: the model; left untouched unless ``inplace``.
        plan: site output -> strategy name, for every site.
        sites: the model's sites when the caller already has them. Defaults to None
            (discovered here).
        stats: calibration statistics keyed by site output, for the sites that need them.
        options: strategy options (``decompose``: ``window``, ``power``).
        inplace: edit ``model`` itself (saves a copy of the weights).

    Returns:
        (the rewritten model, one record per site in graph order).
    """
    sites = find_lrn(model) if sites is None else sites
    target = model
    if not inplace:
        target = onnx.ModelProto()
        target.CopyFrom(model)
    editable = EditableModel(target)
    records = apply_plan(editable, sites, plan, stats=stats, options=options)
    converted = editable.commit()
    forget_sites(converted, [r.site.name for r in records if not r.remains])
    return converted, records


def rewrite_graph(graph: gs.Graph, plan: Union[str, Plan], *,
                  stats: Optional[Mapping[str, SiteStats]] = None,
                  options: Optional[Mapping[str, object]] = None) -> List[SiteRecord]:
    """Run the passes on an onnx-graphsurgeon graph, editing it in place.

    The sites are discovered on an export of the graph (``find_lrn``); the passes then edit
    ``graph`` itself and leave it topologically sorted. Nothing outside the sites is
    removed (call ``graph.cleanup()`` yourself if you want dead nodes gone).

    Args:
        graph: the graph to edit.
        plan: a strategy name for every site, or a plan (site output -> strategy name).
        stats, options: as for ``rewrite``.

    Returns:
        One record per site in graph order.
    """
    with quiet_graphsurgeon():
        sites = find_lrn(gs.export_onnx(graph, do_type_check=False))
    if isinstance(plan, str):
        plan = uniform_plan(sites, plan)
    return apply_plan(EditableGraphs.of(graph), sites, plan, stats=stats, options=options)
