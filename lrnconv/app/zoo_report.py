"""The zoo's ``report.json`` (schema version 2), its Markdown and HTML siblings, and ``zoo merge``.

``report.json`` (every key always present; README "Report schema" is the user's copy)::

    schema_version   2 (1 = lrnconv <= 0.1.0's untagged {"models", "failed", "entries"})
    kind             "lrnconv-zoo-report"
    lrnconv_version  the version that wrote it
    fingerprint      {"versions": {lrnconv, onnx, onnxruntime},
                      "options": {strategies, providers, samples, seed, atol, rtol, timing_runs,
                                  quantize: null | {"int8": {exclude_decomposition, ...}}}}
    source           the SRC folder as given, or "builtin:<variant>"
    catalogue        every model name of the zoo, in zoo order (before sharding)
    assigned         the names this report covers (its shards' models)
    shards           [{"index", "count", "origin"}] ([] when not sharded; a merge lists each shard
                      with its "dir")
    missing          catalogue names with no entry (a merge of shards that not all ran)
    models, passed, failed, errors, not_verifiable, int8_failed
                     models with entries; entries whose float model passed, failed verification,
                     errored, or could not be run; entries whose INT8 model is over tolerance
    entries          one per model and strategy, in catalogue then strategy order:
        model, source, strategy
        status        the float model's: "passed" | "failed" (drift over tolerance) | "not verifiable" (written; ONNX
                      Runtime cannot run the converted model on a provider: ``unverifiable``
                      gives the reason per provider) | "error"
        passed        bool; error: the reason (str) or null
        output        the converted model, relative to the folder holding report.json; null on error
        output_bytes, source_bytes   file sizes (source: model + caffemodel; null for built-ins)
        sites, exact_sites, approximate_sites
        worst         {"max_rel", "cosine", "top1"} over every output and provider ({} on error)
        latency       {"provider", "batch", "threads", "runs", "before_ms", "after_ms", "ratio",
                       "note"} (medians; ratio = after / before) or null (not timed)
        int8          null, or with ``--quantize int8``: {"output", "output_bytes", "status", "passed",
                       "worst" (the INT8 model against the float original, on the held-out half),
                       "integer_only", "float_islands": ["OpType node", ...], "latency" (as above:
                       the INT8 model against the float original)}; ``passed`` is false when either
                       model is over tolerance
        seconds       wall time of this conversion and its verification
        notes         [str]
        report        what ``lrnconv convert --report`` writes for this model and strategy
    run              how this report was made, which varies between runs and is not part of a
                     result: {"started", "seconds", "executor", "workers", "scheduler"?,
                      "converted", "reused"} (a merge: {"merged_from": [dirs]})

``merge_reports`` refuses reports of another schema, other versions or other options,
and a model found in two of them; paths are rebased onto the merged report's folder.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, List, Mapping, Optional, Sequence

from ..base.errors import BadInput, UsageError
from ..base.files import same_file, write_files, write_text
from ..base.text import json_text
from .plots import ZOO_FIGURE, plots_available, zoo_figure_writer
from .render import zoo_markdown
from .report_html import zoo_html

SCHEMA_VERSION = 2
KIND = "lrnconv-zoo-report"
REPORT_FILES = ("report.md", "report.html", "report.json")
"""Written in this order: report.json, the machine-readable one, last."""


def build_report(entries: Sequence[Mapping[str, object]], *, fingerprint: Mapping[str, object],
                 catalogue: Sequence[str], assigned: Sequence[str], source: str,
                 shards: Sequence[Mapping[str, object]], run: Mapping[str, object]) -> Dict[str, object]:
    """A schema-2 report from the entries of the ``assigned`` models."""
    order = {name: i for i, name in enumerate(catalogue)}
    strategies = list(fingerprint.get("options", {}).get("strategies", []))
    rank = {s: i for i, s in enumerate(strategies)}
    entries = sorted(entries, key=lambda e: (order.get(e["model"], len(order)), str(e["model"]),
                                             rank.get(e["strategy"], len(rank))))
    present = {e["model"] for e in entries}
    return {
        "schema_version": SCHEMA_VERSION, "kind": KIND,
        "lrnconv_version": fingerprint.get("versions", {}).get("lrnconv", "unknown"),
        "fingerprint": dict(fingerprint), "source": source, "catalogue": list(catalogue),
        "assigned": [n for n in catalogue if n in set(assigned)] + sorted(set(assigned) - set(catalogue)),
        "shards": [dict(s) for s in shards], "missing": [n for n in catalogue if n in set(assigned) - present],
        "models": len(present), "passed": sum(1 for e in entries if e["status"] == "passed"),
        "failed": sum(1 for e in entries if e["status"] == "failed"),
        "errors": sum(1 for e in entries if e["status"] == "error"),
        "not_verifiable": sum(1 for e in entries if e["status"] == "not verifiable"),
        "int8_failed": sum(1 for e in entries if e.get("int8") and not e["int8"]["passed"]),
        "entries": list(entries), "run": dict(run)}


def write_figure(outdir: str, report: Mapping[str, object]) -> Optional[str]:
    """``drift_latency.png`` into ``outdir``, or None (no plots extra, or nothing was timed).

    A figure of an earlier run that this one cannot redraw is removed, so report.md never
    links a stale one.
    """
    path = os.path.join(outdir, ZOO_FIGURE)
    writer = zoo_figure_writer(report) if plots_available() else None
    if writer is None:
        if os.path.isfile(path):
            os.remove(path)
        return None
    write_files([(path, writer)])
    return ZOO_FIGURE


def write_reports(outdir: str, report: Mapping[str, object]) -> None:
    """The figure, report.md, report.html, then report.json into ``outdir`` (each atomically)."""
    figure = write_figure(outdir, report)
    texts = {"report.md": zoo_markdown(report, figure), "report.html": zoo_html(report, figure),
             "report.json": json_text(report)}
    for name in REPORT_FILES:
        write_text(os.path.join(outdir, name), texts[name])


def load_report(folder: str) -> Dict[str, object]:
    """The schema-2 report.json in ``folder``.

    Raises:
        BadInput: absent, unreadable, or of another schema.
    """
    path = os.path.join(folder, "report.json")
    try:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
    except FileNotFoundError:
        raise BadInput(f"{path}: no zoo report here (has this shard finished?)") from None
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: cannot read the zoo report ({exc})") from None
    if not isinstance(report, dict) or report.get("kind") != KIND:
        version = report.get("schema_version", 1) if isinstance(report, dict) else "?"
        raise BadInput(f"{path}: not a zoo report of schema {SCHEMA_VERSION} (found schema {version}); "
                       "rerun that zoo with this lrnconv")
    if report.get("schema_version") != SCHEMA_VERSION:
        raise BadInput(f"{path}: zoo report schema {report.get('schema_version')}; this lrnconv reads "
                       f"schema {SCHEMA_VERSION}")
    return report


def _difference(a: Mapping[str, object], b: Mapping[str, object]) -> str:
    parts = []
    for group in ("versions", "options"):
        x, y = a.get(group, {}), b.get(group, {})
        for key in sorted(set(x) | set(y)):
            if x.get(key) != y.get(key):
                parts.append(f"{key} {json.dumps(x.get(key))} vs {json.dumps(y.get(key))}")
    return ", ".join(parts) or "fingerprints differ"


def _rebase(path: Optional[str], shard_dir: str, outdir: str) -> Optional[str]:
    if not path:
        return path
    absolute = os.path.join(os.path.abspath(shard_dir), *str(path).split("/"))
    return os.path.relpath(absolute, os.path.abspath(outdir)).replace(os.sep, "/")


def merge_reports(folders: Sequence[str], outdir: str) -> Dict[str, object]:
    """One report from the reports of the shard output folders ``folders``, written to ``outdir``.

    Raises:
        BadInput: a folder has no readable schema-2 report.
        UsageError: the shards were made with other versions or options, a model is in two
            of them, or ``outdir`` is one of them (its report would be replaced).
    """
    if not folders:
        raise UsageError("zoo merge: give the shard output folders to merge")
    reports = [load_report(f) for f in folders]
    first = reports[0]
    for folder, report in zip(folders[1:], reports[1:]):
        if report["fingerprint"] != first["fingerprint"]:
            raise UsageError(f"zoo merge: {folder} was made with other versions or options than {folders[0]} "
                             f"({_difference(report['fingerprint'], first['fingerprint'])}); "
                             "rerun it with the same ones")
    if os.path.exists(outdir) and any(same_file(outdir, f) for f in folders):
        raise UsageError(f"zoo merge: -o {outdir} is one of the shards; its report would be replaced")
    owner: Dict[str, str] = {}
    entries: List[Dict[str, object]] = []
    catalogue: List[str] = list(first["catalogue"])
    assigned: List[str] = []
    shards: List[Dict[str, object]] = []
    for folder, report in zip(folders, reports):
        for name in report["assigned"]:
            if name in owner:
                raise UsageError(f"zoo merge: model '{name}' is in both {owner[name]} and {folder}")
            owner[name] = folder
        assigned += report["assigned"]
        catalogue += sorted(set(report["catalogue"]) - set(catalogue))
        shards += [dict(s, dir=folder) for s in report["shards"]] or [{"index": 0, "count": 1, "dir": folder}]
        for entry in report["entries"]:
            entry = dict(entry, output=_rebase(entry.get("output"), folder, outdir))
            if isinstance(entry.get("int8"), dict):
                entry["int8"] = dict(entry["int8"], output=_rebase(entry["int8"].get("output"), folder, outdir))
            if isinstance(entry.get("report"), dict):
                entry["report"] = dict(entry["report"], output=entry["output"])
                if isinstance(entry["report"].get("int8"), dict) and isinstance(entry.get("int8"), dict):
                    entry["report"]["int8"] = dict(entry["report"]["int8"], output=entry["int8"]["output"])
            entries.append(entry)
    sources = sorted({r["source"] for r in reports})
    merged = build_report(entries, fingerprint=first["fingerprint"], catalogue=catalogue,
                          assigned=catalogue, source=sources[0] if len(sources) == 1 else ", ".join(sources),
                          shards=shards, run={"started": time.time(), "merged_from": list(folders)})
    os.makedirs(outdir, exist_ok=True)
    write_reports(outdir, merged)
    return merged
