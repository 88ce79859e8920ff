"""``zoo``'s report.html: one self-contained page (inline CSS and plain JavaScript, no network).

One row per model and strategy: result, LRN sites (each with exact / approximate and the
drift right after it), worst drift over the outputs, top-1 agreement, latency before and
after with their ratio, file sizes, time, and the reason of a failure. Every column header
sorts the table (click again to reverse; numbers sort as numbers, empty cells last). Below
the table: the errors with their reasons and the models missing from every shard.
"""
from __future__ import annotations

import html
from typing import List, Mapping, Optional, Tuple

_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em;color:#1b1f24}
h1{font-size:1.4em;margin:0 0 .3em}
p.meta{color:#57606a;margin:.2em 0}
table{border-collapse:collapse;margin-top:1em;width:100%}
th,td{border-bottom:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa;cursor:pointer;user-select:none;white-space:nowrap;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.passed td.result{color:#1a7f37;font-weight:600} tr.failed td.result{color:#cf222e;font-weight:600}
tr.error td.result{color:#9a6700;font-weight:600} tr.error{background:#fff8c5}
ul.sites{margin:0;padding-left:1.1em} span.approximate{color:#9a6700} span.exact{color:#1a7f37}
td.reason{max-width:32em;font-size:.92em;color:#57606a}
.faster{color:#1a7f37} .slower{color:#cf222e}
ol.notes{background:#fff8c5;border:1px solid #d4a72c;padding:4px 8px 4px 2.2em;margin:.6em 0;font-size:.92em}
ul.sites li{white-space:nowrap}
"""

_SCRIPT = """
(function () {
  var table = document.getElementById('results');
  var body = table.tBodies[0];
  function key(row, col) {
    var cell = row.cells[col];
    var v = cell.getAttribute('data-value');
    if (v === null) { v = cell.textContent.trim(); }
    return v;
  }
  function compare(a, b, numeric, dir) {
    var empty_a = a === '' || a === '-', empty_b = b === '' || b === '-';
    if (empty_a || empty_b) { return empty_a === empty_b ? 0 : (empty_a ? 1 : -1); }
    if (numeric) { return dir * (parseFloat(a) - parseFloat(b)); }
    return dir * a.localeCompare(b);
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
    th.addEventListener('click', function () {
      var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (o) { o.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
      var numeric = th.getAttribute('data-type') === 'number';
      var rows = Array.prototype.slice.call(body.rows);
      rows.forEach(function (r, i) { r.setAttribute('data-order', i); });
      rows.sort(function (a, b) {
        return compare(key(a, col), key(b, col), numeric, dir) ||
               (parseInt(a.getAttribute('data-order')) - parseInt(b.getAttribute('data-order')));
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
"""

# (header, sort type)
_COLUMNS: List[Tuple[str, str]] = [
    ("Model", "text"), ("Strategy", "text"), ("Result", "text"), ("Sites", "number"),
    ("Exact", "number"), ("Approx.", "number"), ("Max rel", "number"), ("Cosine", "number"),
    ("Top-1", "number"), ("Before ms", "number"), ("After ms", "number"), ("Latency ratio", "number"),
    ("Size", "number"), ("Source size", "number"), ("Time s", "number"), ("Sites: status, max rel after", "text"),
    ("Error / notes", "text"),
]
_INT8_COLUMNS: List[Tuple[str, str]] = [
    ("INT8 result", "text"), ("INT8 max rel", "number"), ("INT8 top-1", "number"),
    ("INT8 latency ratio", "number"), ("Float islands", "number"),
]
"""With --quantize int8, before the last two columns: the INT8 model against the float original."""


def _columns(quantized: bool) -> List[Tuple[str, str]]:
    return _COLUMNS[:-2] + _INT8_COLUMNS + _COLUMNS[-2:] if quantized else list(_COLUMNS)


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Optional[float], digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _num(value: Optional[float], digits: int = 3, css: str = "") -> str:
    data = "" if value is None else f' data-value="{_e(repr(float(value)))}"'
    klass = f"num {css}".strip()
    return f'<td class="{klass}"{data}>{_e(_fmt(value, digits))}</td>'


def _size(size: Optional[int]) -> str:
    if size is None:
        return '<td class="num">-</td>'
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f'<td class="num" data-value="{size}">{size / scale:.3g} {unit}</td>'
    return f'<td class="num" data-value="{size}">{size} B</td>'


def _text(value: str, css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    return f"<td{klass}>{_e(value)}</td>"


def _site_list(entry: Mapping[str, object]) -> str:
    sites = (entry.get("report") or {}).get("sites") or []
    if not sites:
        return "<td>-</td>" if entry.get("error") else "<td>no LRN</td>"
    items = []
    for site in sites:
        drift = site.get("drift") or {}
        first = drift.get("cpu") or next(iter(drift.values()), None) or {}
        rel = first.get("max_rel")
        status = str(site.get("status", "?"))
        items.append(f'<li>{_e(site.get("name", "?"))} <span class="{_e(status)}">{_e(status)}</span>'
                     + (f" ({_e(site.get('strategy'))})" if site.get("strategy") != entry.get("strategy") else "")
                     + (f" {_e(_fmt(rel))}" if rel is not None else "") + "</li>")
    return f'<td data-value="{len(sites)}"><ul class="sites">' + "".join(items) + "</ul></td>"


def _int8_cells(entry: Mapping[str, object]) -> List[str]:
    int8 = entry.get("int8") or {}
    worst, latency = int8.get("worst") or {}, int8.get("latency") or {}
    islands = int8.get("float_islands")
    island_cell = ("<td>-</td>" if islands is None else
                   f'<td class="num" data-value="{len(islands)}" title="{_e(", ".join(islands))}">{len(islands)}</td>')
    return [_text(str(int8.get("status", "-")).upper()), _num(worst.get("max_rel")), _num(worst.get("top1")),
            _num(latency.get("ratio")), island_cell]


def _row(entry: Mapping[str, object], footnotes: Mapping[str, int], quantized: bool) -> str:
    worst = entry.get("worst") or {}
    latency = entry.get("latency") or {}
    status = str(entry.get("status", "error"))
    ratio = latency.get("ratio")
    speed = "" if ratio is None else ("faster" if ratio < 1 else "slower")
    notes = list(entry.get("notes") or []) + ([latency["note"]] if latency.get("note") else [])
    marks = ", ".join(f"[{footnotes[n]}]" for n in notes if n in footnotes)
    reason = "; ".join(part for part in (entry.get("error"), f"notes {marks}" if marks else "") if part)
    cells = [
        _text(entry.get("model", "?")), _text(entry.get("strategy", "?")),
        _text(status.upper(), "result"), _num(entry.get("sites")), _num(entry.get("exact_sites")),
        _num(entry.get("approximate_sites")), _num(worst.get("max_rel")), _num(worst.get("cosine"), 8),
        _num(worst.get("top1")), _num(latency.get("before_ms")), _num(latency.get("after_ms")),
        _num(ratio, 3, speed), _size(entry.get("output_bytes")), _size(entry.get("source_bytes")),
        _num(entry.get("seconds"), 2),
    ] + (_int8_cells(entry) if quantized else []) + [
        _site_list(entry), _text(reason, "reason"),
    ]
    return f'<tr class="{_e(status)}" data-model="{_e(entry.get("model"))}">' + "".join(cells) + "</tr>"


def zoo_html(report: Mapping[str, object], figure: Optional[str] = None) -> str:
    """The page for a zoo report (schema 2, see ``lrnconv.app.zoo_report``), with ``figure`` beside it shown."""
    entries = report.get("entries", [])
    quantized = any(e.get("int8") for e in entries)
    fp = report.get("fingerprint", {})
    versions, options = fp.get("versions", {}), fp.get("options", {})
    head = "".join(f'<th data-type="{kind}" scope="col">{_e(name)}</th>' for name, kind in _columns(quantized))
    footnotes: dict = {}
    for e in entries:
        for note in list(e.get("notes") or []) + [(e.get("latency") or {}).get("note")]:
            if note and note not in footnotes:
                footnotes[note] = len(footnotes) + 1
    rows = "\n".join(_row(e, footnotes, quantized) for e in entries)
    shards = ", ".join(f"{s['index']}/{s['count']}" + (f" ({s['dir']})" if s.get("dir") else "")
                       for s in report.get("shards", []))
    errors = [e for e in entries if e.get("error")]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>lrnconv zoo report</title>", f"<style>{_STYLE}</style></head><body>",
        "<h1>lrnconv zoo report</h1>",
        f'<p class="meta" id="summary">{_e(report.get("models", 0))} model(s), {_e(report.get("passed", 0))} passed, '
        f'{_e(report.get("failed", 0))} failed, {_e(report.get("not_verifiable", 0))} not verifiable, '
        f'{_e(report.get("errors", 0))} error(s); source '
        f'{_e(report.get("source") or "-")}' + (f"; shards {_e(shards)}" if shards else "") + ".</p>",
        f'<p class="meta">lrnconv {_e(versions.get("lrnconv", "?"))}, onnxruntime '
        f'{_e(versions.get("onnxruntime", "?"))}, onnx {_e(versions.get("onnx", "?"))}; strategies '
        f'{_e(", ".join(options.get("strategies", [])))}; providers {_e(", ".join(options.get("providers", [])))}; '
        f'{_e(options.get("samples"))} samples; atol {_e(options.get("atol"))}, rtol {_e(options.get("rtol"))}; '
        f'latency: batch 1, one thread, median of {_e(options.get("timing_runs"))} interleaved runs; '
        f'report schema {_e(report.get("schema_version"))}. Click a column header to sort.</p>',
        ('<ol class="notes" id="notes">' + "".join(f'<li value="{i}">{_e(n)}</li>' for n, i in footnotes.items())
         + "</ol>") if footnotes else "",
        f'<table id="results"><thead><tr>{head}</tr></thead><tbody>', rows, "</tbody></table>",
    ]
    if figure:
        parts.append(f'<h2>Drift against latency</h2><img id="figure" src="{_e(figure)}" '
                     'alt="worst max rel against latency ratio, per model and strategy">')
    if errors:
        parts.append('<h2>Errors</h2><ul id="errors">' + "".join(
            f"<li><b>{_e(e['model'])}</b> {_e(e['strategy'])}: {_e(e['error'])}</li>" for e in errors) + "</ul>")
    if report.get("missing"):
        parts.append('<h2>Missing from every shard</h2><ul id="missing">'
                     + "".join(f"<li>{_e(n)}</li>" for n in report["missing"]) + "</ul>")
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"
