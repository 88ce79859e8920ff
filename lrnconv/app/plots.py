"""Figures (the optional ``plots`` extra: matplotlib): ``inspect --data --plot DIR`` and the zoo's.

``inspect``: one PNG per site, ``DIR/<site>.png``, two panels:

* the distribution of the site's divisor ``(bias + alpha/size * sum x^2)^beta`` on the
  held-out samples (log axis; p5, p50 and p95 marked): how far the LRN is from a constant;
* per strategy applied to that site alone, the top-1 agreement with the original (cosine
  where the model has no class scores), float and, when measured, INT8, with the tolerance
  the verdicts judge by.

The zoo: ``drift_latency.png`` beside ``report.md`` (which links it): each model and
strategy's worst max rel against its latency ratio to the original, float and (with
``--quantize int8``) INT8, so the cheap-and-close rewrites sit bottom left.

Matplotlib is used through its object API and the Agg canvas (no pyplot, no display, no
global backend switch). Every file goes through lrnconv's one write path: this module only
hands back writers. Without matplotlib, ``plots_available`` is False and the CLI says how to
get the figures; nothing else depends on it.
"""
from __future__ import annotations

import os
import re
from typing import Iterator, List, Mapping, Optional, Tuple

import numpy as np

from ..base.files import Writer
from ..measure.importance import Importance, SiteImportance

PLOTS_HINT = ("figures need the optional plots extra (matplotlib): pip install -e \".[plots]\" "
              "(or pip install matplotlib); everything else ran without it")
MAX_BARS = 60
ZOO_FIGURE = "drift_latency.png"
DRIFT_FLOOR = 1e-9
"""A max rel of 0 (an unchanged model) is drawn here on the log axis."""
MAX_LABELLED_MODELS = 12


def plots_available() -> bool:
    """Whether matplotlib can be imported (the ``plots`` extra)."""
    try:
        import matplotlib  # noqa: F401  (a third-party import: the extra is optional)
    except ImportError:
        return False
    return True


def figure_name(site_name: str) -> str:
    """A file name for a site's figure (path separators and odd characters replaced)."""
    return (re.sub(r"[^A-Za-z0-9._-]+", "_", site_name).strip("._") or "site") + ".png"


def _divisor_panel(ax, importance: SiteImportance) -> None:
    edges, counts = importance.divisor.occupied()
    if counts.size == 0:
        ax.text(0.5, 0.5, "no positive divisor seen", ha="center", va="center", transform=ax.transAxes)
        return
    group = max(1, int(np.ceil(counts.size / MAX_BARS)))
    padded = np.concatenate([counts, np.zeros((-counts.size) % group, dtype=counts.dtype)])
    merged = padded.reshape(-1, group).sum(axis=1)
    merged_edges = edges[::group]
    if merged_edges.size < merged.size + 1:
        merged_edges = np.append(merged_edges, edges[-1])
    shares = merged / max(importance.divisor.count, 1)
    widths = np.diff(merged_edges[:merged.size + 1])
    ax.bar(merged_edges[:merged.size], shares, width=widths, align="edge", color="#4C72B0", edgecolor="none")
    if merged_edges[0] > 0 and merged_edges[-1] / merged_edges[0] > 4:
        ax.set_xscale("log")
    summary = importance.divisor.summary()
    for key, style in (("p5", ":"), ("p50", "-"), ("p95", ":")):
        ax.axvline(summary[key], color="#C44E52", linestyle=style, linewidth=1)
        ax.text(summary[key], ax.get_ylim()[1] * 0.95, f" {key} {summary[key]:.3g}", color="#C44E52",
                fontsize=7, va="top")
    ax.set_xlabel("divisor (bias + alpha/size * sum x^2)^beta")
    ax.set_ylabel("share of elements")
    ax.set_title(f"divisor on {importance.divisor.count:,} elements; "
                 f"unexplained by a scale: {importance.unexplained:.1%}", fontsize=9)


def _drift_panel(ax, importance: SiteImportance, tolerance, quantized: bool, original_int8) -> None:
    names = list(importance.alone)
    use_top1 = any(a.float is not None and a.float.top1 is not None for a in importance.alone.values())
    metric = (lambda e: e.top1) if use_top1 else (lambda e: e.cosine)
    floats = [metric(a.float) if a.float is not None else np.nan for a in importance.alone.values()]
    ints = [metric(a.int8) if a.int8 is not None else np.nan for a in importance.alone.values()]
    x = np.arange(len(names))
    width = 0.38 if quantized else 0.6
    ax.bar(x - (width / 2 if quantized else 0), floats, width, label="float", color="#4C72B0")
    if quantized:
        ax.bar(x + width / 2, ints, width, label="INT8 (ONNX Runtime)", color="#DD8452")
        if original_int8 is not None:
            ax.axhline(metric(original_int8), color="#DD8452", linestyle="--", linewidth=1,
                       label="INT8 of the original (LRN in float)")
    limit = tolerance.top1 if use_top1 else tolerance.cosine
    ax.axhline(limit, color="#55A868", linestyle=":", linewidth=1, label=f"tolerance {limit:g}")
    values = [v for v in floats + ints if np.isfinite(v)] + [limit]
    low = min(values)
    ax.set_ylim(max(0.0, low - (1 - low) * 0.15 - 0.005), 1.0 + (1 - low) * 0.05 + 0.001)
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylabel("top-1 agreement with the original" if use_top1 else "cosine to the original")
    ax.set_title("this site alone rewritten, others kept", fontsize=9)
    ax.legend(fontsize=7, loc="best", framealpha=0.9)


def site_figure_writer(importance: Importance, site: SiteImportance) -> Writer:
    """A writer of one site's figure (PNG)."""
    def write(path: str) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(11, 4), dpi=110)
        FigureCanvasAgg(figure)
        left, right = figure.subplots(1, 2)
        _divisor_panel(left, site)
        _drift_panel(right, site, importance.tolerance, importance.int8_settings is not None,
                     importance.int8_original)
        figure.suptitle(f"LRN '{site.site.name}': {site.verdict} (rank {site.rank} of {len(importance.sites)}; "
                        f"{importance.evaluation_samples} held-out samples)", fontsize=10)
        figure.tight_layout()
        figure.savefig(path, format="png")
    return write


def figure_writers(importance: Importance, folder: str) -> List[Tuple[str, Writer]]:
    """(path, writer) for every site's figure in ``folder``, for ``lrnconv.base.files.write_files``."""
    items, used = [], set()
    for site in importance.ranking:
        name = figure_name(site.site.name)
        while name in used:
            name = name[:-4] + "_.png"
        used.add(name)
        items.append((os.path.join(folder, name), site_figure_writer(importance, site)))
    return items


def _zoo_points(report: Mapping[str, object]) -> Iterator[Tuple[str, str, str, float, float]]:
    """(strategy, "float" | "INT8", model, latency ratio, worst max rel) of every timed entry."""
    for entry in report.get("entries", []):
        parts = [("float", entry)] + ([("INT8", entry["int8"])] if entry.get("int8") else [])
        for kind, part in parts:
            ratio = (part.get("latency") or {}).get("ratio")
            rel = (part.get("worst") or {}).get("max_rel")
            if ratio is not None and rel is not None:
                yield entry["strategy"], kind, entry["model"], float(ratio), float(rel)


def zoo_figure_writer(report: Mapping[str, object]) -> Optional[Writer]:
    """A writer of the zoo's drift-against-latency figure, or None when no entry was timed."""
    points = list(_zoo_points(report))
    if not points:
        return None

    def write(path: str) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(8, 5.5), dpi=110)
        FigureCanvasAgg(figure)
        ax = figure.subplots()
        strategies = list(dict.fromkeys(p[0] for p in points))
        colours = {s: f"C{i % 10}" for i, s in enumerate(strategies)}
        label_models = len({p[2] for p in points}) <= MAX_LABELLED_MODELS
        for strategy in strategies:
            for kind, marker in (("float", "o"), ("INT8", "s")):
                chosen = [p for p in points if p[0] == strategy and p[1] == kind]
                if not chosen:
                    continue
                xs = [p[3] for p in chosen]
                ys = [max(p[4], DRIFT_FLOOR) for p in chosen]
                filled = kind == "float"
                ax.scatter(xs, ys, marker=marker, s=36, label=f"{strategy}" + ("" if filled else " INT8"),
                           facecolors=colours[strategy] if filled else "none", edgecolors=colours[strategy])
                if label_models:
                    for p, y in zip(chosen, ys):
                        ax.annotate(p[2], (p[3], y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_yscale("log")
        ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("latency / original's (batch 1, one thread; left of the line: faster)")
        ax.set_ylabel("worst max rel at the outputs (vs the float original)")
        if any(p[4] < DRIFT_FLOOR for p in points):
            ax.axhline(DRIFT_FLOOR, color="grey", linestyle="--", linewidth=0.8)
            ax.text(ax.get_xlim()[0], DRIFT_FLOOR, f" max rel 0 drawn at {DRIFT_FLOOR:g}", fontsize=7, va="bottom")
        ax.set_title(f"lrnconv zoo: {report.get('models', 0)} model(s), drift against latency", fontsize=10)
        ax.legend(fontsize=7, loc="best", framealpha=0.9)
        figure.tight_layout()
        figure.savefig(path, format="png")
    return write
