"""Where the time of a decomposed LRN goes: ONNX Runtime's profiler, op by op.

For each built-in replica (full width) and batch size, every variant gets a session with
``SessionOptions.enable_profiling``; the sessions share one intra-op thread pool and run
in rounds (one run of each per round, the order rotated), so that a change in the
machine's speed hits every variant alike. The kernel times of the kept rounds (the
warm-up run and rounds during which other processes were busy are left out) are summed
by op type: µs per run, share of the run's kernel time, and how many nodes of that type
ran per run. The op types are those of the graph ONNX Runtime executes, after its
optimizations: ``Conv`` is the NCHWc (blocked-layout) convolution where the NCHWc
transformer rewrote it, and ``ReorderInput`` / ``ReorderOutput`` are the layout changes
into and out of the blocked layout that it inserted around every op it could not keep
blocked.

Variants: ``native`` (ONNX Runtime's LRN kernel), ``deleted`` (every LRN replaced by
Identity: the floor), and ``W/P`` = ``decompose`` with window W and power P.

Per (model, batch) the report gives a summary (kernel time, its paired ratio to
``deleted``, what the LRN sites cost over ``deleted``, the reorders) and, per variant,
the op table. Kernel time leaves out what the executor spends between kernels, so the
ratios here are a little below the wall-clock ratios of ``bench_decompose.py``; what
this adds is *which* op costs what.

Not a test: nothing here asserts a timing.

    python benchmarks/profile_decompose.py                         # all models, batch 1 and 16
    python benchmarks/profile_decompose.py --models alexnet --batches 16 \\
        --variants deleted,pool/roots,conv/roots
"""
from __future__ import annotations

import argparse
import bisect
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
import onnx
import onnxruntime as ort

import lrnconv
from lrnconv import models
from lrnconv.passes.decompose import POWERS, WINDOWS

from _common import ForeignLoad, add_quiet_options, builtin_models, lrn_deleted, machine_lines, md_table, usable_cores, wait_for_quiet, write_result

DEFAULT_VARIANTS = ("native", "deleted", "pool/roots", "conv/roots")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="all", help="comma-separated built-in models, or 'all' (default: %(default)s)")
    p.add_argument("--batches", default="1,16", help="comma-separated batch sizes (default: %(default)s)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help="comma-separated: native, deleted, W/P with W in %s and P in %s (default: %%(default)s)"
                        % ("/".join(WINDOWS), "/".join(POWERS)))
    p.add_argument("--runs", default="1:40,16:8", help="profiled rounds per batch 'B:R,...' (one run of every "
                   "variant per round; batches not listed get the value of the largest listed batch not above "
                   "them; default: %(default)s)")
    p.add_argument("--threads", type=int, default=usable_cores(), help="intra-op threads (default: %(default)s)")
    add_quiet_options(p, wait=20.0, retry=300.0)
    p.add_argument("--top", type=int, default=12, help="op types listed per variant (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="", help="Markdown output (default: benchmarks/results/profile_decompose.md)")
    args = p.parse_args(argv)
    args.models = builtin_models(p, args.models)
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.variants = [v for v in args.variants.split(",") if v]
    for v in args.variants:
        if v not in ("native", "deleted"):
            window, _, power = v.partition("/")
            if window not in WINDOWS or power not in POWERS:
                p.error(f"unknown variant '{v}'")
    if "deleted" not in args.variants:
        args.variants.insert(0, "deleted")  # every ratio is to it
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


@dataclass
class Profile:
    """One variant at one batch: kernel time by op type, and per kept round."""

    per_op: Dict[str, Tuple[float, float]]
    """op type -> (µs per run, nodes per run), mean over the kept rounds."""
    per_run_us: List[float]
    """Kernel µs of each kept round, in round order (pairs with the other variants' rounds)."""

    @property
    def total_us(self) -> float:
        return sum(us for us, _ in self.per_op.values())


def kernel_events(path: str, kept: List[bool]) -> Profile:
    """Sum a profile's kernel events by op type over the runs marked kept (run 0: warm-up)."""
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    starts = [r["ts"] for r in runs]
    per_op: Dict[str, List[float]] = collections.defaultdict(lambda: [0.0, 0.0])
    per_run = [0.0] * len(runs)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            run = bisect.bisect_right(starts, e["ts"]) - 1
            if run >= 0 and kept[run]:
                entry = per_op[e["args"].get("op_name", "?")]
                entry[0] += e["dur"]
                entry[1] += 1
                per_run[run] += e["dur"]
    n = max(sum(kept), 1)
    return Profile({op: (us / n, count / n) for op, (us, count) in per_op.items()},
                   [us for us, keep in zip(per_run, kept) if keep])


def profile_batch(built: Dict[str, bytes], batch: int, args, workdir: str, retry: Dict[str, float]
                  ) -> Tuple[Dict[str, Profile], float, int]:
    """Every variant profiled in the same rounds (one run each, order rotated).

    Returns the profiles, the mean cores other processes used during the kept rounds, and
    the number of rounds left out for contention.
    """
    sessions = {}
    for v, payload in built.items():
        options = ort.SessionOptions()
        options.use_per_session_threads = False  # one pool: no session's threads spin over another's
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(workdir, v.replace("/", "_"))
        sessions[v] = ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(args.seed)
    feeds = {}
    for inp in next(iter(sessions.values())).get_inputs():
        shape = [batch if (i == 0 and not isinstance(d, int)) else d for i, d in enumerate(inp.shape)]
        feeds[inp.name] = rng.uniform(-128.0, 128.0, size=shape).astype(np.float32)
    kept: Dict[str, List[bool]] = {}
    for v, session in sessions.items():
        session.run(None, feeds)  # warm-up: first-run allocations and kernel set-up
        kept[v] = [False]
    if args.wait_quiet > 0:
        wait_for_quiet(args.wait_quiet)
    names = list(sessions)
    loads: List[float] = []
    left_out = 0
    while len(loads) < args.run_counts[batch]:
        r = len(loads) + left_out
        started = time.monotonic()
        with ForeignLoad() as load:
            for v in names[r % len(names):] + names[:r % len(names)]:
                sessions[v].run(None, feeds)
        keep = load.cores <= args.max_foreign or retry["left"] <= 0
        for v in names:
            kept[v].append(keep)
        if keep:
            loads.append(load.cores)
        else:
            left_out += 1
            retry["left"] -= time.monotonic() - started
    profiles = {v: kernel_events(sessions[v].end_profiling(), kept[v]) for v in names}
    return profiles, sum(loads) / len(loads), left_out


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    ort.set_default_logger_severity(3)
    ort.set_global_thread_pool_sizes(args.threads, 1)
    machine = machine_lines()
    results = {}  # (model, batch) -> ({variant: Profile}, foreign cores, rounds left out)
    retry = {"left": args.retry_budget}
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models:
            native = models.build(name, variant="full", seed=args.seed)
            built = {v: variant_model(native, v).SerializeToString() for v in args.variants}
            for batch in args.batches:
                results[(name, batch)] = profile_batch(built, batch, args, workdir, retry)
                profiles, foreign, left_out = results[(name, batch)]
                print(f"[{name} b{batch}] " + ", ".join(f"{v} {p.total_us / 1e3:.2f} ms" for v, p in profiles.items())
                      + f" (kernel time per run; other processes {foreign:.2f} cores; {left_out} rounds left out)",
                      file=sys.stderr)
            del built
    elapsed = time.perf_counter() - started
    doc = render(args, results, machine, elapsed)
    print(doc)
    path = write_result("profile_decompose", doc, args.out)
    raw = os.path.splitext(path)[0] + ".json"
    with open(raw, "w") as f:
        json.dump({f"{m}@{b}": {"foreign_cores": foreign, "rounds_left_out": left_out,
                                "variants": {v: {"kernel_us_per_round": p.per_run_us,
                                                 "ops": {op: {"us": us, "count": n} for op, (us, n) in p.per_op.items()}}
                                             for v, p in profiles.items()}}
                   for (m, b), (profiles, foreign, left_out) in results.items()}, f, indent=1)
    print(f"\nwrote {os.path.relpath(path)} and {os.path.relpath(raw)} ({elapsed:.0f}s)", file=sys.stderr)
    return 0


REORDERS = ("ReorderInput", "ReorderOutput")


def paired(profiles: Dict[str, Profile], v: str, base: str) -> float:
    """Median over the kept rounds of v's kernel time / base's in the same round."""
    return statistics.median(a / b for a, b in zip(profiles[v].per_run_us, profiles[base].per_run_us))


def render(args, results, machine, elapsed) -> str:
    runs = ", ".join(f"batch {b}: {args.run_counts[b]} rounds" for b in args.batches)
    out = ["# LRN decomposition: where ONNX Runtime spends the time", ""] + machine + [
        f"- sessions: CPUExecutionProvider, ORT_ENABLE_ALL (default), {args.threads} intra-op threads in one pool "
        f"shared by all sessions; all variants of a model profiled in the same rounds (one run of each per round, "
        f"the order rotated), {runs}, after one warm-up run each; a round during which other processes used more "
        f"than {args.max_foreign} cores was left out and repeated (retry budget {args.retry_budget:.0f}s); "
        f"inputs uniform in [-128, 128), seed {args.seed}; total time {elapsed:.0f}s", "",
        "`kernel ms` = sum of the kernel times of one run (profiler events, mean over the kept rounds); "
        "`x deleted` = median over rounds of its ratio to `deleted`'s kernel time in the same round; `LRN ms` = "
        "kernel ms - deleted's (what the LRN sites cost, reorders included); `reorders` = ReorderInput + "
        "ReorderOutput nodes per run and their ms (`deleted` has one, before the classifier's Flatten).", ""]
    for (name, batch), (profiles, foreign, left_out) in results.items():
        base = profiles["deleted"]
        out += [f"## {name}, batch {batch}", "",
                f"Other processes used {foreign:.2f} cores on average during the kept rounds ({left_out} left out).",
                ""]
        rows = []
        for v in args.variants:
            p = profiles[v]
            reorder_n = sum(p.per_op.get(r, (0.0, 0.0))[1] for r in REORDERS)
            reorder_us = sum(p.per_op.get(r, (0.0, 0.0))[0] for r in REORDERS)
            rows.append([f"`{v}`", f"{p.total_us / 1e3:.2f}", f"{paired(profiles, v, 'deleted'):.3f}",
                         f"{(p.total_us - base.total_us) / 1e3:.2f}", f"{reorder_n:.0f} / {reorder_us / 1e3:.2f}"])
        out += [md_table(["variant", "kernel ms", "x deleted", "LRN ms", "reorders (n / ms)"], rows), ""]
        for v in args.variants:
            p = profiles[v]
            ranked = sorted(p.per_op.items(), key=lambda kv: -kv[1][0])
            rows = [[op, f"{us:.0f}", f"{us / p.total_us * 100:.1f}%", f"{n:.0f}"] for op, (us, n) in ranked[:args.top]]
            rest = ranked[args.top:]
            if rest:
                rest_us = sum(us for _, (us, _) in rest)
                rows.append([f"({len(rest)} more)", f"{rest_us:.0f}", f"{rest_us / p.total_us * 100:.1f}%",
                             f"{sum(n for _, (_, n) in rest):.0f}"])
            out += [f"`{v}`:", "", md_table(["op type", "µs", "share", "count"], rows), ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
