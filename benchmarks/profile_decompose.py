"""Where the time of a decomposed LRN goes: ONNX Runtime's profiler, op by op.

For each built-in replica (full width), batch size and variant this runs one session
with ``SessionOptions.enable_profiling`` and sums the kernel times of the timed runs
(the first run is a warm-up and is left out) by op type: total µs per run, share of
the run's kernel time, and how many nodes of that type ran per run. The op types are
those of the graph ONNX Runtime executes, after its optimizations: ``Conv`` is the
NCHWc (blocked-layout) convolution where the NCHWc transformer rewrote it, and
``ReorderInput`` / ``ReorderOutput`` are the layout changes into and out of the blocked
layout that it inserted around every op it could not keep blocked.

Variants: ``native`` (ONNX Runtime's LRN kernel), ``deleted`` (every LRN replaced by
Identity: the floor), and ``W/P`` = ``decompose`` with window W and power P.

Per (model, batch) the report gives a summary (kernel time, ratio to ``deleted``, what
the LRN sites cost over ``deleted``, the reorders) and, per variant, the op table.
Kernel time excludes what the executor spends between kernels, so the ratios here are
a little below the wall-clock ratios of ``bench_decompose.py``; they are robust to a
shared machine in a way wall-clock ratios are not (each kernel is timed on its own),
and they say *which* op costs what.

Not a test: nothing here asserts a timing.

    python benchmarks/profile_decompose.py                         # all models, batch 1 and 16
    python benchmarks/profile_decompose.py --models alexnet --batches 16 \\
        --variants deleted,pool/roots,conv/roots
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np
import onnx
import onnxruntime as ort

import lrnconv
from lrnconv import models
from lrnconv.passes.decompose import POWERS, WINDOWS

from _common import RESULTS, ForeignLoad, lrn_deleted, machine_lines, md_table, usable_cores, wait_for_quiet, write_result

DEFAULT_VARIANTS = ("native", "deleted", "pool/roots", "conv/roots")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="all", help="comma-separated built-in models, or 'all' (default: %(default)s)")
    p.add_argument("--batches", default="1,16", help="comma-separated batch sizes (default: %(default)s)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated: native, deleted, W/P with W in %s and P in %s (default: %%(default)s)"
                        % ("/".join(WINDOWS), "/".join(POWERS)))
    p.add_argument("--runs", default="1:40,16:8", help="profiled runs per variant, per batch 'B:R,...' "
                   "(batches not listed get the value of the largest listed batch not above them; "
                   "default: %(default)s)")
    p.add_argument("--threads", type=int, default=usable_cores(), help="intra-op threads (default: %(default)s)")
    p.add_argument("--wait-quiet", type=float, default=20.0, metavar="S",
                   help="before each variant, wait up to S seconds for other processes to go quiet (default: %(default)s)")
    p.add_argument("--max-foreign", type=float, default=0.3, metavar="CORES",
                   help="profile a variant again when other processes used more than CORES cores while it ran "
                        "(default: %(default)s)")
    p.add_argument("--retry-budget", type=float, default=300.0, metavar="S",
                   help="total seconds that repeated profiles may take (default: %(default)s); after that every "
                        "profile is kept")
    p.add_argument("--top", type=int, default=12, help="op types listed per variant (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="Markdown output (default: benchmarks/results/profile_decompose.md)")
    args = p.parse_args(argv)
    args.models = list(models.BUILTIN) if args.models == "all" else [m for m in args.models.split(",") if m]
    for m in args.models:
        if m not in models.BUILTIN:
            p.error(f"unknown model '{m}'; valid: {', '.join(models.BUILTIN)}")
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        if v not in ("native", "deleted"):
            window, _, power = v.partition("/")
            if window not in WINDOWS or power not in POWERS:
                p.error(f"unknown variant '{v}'")
    table = sorted((int(b), int(r)) for b, r in (item.split(":") for item in args.runs.split(",") if item))
    args.run_counts = {b: ([r for tb, r in table if tb <= b] or [table[0][1]])[-1] for b in args.batches}
    return args


def variant_model(native: onnx.ModelProto, variant: str) -> onnx.ModelProto:
    if variant == "native":
        return native
    if variant == "deleted":
        return lrn_deleted(native)
    window, power = variant.split("/")
    result = lrnconv.convert(native, "decompose", options={"window": window, "power": power})
    used = {(r.details.get("window"), r.details.get("power")) for r in result.sites}
    if used != {(window, power)}:
        print(f"  note: {variant} fell back to {sorted(used)} at some site", file=sys.stderr)
    return result.model


def profile(model: onnx.ModelProto, batch: int, runs: int, threads: int, seed: int, workdir: str
            ) -> Tuple[Dict[str, Tuple[float, float]], float, float]:
    """Per op type (µs per run, nodes per run); kernel µs per run; other processes' cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(workdir, "profile")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in session.get_inputs():
        shape = [batch if (i == 0 and not isinstance(d, int)) else d for i, d in enumerate(inp.shape)]
        feeds[inp.name] = rng.uniform(-128.0, 128.0, size=shape).astype(np.float32)
    session.run(None, feeds)  # warm-up: first-run allocations and kernel set-up
    with ForeignLoad() as load:
        for _ in range(runs):
            session.run(None, feeds)
    path = session.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    model_runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    warm_end = model_runs[0]["ts"] + model_runs[0]["dur"]
    per_op: Dict[str, List[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] > warm_end:
            entry = per_op[e["args"].get("op_name", "?")]
            entry[0] += e["dur"] / runs
            entry[1] += 1 / runs
    total = sum(us for us, _ in per_op.values())
    return {op: (us, n) for op, (us, n) in per_op.items()}, total, load.cores


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    ort.set_default_logger_severity(3)
    machine = machine_lines()
    results = {}  # (model, batch, variant) -> (per_op, total_us, foreign)
    retry_left = args.retry_budget
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models:
            native = models.build(name, variant="full", seed=args.seed)
            built = {v: variant_model(native, v) for v in args.variants}
            for batch in args.batches:
                for v in args.variants:
                    while True:
                        if args.wait_quiet > 0:
                            wait_for_quiet(args.wait_quiet)
                        attempt = time.monotonic()
                        results[(name, batch, v)] = profile(built[v], batch, args.run_counts[batch], args.threads,
                                                            args.seed, workdir)
                        retry_left -= time.monotonic() - attempt
                        if results[(name, batch, v)][2] <= args.max_foreign or retry_left <= 0:
                            break
                        print(f"[{name} b{batch}] {v}: contended, profiling again", file=sys.stderr)
                    per_op, total, foreign = results[(name, batch, v)]
                    print(f"[{name} b{batch}] {v}: {total / 1e3:.2f} ms kernel time per run "
                          f"(other processes: {foreign:.2f} cores)", file=sys.stderr)
            del built
    elapsed = time.perf_counter() - started
    doc = render(args, results, machine, elapsed)
    print(doc)
    path = write_result("profile_decompose", doc, args.out)
    raw = os.path.splitext(path)[0] + ".json"
    with open(raw, "w") as f:
        json.dump({f"{m}@{b}@{v}": {"kernel_us": total, "foreign_cores": foreign,
                                    "ops": {op: {"us": us, "count": n} for op, (us, n) in per_op.items()}}
                   for (m, b, v), (per_op, total, foreign) in results.items()}, f, indent=1)
    print(f"\nwrote {os.path.relpath(path)} and {os.path.relpath(raw)} ({elapsed:.0f}s)", file=sys.stderr)
    return 0


REORDERS = ("ReorderInput", "ReorderOutput")


def render(args, results, machine, elapsed) -> str:
    runs = ", ".join(f"batch {b}: {args.run_counts[b]} profiled runs" for b in args.batches)
    out = ["# LRN decomposition: where ONNX Runtime spends the time", ""] + machine + [
        f"- sessions: CPUExecutionProvider, ORT_ENABLE_ALL (default), intra_op_num_threads={args.threads}, "
        f"one at a time; {runs} after one warm-up run; a profile during which other processes used more "
        f"than {args.max_foreign} cores was repeated (retry budget {args.retry_budget:.0f}s); inputs uniform "
        f"in [-128, 128), seed {args.seed}; total time {elapsed:.0f}s", "",
        "`kernel ms` = sum of the kernel times of one run (profiler events, mean over the runs); "
        "`x deleted` = its ratio to `deleted`; `LRN ms` = kernel ms - deleted's (what the LRN sites cost, "
        "reorders included); `reorders` = ReorderInput + ReorderOutput nodes per run and their ms (the "
        "`deleted` model has one, before the classifier's Flatten). `foreign` = cores other processes used "
        "while it ran.", ""]
    keys = sorted({(m, b) for m, b, _ in results}, key=lambda k: (args.models.index(k[0]), k[1]))
    for name, batch in keys:
        base = results.get((name, batch, "deleted"))
        out += [f"## {name}, batch {batch}", ""]
        rows = []
        for v in args.variants:
            per_op, total, foreign = results[(name, batch, v)]
            reorder_n = sum(per_op.get(r, (0.0, 0.0))[1] for r in REORDERS)
            reorder_us = sum(per_op.get(r, (0.0, 0.0))[0] for r in REORDERS)
            rows.append([f"`{v}`", f"{total / 1e3:.2f}",
                         f"{total / base[1]:.3f}" if base else "", f"{(total - base[1]) / 1e3:.2f}" if base else "",
                         f"{reorder_n:.0f} / {reorder_us / 1e3:.2f}", f"{foreign:.2f}"])
        out += [md_table(["variant", "kernel ms", "x deleted", "LRN ms", "reorders (n / ms)", "foreign"], rows), ""]
        for v in args.variants:
            per_op, total, _ = results[(name, batch, v)]
            ranked = sorted(per_op.items(), key=lambda kv: -kv[1][0])
            rows = [[op, f"{us:.0f}", f"{us / total * 100:.1f}%", f"{n:.0f}"] for op, (us, n) in ranked[:args.top]]
            rest = ranked[args.top:]
            if rest:
                rows.append([f"({len(rest)} more)", f"{sum(us for _, (us, _) in rest):.0f}",
                             f"{sum(us for _, (us, _) in rest) / total * 100:.1f}%", f"{sum(n for _, (_, n) in rest):.0f}"])
            out += [f"`{v}`:", "", md_table(["op type", "µs", "share", "count"], rows), ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
