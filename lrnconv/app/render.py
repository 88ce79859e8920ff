"""Plain-text and Markdown renderings of sites, drift reports and conversion results.

The result objects own their data and their JSON form (``to_dict``); this module only
turns them into lines a person reads in a terminal or a report file.
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence

from ..graph.targets import target_support
from ..maths.drift import Drift
from ..measure.importance import Effect, Importance
from ..measure.quantization import PROXY_NOTE, Int8Report
from ..measure.verification import DriftReport
from .inspection import Inspection


def _g(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> List[str]:
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def inspection_text(path: str, inspection: Inspection) -> str:
    """``inspect``'s table: one row per site, one column per strategy, then the reasons."""
    sites, verdicts = inspection.sites, inspection.verdicts
    if not sites:
        return f"{path}: no LRN site"
    names = list(next(iter(verdicts.values())).keys())
    rows = []
    for s in sites:
        params = f"size={s.size} alpha={s.alpha:g} beta={s.beta:g} bias={s.bias:g}"
        rows.append([s.name, s.family, params, _g(s.channels), f"{s.producer or 'input'} -> "
                     f"{','.join(s.consumers) or 'output'}", s.location]
                    + [verdicts[s.output][n].status for n in names])
    lines = [f"{path}: {len(sites)} LRN site(s)"]
    lines += _table(["site", "family", "parameters", "C", "producer -> consumers", "where"] + names, rows)
    lines.append("why:")
    for s in sites:
        lines += [f"  {s.name} {n}: {verdict.reason}" for n, verdict in verdicts[s.output].items()]
    lines.append("native LRN on targets:")
    for s in sites:
        lines += [f"  {s.name} {target}: {verdict}" for target, verdict in target_support(s).items()]
    return "\n".join(lines)


def drift_rows(drifts: Dict[str, Drift]) -> List[List[str]]:
    return [[name, _g(d.max_abs), _g(d.max_rel), _g(d.mean_abs), f"{d.cosine:.6f}",
             _g(d.top1), _g(d.top5), _g(d.needed_atol), _g(d.needed_rtol), _g(d.nonfinite or None),
             "pass" if d.passed else "FAIL"]
            for name, d in drifts.items()]


DRIFT_HEADER = ["tensor", "max abs", "max rel", "mean abs", "cosine", "top-1", "top-5",
                "needed atol", "needed rtol", "NaN/Inf", ""]


def _criterion(report: DriftReport) -> str:
    if report.tolerance is not None:
        return "pass if " + ", ".join(f"{k} {'<=' if k == 'max_rel' else '>='} {v:g}"
                                      for k, v in report.tolerance.to_dict().items())
    stat = next((d.error_stat for p in report.providers.values() for d in p.outputs.values()), "elemwise")
    rules = sorted({(atol, rtol) for atol, rtol in report.tolerances.values()})

    def rule(atol, rtol):
        if stat == "elemwise":
            return f"|a-b| <= {atol:g} + {rtol:g}*|ref|"
        return f"the {stat} |a-b| <= {atol:g} or the {stat} |a-b|/|ref| <= {rtol:g}"

    if len(rules) == 1:
        return "pass if " + rule(*rules[0])
    return "pass if " + "; ".join(f"{rule(a, r)} for {', '.join(o for o, t in report.tolerances.items() if t == (a, r))}"
                                  for a, r in rules)


def histogram_lines(provider: str, drifts: Dict[str, Drift], width: int = 40) -> List[str]:
    """A text histogram of each output's absolute error (one bar per bin that holds any)."""
    lines = []
    for name, d in drifts.items():
        if not d.histogram:
            continue
        lines.append(f"[{provider}] {name}: absolute error |a-b|")
        top = max(count for _, count in d.histogram)
        low = 0.0
        for edge, count in d.histogram:
            bar = "#" * max(1, round(width * count / top))
            lines.append(f"  {'< ' + format(edge, 'g') if low == 0 else format(low, 'g') + ' .. ' + format(edge, 'g'):>16}"
                         f"  {count:>10}  {bar}")
            low = edge
    return lines


def _nonfinite_lines(provider: str, drifts: Dict[str, Drift]) -> List[str]:
    return [f"[{provider}] {name}: {d.nonfinite} NaN/Inf elements, the first at index {list(d.first_nonfinite)}"
            for name, d in drifts.items() if d.nonfinite]


def verdict_line(report: DriftReport, label: str = "") -> str:
    """The one PASSED / FAILED / NOT VERIFIABLE line."""
    suffix = f" {label}" if label else ""
    if report.unverifiable:
        return "; ".join(f"NOT VERIFIABLE on {p}: {why}" for p, why in report.unverifiable.items()) + suffix
    if not report.passed:
        return "FAILED" + suffix
    if any(p.explained for p in report.providers.values()):
        return "PASSED" + suffix + " (the drift against the native reference is its LRN kernel's own error)"
    return "PASSED" + suffix


def report_text(report: DriftReport, label: str = "", show_notes: bool = True) -> str:
    """``verify``'s output: tables per provider, the kernel floor, the noise floor, one verdict line."""
    lines = [f"note: {n}" for n in report.notes] if show_notes else []
    against = "the exact reference (every LRN in float64)" if report.reference == "exact" else "the reference"
    lines.append(f"inputs: {report.inputs} compared against {against}; {_criterion(report)}")
    for provider, drift in report.providers.items():
        lines.append(f"[{provider}] outputs")
        lines += _table(DRIFT_HEADER, drift_rows(drift.outputs))
        lines += _nonfinite_lines(provider, drift.outputs)
        lines += histogram_lines(provider, drift.outputs)
        if drift.exact_outputs:
            lines.append(f"[{provider}] outputs against the exact reference (every LRN in float64)")
            lines += _table(DRIFT_HEADER, drift_rows(drift.exact_outputs))
        if drift.sites:
            lines.append(f"[{provider}] right after each LRN site")
            lines += _table(DRIFT_HEADER, drift_rows(drift.sites))
        if drift.kernel_floor:
            lines.append(f"[{provider}] kernel floor: the reference's LRN output against the LRN maths in "
                         "float64 on the same input")
            lines += _table(DRIFT_HEADER, drift_rows(drift.kernel_floor))
    for provider, floor in report.noise_floor.items():
        lines.append(f"[noise floor] reference on {provider} vs reference on cpu")
        lines += _table(DRIFT_HEADER, drift_rows(floor))
    lines.append(verdict_line(report, label))
    return "\n".join(lines)


def _range(summary: Dict[str, float]) -> str:
    return f"{summary['min']:.3g}..{summary['max']:.3g}"


def record_summary(record) -> str:
    """One line of what a strategy did at a site: fitted parameters, where, what auto rejected."""
    d = record.details
    parts = []
    if "folded" in d:
        parts.append(str(d["folded"]))
    if "scale" in d:
        parts.append(f"scale {_range(d['scale'])}")
    if "shift" in d:
        parts.append(f"shift {_range(d['shift'])}")
    if "constant" in d:
        parts.append(f"constant {d['constant']:.4g}" + (" (fitted)" if d.get("fitted") else ""))
    if "window" in d and record.strategy == "decompose" and record.site.family.is_lrn_node:
        parts.append(f"{d['window']} window, {d['power']} power")
    if "residual_rms" in d:
        parts.append(f"fit residual {d['residual_rms']:.3g} of rms(y)")
    rejected = [f"{a.strategy} ({a.reason})" for a in record.attempts if not a.accepted]
    if rejected:
        parts.append("auto rejected: " + "; ".join(rejected))
    return "; ".join(parts)


def records_text(records) -> str:
    """``convert``'s per-site table: strategy, exact or approximate, drift right after the site, details."""
    rows = []
    for r in records:
        site_drift = (r.drift or {}).get("cpu") or next(iter((r.drift or {}).values()), None)
        rows.append([r.site.name, r.site.family, r.strategy, r.status,
                     _g(site_drift["max_rel"]) if site_drift else "-", r.reason])
        summary = record_summary(r)
        if summary:
            rows.append(["", "", "", "", "", summary])
    header = ["site", "family", "strategy", "status", "site max rel", "reason / details"]
    return "\n".join(_table(header, rows)) if rows else "no LRN site"


def _mb(size) -> str:
    return "-" if size is None else f"{size / 1e6:.2f}"


def _options_line(report: Dict[str, object]) -> str:
    fp = report.get("fingerprint", {})
    versions, options = fp.get("versions", {}), fp.get("options", {})
    return (f"lrnconv {versions.get('lrnconv', '?')}, onnxruntime {versions.get('onnxruntime', '?')}, "
            f"onnx {versions.get('onnx', '?')}; strategies {', '.join(options.get('strategies', []))}; "
            f"providers {', '.join(options.get('providers', []))}; {options.get('samples')} samples; "
            f"atol {options.get('atol')}, rtol {options.get('rtol')}; timing runs {options.get('timing_runs')}"
            + ("; INT8: ONNX Runtime's static quantizer (QDQ, per-channel symmetric int8), a proxy for the "
               "target's own quantizer" if options.get("quantize") else ""))


def _int8_count(entries, report) -> str:
    quantized = sum(1 for e in entries if e.get("int8"))
    if not quantized:
        return ""
    return f"; INT8 {quantized - report.get('int8_failed', 0)} of {quantized} within tolerance"


def _int8_rows(entries) -> List[str]:
    """report.md's INT8 table: each converted model's INT8 model against the float original."""
    lines = ["", "## INT8", "", "| model | strategy | INT8 max rel | INT8 cosine | INT8 top-1 | latency ratio "
             "| size MB | float islands | result |", "|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        int8 = e.get("int8")
        if not int8:
            continue
        worst, latency = int8.get("worst") or {}, int8.get("latency") or {}
        islands = int8.get("float_islands") or []
        lines.append(f"| {e['model']} | {e['strategy']} | {_g(worst.get('max_rel'))} | {_g(worst.get('cosine'), 8)} | "
                     f"{_g(worst.get('top1'))} | {_g(latency.get('ratio'))} | {_mb(int8.get('output_bytes'))} | "
                     f"{len(islands)}{': ' + ', '.join(islands) if islands else ' (integer only)'} | "
                     f"{str(int8.get('status', '?')).upper()} |")
    return lines


def zoo_markdown(report: Dict[str, object], figure: Optional[str] = None) -> str:
    """``zoo``'s report.md: one row per model and strategy, the INT8 table, the figure, failures,
    missing models, notes.

    Args:
        figure: the drift-against-latency figure beside it, or None (no plots extra or no timing).
    """
    entries = report["entries"]
    shards = ", ".join(f"{s['index']}/{s['count']}" + (f" ({s['dir']})" if s.get("dir") else "")
                       for s in report.get("shards", []))
    lines = ["# lrnconv zoo report", "", f"Source: {report.get('source') or '-'}; "
             f"{report['models']} model(s), {report['passed']} passed, {report['failed']} failed, "
             f"{report.get('not_verifiable', 0)} not verifiable, {report['errors']} error(s)"
             + _int8_count(entries, report) + (f"; shards {shards}" if shards else "") + ".", "",
             _options_line(report) + ".", "",
             "| model | strategy | sites | exact | approx. | max rel | cosine | top-1 | latency ms before → after "
             "| ratio | size MB | time s | result |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        if e.get("error"):
            lines.append(f"| {e['model']} | {e['strategy']} | - | - | - | - | - | - | - | - | - | "
                         f"{_g(e.get('seconds'), 2)} | error |")
            continue
        worst = e.get("worst") or {}
        latency = e.get("latency") or {}
        timing = (f"{_g(latency.get('before_ms'))} → {_g(latency.get('after_ms'))}"
                  if latency.get("after_ms") is not None else "-")
        lines.append(f"| {e['model']} | {e['strategy']} | {e['sites']} | {e['exact_sites']} | "
                     f"{e['approximate_sites']} | {_g(worst.get('max_rel'))} | {_g(worst.get('cosine'), 8)} | "
                     f"{_g(worst.get('top1'))} | {timing} | {_g(latency.get('ratio'))} | "
                     f"{_mb(e.get('output_bytes'))} | {_g(e.get('seconds'), 2)} | "
                     f"{e['status'].upper()} |")
    if any(e.get("int8") for e in entries):
        lines += _int8_rows(entries)
    if figure:
        lines += ["", f"![drift against latency per model and strategy]({figure})"]
    failures = [e for e in entries if e.get("error")]
    if failures:
        lines += ["", "## Errors", ""] + [f"- {e['model']} {e['strategy']}: {e['error']}" for e in failures]
    if report.get("missing"):
        lines += ["", "## Missing from every shard", ""] + [f"- {name}" for name in report["missing"]]
    notes = sorted({n for e in entries for n in e.get("notes", [])}
                   | {e["latency"]["note"] for e in entries if (e.get("latency") or {}).get("note")})
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _pct(value) -> str:
    return "-" if value is None else f"{value:.2%}"


def _share(value: float) -> str:
    return f"{value * 100:.3g}%"


def _effect_cells(effect: Optional[Effect]) -> List[str]:
    if effect is None:
        return ["-", "-", "-"]
    return [_pct(effect.top1), f"{effect.cosine:.5f}", _g(effect.max_rel)]


def importance_text(importance: Importance) -> str:
    """``inspect --data``'s importance: the ranking table, per-strategy effects (float, INT8), the rules."""
    tol = ", ".join(f"{k} {'<=' if k == 'max_rel' else '>='} {v:g}" for k, v in importance.tolerance.to_dict().items())
    lines = [f"importance on {importance.evaluation_samples} held-out samples ({importance.calibration_samples} "
             f"others fitted the scales); verdicts judged by {tol}"]
    rows = []
    for s in importance.ranking:
        d = s.divisor.summary()
        remove, fold = s.alone.get("remove"), s.alone.get("fold")
        rows.append([str(s.rank), s.site.name, s.verdict, _share(s.unexplained), _share(s.unexplained_affine),
                     f"{d['p5']:.3g} / {d['p50']:.3g} / {d['p95']:.3g}"]
                    + _effect_cells(remove.float if remove else None) + _effect_cells(fold.float if fold else None))
    lines += _table(["rank", "site", "verdict", "unexplained", "(+shift)", "divisor p5 / p50 / p95",
                     "remove top-1", "cosine", "max rel", "fold top-1", "cosine", "max rel"], rows)
    quantized = importance.int8_settings is not None
    if quantized or any(len(s.alone) > 2 for s in importance.sites):
        lines.append("each strategy at one site alone (the others kept)" + (", float and INT8:" if quantized else ":"))
        header = ["site", "strategy", "status", "top-1", "cosine", "max rel"]
        if quantized:
            header += ["INT8 top-1", "INT8 cosine", "INT8 max rel"]
        rows = []
        for s in importance.ranking:
            for name, alone in s.alone.items():
                cells = [s.site.name, name, alone.status] + _effect_cells(alone.float)
                if quantized:
                    cells += _effect_cells(alone.int8)
                if alone.error:
                    cells.append(alone.error)
                rows.append(cells)
        if quantized:
            rows.append(["(none)", "original", "-", "100.00%", "1.00000", "0"] + _effect_cells(importance.int8_original))
        lines += _table(header, rows)
        if quantized:
            lines.append(f"INT8: {importance.int8_settings}, calibrated on the {importance.calibration_samples} "
                         "fitting samples; 'original' is the INT8 model with every LRN left in float")
    lines.append("why:")
    lines += [f"  {s.site.name} {s.verdict}: {s.rule}" for s in importance.ranking]
    return "\n".join(lines)


def int8_text(int8: Int8Report, float_report: Optional[DriftReport], label: str = "", proxy_note: bool = True) -> str:
    """Float drift and INT8 drift side by side, the float islands, one INT8 verdict line."""
    opset = f"; opset {int8.opset_from} -> {int8.opset_to}" if int8.opset_to != int8.opset_from else ""
    lines = [f"INT8 ({int8.settings}; calibrated on {int8.calibration_samples} samples{opset}) against the float "
             f"original on {int8.verify.samples} held-out samples"]
    header = ["tensor", "float max rel", "INT8 max rel", "float cosine", "INT8 cosine", "float top-1", "INT8 top-1"]
    for provider, drift in int8.verify.providers.items():
        floats = (float_report.providers[provider].outputs
                  if float_report is not None and provider in float_report.providers else {})
        rows = []
        for name, d in drift.outputs.items():
            f = floats.get(name)
            rows.append([name, _g(f.max_rel) if f else "-", _g(d.max_rel), f"{f.cosine:.6f}" if f else "-",
                         f"{d.cosine:.6f}", _pct(f.top1) if f else "-", _pct(d.top1)])
        lines.append(f"[{provider}] float vs INT8")
        lines += _table(header, rows)
        lines += _nonfinite_lines(provider, drift.outputs)
    if int8.float_islands:
        lines.append(f"float islands ({len(int8.float_islands)}; not deployable as it is on an integer-only target):")
        lines += [f"  {island.describe()}" for island in int8.float_islands]
    else:
        lines.append("float islands: none (every compute node is quantized)")
    for note in int8.notes:
        lines.append(f"note: {note}")
    if proxy_note:
        lines.append(f"note: {PROXY_NOTE}")
    lines.append("INT8 " + verdict_line(int8.verify, label))
    return "\n".join(lines)
