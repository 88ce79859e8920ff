"""Wall time and peak memory of converting a full-size AlexNet (~240 MB) with lrnconv.

Each measurement is a fresh interpreter (a subprocess), so its peak RSS is its own:
the parent reads it with ``os.wait4`` (the child's ``ru_maxrss``), and times the whole
process around it; the child also times the work alone (load .. save, imports
excluded) and reports its RSS after imports. Modes:

* ``a-onnx``  ``onnx.load`` + ``onnx.save`` to a new file (the baseline);
* ``b-api``   ``lrnconv.load`` + ``lrnconv.convert(m, "decompose", inplace=True)`` + ``lrnconv.save``;
* ``b-api-copy`` the same with ``inplace=False`` (the API default: the input stays usable);
* ``c-cli``   ``lrnconv convert IN -o OUT --no-verify`` (whole process only);
* ``d-gs``    ``onnx.load`` + onnx-graphsurgeon ``import_onnx`` / ``export_onnx`` + ``onnx.save``;
* ``startup-onnx`` / ``startup-lrnconv``  an interpreter that only imports onnx / lrnconv and
  its CLI (what the whole-process numbers pay before any work).

Runs go round-robin over the modes (one warm-up round first, excluded); medians of
the timed runs. Ratios are against ``a-onnx`` from the same run. Targets (from the
issue): ``convert --no-verify`` within 1.3x the wall time and 1.5x the peak memory of
the baseline. Not a test: nothing asserts.

    python benchmarks/bench_convert.py             # 5 timed runs per mode
    python benchmarks/bench_convert.py --profile   # + cProfile / tracemalloc of the API path
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

from _common import (rss_now_kb, RESULTS, ForeignLoad, add_quiet_options, wait_for_quiet, machine_lines, md_table, median, usable_cores,
                     write_result)

MODES = ("a-onnx", "b-api", "b-api-copy", "c-cli", "d-gs", "startup-onnx", "startup-lrnconv")
WALL_TARGET, RSS_TARGET = 1.3, 1.5
MACHINE: List[str] = []


def child(mode: str, src: str, dst: str) -> None:
    """Runs inside the fresh interpreter; prints one JSON line."""
    if mode.startswith("build:"):
        import onnx
        from lrnconv import models

        onnx.save(models.build(mode.split(":", 1)[1], variant="full", seed=0), dst)
        return
    t_import = time.perf_counter()
    if mode in ("a-onnx", "startup-onnx"):
        import onnx  # noqa: F401
    elif mode == "d-gs":
        import onnx
        import onnx_graphsurgeon as gs
    else:
        import lrnconv
        import lrnconv.app.cli  # noqa: F401  (what the CLI imports too)
    import_s = time.perf_counter() - t_import
    rss_after_import = rss_now_kb()
    t0 = time.perf_counter()
    if mode == "a-onnx":
        model = onnx.load(src)
        onnx.save(model, dst)
    elif mode in ("b-api", "b-api-copy"):
        model = lrnconv.load(src)
        result = lrnconv.convert(model, "decompose", inplace=(mode == "b-api"))
        lrnconv.save(result.model, dst)
    elif mode == "d-gs":
        model = onnx.load(src)
        graph = gs.import_onnx(model)
        exported = gs.export_onnx(graph)
        onnx.save(exported, dst)
    work_s = time.perf_counter() - t0
    import resource
    print(json.dumps({"import_s": import_s, "work_s": work_s, "rss_after_import_kb": rss_after_import,
                      "self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def cli_executable() -> List[str]:
    """The lrnconv console script of this interpreter (not a pyenv shim, which adds its own startup)."""
    beside = os.path.join(os.path.dirname(sys.executable), "lrnconv")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("lrnconv")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from lrnconv.app.cli import main; sys.exit(main())"]


def run_once(mode: str, src: str, dst: str, workdir: str) -> Dict[str, float]:
    if mode == "c-cli":
        cmd = cli_executable() + ["convert", src, "-o", dst, "--no-verify"]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, src, dst]
    log_path = os.path.join(workdir, "child.out")
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(log_path) as f:
        text = f.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed (exit {proc.returncode}): {' '.join(cmd)}\n{text}")
    row = {"wall_s": wall, "maxrss_kb": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}
    if mode != "c-cli":
        row.update(json.loads(text.strip().splitlines()[-1]))
    if os.path.exists(dst):
        row["out_bytes"] = os.path.getsize(dst)
        os.unlink(dst)
    return row


def profile(src: str, workdir: str, top: int) -> str:
    """cProfile and tracemalloc of the API path (in a child, so the numbers are clean)."""
    code = f"""
import cProfile, pstats, io, sys, time, tracemalloc, os
import lrnconv, lrnconv.app.cli, onnx
src, dst = {src!r}, {os.path.join(workdir, 'prof.onnx')!r}
pr = cProfile.Profile(); pr.enable()
m = lrnconv.load(src); r = lrnconv.convert(m, "decompose", inplace=True); lrnconv.save(r.model, dst)
pr.disable(); s = io.StringIO()
pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats({top})
print("### cProfile (cumulative), API path: load + convert(inplace) + save\\n\\n```")
print("\\n".join(l for l in s.getvalue().splitlines() if l.strip())[:12000]); print("```\\n")
del m, r
def rss():
    return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]) // 1024
tracemalloc.start(25)
stages = []
def mark(name):
    cur, peak = tracemalloc.get_traced_memory(); stages.append((name, cur >> 20, peak >> 20, rss()))
    tracemalloc.reset_peak()
m = lrnconv.load(src); mark("lrnconv.load")
from lrnconv.graph.preserve import EditableModel
from lrnconv.graph.sites import find_lrn
sites = find_lrn(m); mark("find_lrn")
r = lrnconv.convert(m, "decompose", inplace=True); mark("convert(inplace=True)")
lrnconv.save(r.model, dst); mark("lrnconv.save")
print("### tracemalloc per stage (Python-heap allocations incl. protobuf buffers made through Python; MiB)\\n")
print("| stage | traced now | traced peak in stage | VmRSS after |\\n|:---|---:|---:|---:|")
for n, c, p, rs in stages: print(f"| {{n}} | {{c}} | {{p}} | {{rs}} |")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workdir)
    return proc.stdout + (("\n```\n" + proc.stderr[-3000:] + "\n```\n") if proc.returncode else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="timed runs per mode (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: %(default)s)")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of: " + ", ".join(MODES))
    p.add_argument("--model", default="alexnet", help="built-in model (default: %(default)s)")
    p.add_argument("--tmpdir", default=None, help="folder for the model files (default: a new temp folder)")
    p.add_argument("--profile", action="store_true", help="append cProfile + tracemalloc of the API path")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 timed run, no warm-up")
    p.add_argument("--out", default="", help="Markdown output (default: benchmarks/results/bench_convert[.quick].md)")
    add_quiet_options(p, wait=60.0)
    p.add_argument("--child", nargs=3, metavar=("MODE", "SRC", "DST"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    if args.quick:
        args.runs, args.warmup = 1, 0
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            p.error(f"unknown mode '{m}'")
    if "a-onnx" not in modes:
        modes.insert(0, "a-onnx")

    started = time.perf_counter()
    MACHINE[:] = machine_lines()  # the revision measured, not the one at the end
    workdir = tempfile.mkdtemp(prefix="bench_convert-", dir=args.tmpdir)
    try:
        # Built in a subprocess: Linux carries a process's peak RSS across fork + exec, so
        # this parent must stay small for the children's ru_maxrss to be their own.
        src = os.path.join(workdir, f"{args.model}.onnx")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "build:" + args.model, "-", src],
                       check=True)
        size = os.path.getsize(src)
        print(f"saved {src} ({size / 1e6:.1f} MB)", file=sys.stderr)
        dst = os.path.join(workdir, "out.onnx")
        rows: Dict[str, List[Dict[str, float]]] = {m: [] for m in modes}
        if args.wait_quiet > 0:
            wait_for_quiet(args.wait_quiet)
        with ForeignLoad() as load:
            for r in range(args.warmup + args.runs):
                order = modes[r % len(modes):] + modes[:r % len(modes)]
                for mode in order:
                    row = run_once(mode, src, dst, workdir)
                    if r >= args.warmup:
                        rows[mode].append(row)
                    print(f"  {'warm-up' if r < args.warmup else f'run {r - args.warmup + 1}'} {mode}: "
                          f"{row['wall_s']:.2f}s, {row['maxrss_kb'] / 1024:.0f} MiB", file=sys.stderr)
        parent_rss = rss_now_kb()
        prof = profile(src, workdir, 40) if args.profile else ""
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    doc = render(args, modes, rows, size, load.cores, elapsed, prof, parent_rss)
    print(doc)
    out = args.out or os.path.join(RESULTS, "bench_convert" + (".quick" if args.quick else "") + ".md")
    path = write_result("bench_convert", doc, out)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(rows, f, indent=1)
    print(f"\nwrote {os.path.relpath(path)} ({elapsed:.0f}s)", file=sys.stderr)
    return 0


LABELS = {
    "a-onnx": "(a) onnx.load + onnx.save (baseline)",
    "b-api": "(b) lrnconv.load + convert(decompose, inplace=True) + save",
    "b-api-copy": "(b') same, inplace=False (API default)",
    "c-cli": "(c) `lrnconv convert IN -o OUT --no-verify`",
    "d-gs": "(d) onnx.load + gs.import_onnx/export_onnx + onnx.save",
    "startup-onnx": "interpreter + `import onnx` only",
    "startup-lrnconv": "interpreter + `import lrnconv, lrnconv.app.cli` only",
}


def render(args, modes, rows, size, foreign, elapsed, prof, parent_rss) -> str:
    def med(mode, key):
        vals = [r[key] for r in rows[mode] if key in r]
        return median(vals) if vals else None

    base_wall, base_work, base_rss = med("a-onnx", "wall_s"), med("a-onnx", "work_s"), med("a-onnx", "maxrss_kb")
    out = [f"# Conversion cost: full-size {args.model} ({size / 1e6:.0f} MB)", ""]
    out += MACHINE or machine_lines()
    out += [f"- {args.runs} timed runs per mode after {args.warmup} warm-up round(s), round-robin over modes, "
            f"each a fresh interpreter (`{os.path.basename(sys.executable)}`); CLI = "
            f"`{' '.join(cli_executable())}`; model and outputs in a temp folder on the local disk "
            f"(page cache warm after the warm-up round); other processes used {foreign:.2f} of "
            f"{usable_cores()} cores meanwhile; total {elapsed:.0f}s", "",
            "`process` = wall time of the whole child process (interpreter start to exit); `work` = "
            "time inside the child around load .. save only (imports excluded); `peak RSS` = the child's "
            f"`ru_maxrss` from `os.wait4` (the launching process stays at {parent_rss / 1024:.0f} MiB, so "
            "this is the child's own peak: Linux keeps the larger of the two across fork + exec); `RSS after imports` = VmRSS before the work starts. Medians; "
            "ratios against (a) from this run.", ""]
    table = []
    for mode in modes:
        wall, work, rss = med(mode, "wall_s"), med(mode, "work_s"), med(mode, "maxrss_kb")
        imp, rss0 = med(mode, "import_s"), med(mode, "rss_after_import_kb")
        table.append([
            LABELS[mode],
            f"{wall:.2f}", f"{wall / base_wall:.2f}x",
            f"{work:.2f}" if work is not None else "-",
            f"{work / base_work:.2f}x" if work is not None and not mode.startswith("startup") else "-",
            f"{imp:.2f}" if imp is not None else "-",
            f"{rss / 1024:.0f}", f"{rss / base_rss:.2f}x",
            f"{rss0 / 1024:.0f}" if rss0 is not None else "-",
        ])
    out += [md_table(["mode", "process s", "x (a)", "work s", "x (a)", "imports s", "peak RSS MiB", "x (a)",
                      "RSS after imports MiB"], table, "lrrrrrrrr"), ""]
    out += ["## Targets", ""]
    for mode, what in (("c-cli", "CLI `convert --no-verify`, whole process"),
                       ("b-api", "API inplace=True, work only")):
        if mode not in rows or not rows[mode]:
            continue
        key = "wall_s" if mode == "c-cli" else "work_s"
        base = base_wall if mode == "c-cli" else base_work
        w = med(mode, key) / base
        m = med(mode, "maxrss_kb") / base_rss
        out.append(f"- {what}: wall {w:.2f}x (target <= {WALL_TARGET}x: {'met' if w <= WALL_TARGET else '**missed**'}), "
                   f"peak RSS {m:.2f}x (target <= {RSS_TARGET}x: {'met' if m <= RSS_TARGET else '**missed**'})")
    out.append("")
    if prof:
        out += ["## Profile of the API path", "", prof]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
