"""ONNX Runtime CPU latency of LRN decompositions vs native LRN and vs LRN deleted.

For each built-in replica (full width) and batch size this measures, in one process
and one run:

* ``native``   the model as built, with ONNX Runtime's own LRN kernel;
* ``deleted``  every LRN replaced by Identity (ORT removes it): the floor any
  rewrite of LRN could reach;
* ``W/P``      ``lrnconv.convert(model, "decompose", options={"window": W, "power": P})``
  for every window W and power P of ``lrnconv.passes.decompose`` (``--candidates``
  picks some).

Sessions: ``InferenceSession`` on CPUExecutionProvider, default graph optimizations
(ORT_ENABLE_ALL), intra-op threads = all usable cores, from one thread pool that all
sessions share (``--thread-pool global``; ``session`` gives each session its own, as
the earlier runs did). With a pool per session, the threads of the session that just
ran keep spinning (ONNX Runtime's default) while the next session's threads start, on
the same cores: round-robin over many sessions then inflates every run by a
variant-dependent amount (measured on the LRN-deleted full AlexNet, 2 cores: 29.7 ms
round-robin over 5 sessions against 9.0 ms back-to-back at batch 1, 97.7 against 75.9 ms at
batch 16; with one shared pool 7.8 and 64.0 ms round-robin). The ratios of runs made with
per-session pools are pulled towards 1. All sessions of a
model are created first; then, per batch, each is warmed up, and the timed runs go
round-robin (one run of every variant per round, the order rotated each round) so that
drift in the machine's speed hits every variant alike. Reported: medians of the timed
runs (warm-up runs excluded), ratios against native and deleted measured in the same run.

Not a test: nothing here asserts a timing.

    python benchmarks/bench_decompose.py                 # alexnet, googlenet; batch 1 and 16
    python benchmarks/bench_decompose.py --models all    # + caffenet, zfnet, vgg_cnn_m
    python benchmarks/bench_decompose.py --quick         # few runs, smoke check
    python benchmarks/bench_decompose.py --candidates pool/roots,conv/blocked
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import time
from typing import Dict, List, Tuple

import numpy as np
import onnx
import onnxruntime as ort

import lrnconv
from lrnconv import models
from lrnconv.passes.decompose import POWERS, WINDOWS

from _common import RESULTS, ForeignLoad, add_quiet_options, builtin_models, lrn_deleted, wait_for_quiet, machine_lines, md_table, median, quartiles, usable_cores, write_result

DEFAULT_MODELS = ("alexnet", "googlenet")
CANDIDATES = [f"{w}/{p}" for w, p in itertools.product(WINDOWS, POWERS) if w != "shifts"]
"""Every float32 formulation of decompose, as 'window/power' (``shifts`` is the float64 reference's window)."""
FOREIGN: Dict[Tuple[str, int], Tuple[float, int]] = {}
"""(model, batch) -> (CPU cores other processes used during the kept rounds, rounds discarded)."""
MACHINE: List[str] = []
RETRY = {"left": 0.0}
"""Seconds the whole run may still spend on rounds that were discarded for contention."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help="comma-separated built-in models, or 'all' (default: %(default)s)")
    p.add_argument("--batches", default="1,16", help="comma-separated batch sizes (default: %(default)s)")
    p.add_argument("--runs", default="1:30,16:8",
                   help="timed runs per variant, per batch: 'B:R,...'; batches not listed get the "
                        "value of the largest listed batch not above them (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per variant and batch (default: %(default)s)")
    p.add_argument("--threads", type=int, default=usable_cores(),
                   help="ORT intra-op threads (default: all usable cores = %(default)s)")
    p.add_argument("--quick", action="store_true", help="smoke run: batch 1: 5 runs, batch 16: 2 runs, 1 warm-up")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--provider", default="cpu", help="cpu or cuda (the GPU script uses cuda; default: %(default)s)")
    p.add_argument("--candidates", default="all",
                   help="comma-separated 'window/power' formulations, or 'all' (default: %(default)s = "
                        + ", ".join(CANDIDATES) + ")")
    p.add_argument("--thread-pool", choices=("global", "session"), default="global",
                   help="one intra-op thread pool shared by all sessions, or one per session "
                        "(default: %(default)s; see the module docstring)")
    add_quiet_options(p, wait=30.0, retry=150.0)
    p.add_argument("--out", default="", help="Markdown output (default: benchmarks/results/bench_decompose[.quick].md)")
    args = p.parse_args(argv)
    args.models = builtin_models(p, args.models)
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.candidates = CANDIDATES if args.candidates == "all" else [c for c in args.candidates.split(",") if c]
    for c in args.candidates:
        if c not in CANDIDATES:
            p.error(f"unknown candidate '{c}'; valid: {', '.join(CANDIDATES)}")
    if args.quick:
        args.runs, args.warmup = "1:5,16:2", 1
    table = sorted((int(b), int(r)) for b, r in (item.split(":") for item in args.runs.split(",") if item))
    args.run_counts = {}
    for batch in args.batches:
        fitting = [r for b, r in table if b <= batch] or [table[0][1]]
        args.run_counts[batch] = fitting[-1]
    return args


def make_session(model: onnx.ModelProto, threads: int, provider: str = "cpu",
                 shared_pool: bool = False) -> ort.InferenceSession:
    """A session; with ``shared_pool``, on the global thread pool (``ort.set_global_thread_pool_sizes`` first)."""
    opts = ort.SessionOptions()
    if shared_pool:
        opts.use_per_session_threads = False
    else:
        opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # the default, stated
    full = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}.get(provider, provider)
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=[full])
    if session.get_providers()[0] != full:
        raise SystemExit(f"{full} is not available (got {session.get_providers()})")
    return session


def build_variants(name: str, args) -> Tuple[Dict[str, ort.InferenceSession], Dict[str, str]]:
    """Sessions for native, deleted and the candidates; and a description of each."""
    t0 = time.perf_counter()
    native = models.build(name, variant="full", seed=args.seed)
    sites = lrnconv.find_lrn(native)
    params = sorted({(s.size, s.alpha, s.beta, s.bias) for s in sites})
    print(f"[{name}] built in {time.perf_counter() - t0:.1f}s, {native.ByteSize() / 1e6:.0f} MB, "
          f"{len(sites)} LRN sites {params}", file=sys.stderr)
    sessions: Dict[str, ort.InferenceSession] = {}
    notes: Dict[str, str] = {}
    shared = args.thread_pool == "global"
    sessions["native"] = make_session(native, args.threads, args.provider, shared)
    notes["native"] = f"{len(sites)} x LRN"
    sessions["deleted"] = make_session(lrn_deleted(native), args.threads, args.provider, shared)
    notes["deleted"] = "LRN -> Identity"
    for cand in args.candidates:
        window, power = cand.split("/")
        result = lrnconv.convert(native, "decompose", options={"window": window, "power": power})
        used = {(r.details.get("window"), r.details.get("power")) for r in result.sites}
        ops = result.sites[0].details.get("ops", []) if result.sites else []
        desc = f"{len(ops)} ops/site"
        if used != {(window, power)}:
            desc += f"; actually used {sorted(used)}"
        notes[cand] = desc
        assert not any(n.op_type == "LRN" for n in result.model.graph.node)
        sessions[cand] = make_session(result.model, args.threads, args.provider, shared)
        del result
    print(f"[{name}] {len(sessions)} sessions ready after {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return sessions, notes


def measure(name: str, sessions: Dict[str, ort.InferenceSession], batch: int, args) -> Tuple[Dict[str, List[float]], Dict[str, float]]:
    """Timed runs (ms) per variant, round-robin; and each candidate's max rel. deviation from native."""
    any_session = next(iter(sessions.values()))
    feeds = random_inputs_for(any_session, batch, args.seed)
    names = list(sessions)
    outputs = {}
    for v in names:
        for i in range(args.warmup):
            out = sessions[v].run(None, feeds)
            if i == 0:
                outputs[v] = out[0]
    ref = outputs["native"]
    scale = float(np.max(np.abs(ref))) or 1.0
    deviation = {v: float(np.max(np.abs(outputs[v] - ref))) / scale for v in names}
    times: Dict[str, List[float]] = {v: [] for v in names}
    runs = args.run_counts[batch]
    if args.wait_quiet > 0:
        wait_for_quiet(args.wait_quiet)
    t0 = time.perf_counter()
    kept_load: List[float] = []
    discarded = 0
    while len(kept_load) < runs:
        r = len(kept_load) + discarded
        order = names[r % len(names):] + names[:r % len(names)]
        round_times = {}
        round_start = time.monotonic()
        with ForeignLoad() as load:
            for v in order:
                sess = sessions[v]
                start = time.perf_counter()
                sess.run(None, feeds)
                round_times[v] = (time.perf_counter() - start) * 1e3
        if load.cores > args.max_foreign and RETRY["left"] > 0:
            # someone else used the machine during this round: drop it, let them finish
            discarded += 1
            spent = time.monotonic() - round_start
            pause = min(5.0, max(0.0, RETRY["left"] - spent))
            time.sleep(pause)
            RETRY["left"] -= spent + pause
            continue
        kept_load.append(load.cores)
        for v, t in round_times.items():
            times[v].append(t)
    foreign = sum(kept_load) / len(kept_load)
    print(f"[{name}] batch {batch}: {runs} rounds x {len(names)} variants in {time.perf_counter() - t0:.1f}s; "
          f"{discarded} contended round(s) discarded; other processes used {foreign:.2f} cores during the "
          f"kept rounds (retry budget left {max(RETRY['left'], 0):.0f}s)", file=sys.stderr)
    FOREIGN[(name, batch)] = (foreign, discarded)
    return times, deviation


def random_inputs_for(session: ort.InferenceSession, batch: int, seed: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in session.get_inputs():
        shape = [batch if (i == 0 and not isinstance(d, int)) else d for i, d in enumerate(inp.shape)]
        feeds[inp.name] = rng.uniform(-128.0, 128.0, size=shape).astype(np.float32)
    return feeds


def fmt_ms(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.1f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    ort.set_default_logger_severity(3)
    if args.thread_pool == "global":
        ort.set_global_thread_pool_sizes(args.threads, 1)
    RETRY["left"] = args.retry_budget
    MACHINE[:] = machine_lines()  # the revision measured, not the one at the end
    results = {}  # (model, batch) -> {variant: [ms...]}
    deviations = {}
    notes_by_model = {}
    for name in args.models:
        sessions, notes = build_variants(name, args)
        notes_by_model[name] = notes
        for batch in args.batches:
            results[(name, batch)], deviations[(name, batch)] = measure(name, sessions, batch, args)
        del sessions

    elapsed = time.perf_counter() - started
    doc = render(args, results, deviations, notes_by_model, elapsed)
    print(doc)
    out = args.out or os.path.join(RESULTS, "bench_decompose" + (".quick" if args.quick else "") + ".md")
    path = write_result("bench_decompose", doc, out)
    raw = os.path.splitext(path)[0] + ".json"
    with open(raw, "w") as f:
        json.dump({f"{m}@{b}": t for (m, b), t in results.items()}, f, indent=1)
    print(f"\nwrote {os.path.relpath(path)} and {os.path.relpath(raw)} ({elapsed:.0f}s)", file=sys.stderr)
    return 0


def paired(times: Dict[str, List[float]], v: str, base: str) -> float:
    """Median over rounds of t_v / t_base within the same round (robust to slow drift)."""
    return median([a / b for a, b in zip(times[v], times[base])])


def render(args, results, deviations, notes_by_model, elapsed) -> str:
    out: List[str] = ["# LRN decomposition: ONNX Runtime CPU latency", ""]
    out += MACHINE or machine_lines()
    runs = ", ".join(f"batch {b}: {args.run_counts[b]} timed rounds" for b in args.batches)
    discarded = sum(d for _, d in FOREIGN.values())
    pool = "one thread pool shared by all sessions" if args.thread_pool == "global" else "a thread pool per session"
    out += [f"- sessions: {args.provider} provider, ORT_ENABLE_ALL (default), {args.threads} intra-op threads "
            f"({pool}); "
            f"{runs} (one run of every variant per round, order rotated each round) after {args.warmup} "
            f"warm-up run(s) per variant; a round during which other processes used more than "
            f"{args.max_foreign} cores was discarded and retried ({discarded} in all, retry budget "
            f"{args.retry_budget:.0f}s); inputs uniform in [-128, 128), seed {args.seed}; "
            f"total benchmark time {elapsed:.0f}s", ""]
    out += ["`native` = ORT's LRN kernel; `deleted` = every LRN replaced by Identity (the floor); "
            "`W/P` = `decompose` with window W and power P. Times in ms: median [interquartile range] "
            "and minimum of the timed runs. `x native` / `x deleted` = ratio of the medians; "
            "`paired` = median over rounds of the per-round ratio (each round runs every variant once, "
            "so this cancels slow changes in machine load). `dev` = max |y - y_native| / max |y_native| "
            "on the output (`deleted` is not the same function, so its dev is large).", ""]

    fastest = {}
    for (name, batch), times in results.items():
        med = {v: median(t) for v, t in times.items()}
        nat, dele = med["native"], med["deleted"]
        rows = []
        for v in ["native", "deleted"] + args.candidates:
            lo, hi = quartiles(times[v])
            rows.append([f"`{v}`", f"{fmt_ms(med[v])} [{fmt_ms(lo)}-{fmt_ms(hi)}]", fmt_ms(min(times[v])),
                         f"{med[v] / nat:.3f}", f"{paired(times, v, 'native'):.3f}",
                         f"{med[v] / dele:.3f}", f"{paired(times, v, 'deleted'):.3f}",
                         f"{deviations[(name, batch)][v]:.1e}", notes_by_model[name][v]])
        best = min(args.candidates, key=lambda v: med[v])
        fastest[(name, batch)] = (best, med[best], nat, dele, times)
        foreign, dropped = FOREIGN.get((name, batch), (0.0, 0))
        out += [f"## {name}, batch {batch}", "",
                f"Other processes used {foreign:.2f} of {usable_cores()} cores on average during the kept "
                f"rounds ({dropped} contended round(s) discarded).", "",
                md_table(["variant", "median [IQR]", "min", "x native", "paired", "x deleted", "paired",
                          "dev", "notes"], rows, "lrrrrrrrl"), ""]

    out += ["## LRN share of native latency", "",
            "(native - deleted) / native: the most any LRN rewrite can save. From the medians, and as "
            "1 - paired(deleted / native).", ""]
    rows = []
    for (name, batch), times in results.items():
        nat, dele = median(times["native"]), median(times["deleted"])
        rows.append([name, batch, fmt_ms(nat), fmt_ms(dele), f"{(nat - dele) / nat * 100:.1f}%",
                     f"{(1 - paired(times, 'deleted', 'native')) * 100:.1f}%"])
    out += [md_table(["model", "batch", "native ms", "deleted ms", "LRN share", "paired"], rows), ""]

    out += ["## Candidates across all models and batches", "",
            "Geometric means over the (model, batch) cells of the paired ratios; `worst` = the largest "
            "paired ratio to native in any cell; `rank` = mean rank by median time among the candidates "
            "(1 = fastest); `LRN cost` = geomean over cells of (candidate - deleted) / (native - deleted) "
            "from the paired ratios, where the LRN share is over 5% (what the decomposition costs relative "
            "to ORT's LRN kernel: 0 = free, 1 = as slow as native).", ""]
    rows = []
    keys = list(results)
    ranks = {v: [] for v in args.candidates}
    for k in keys:
        med = {v: median(results[k][v]) for v in args.candidates}
        for i, v in enumerate(sorted(args.candidates, key=med.get)):
            ranks[v].append(i + 1)
    for v in sorted(args.candidates, key=lambda v: geomean([paired(results[k], v, "native") for k in keys])):
        r_nat = [paired(results[k], v, "native") for k in keys]
        r_del = [paired(results[k], v, "deleted") for k in keys]
        shares = []
        for k in keys:
            floor = paired(results[k], "deleted", "native")
            if 1 - floor > 0.05:
                shares.append(max(paired(results[k], v, "native") - floor, 1e-3) / (1 - floor))
        rows.append([f"`{v}`", f"{geomean(r_nat):.3f}", f"{max(r_nat):.3f}", f"{geomean(r_del):.3f}",
                     f"{max(r_del):.3f}", f"{sum(ranks[v]) / len(keys):.1f}",
                     f"{geomean(shares):.2f}" if shares else "n/a"])
    out += [md_table(["candidate", "geomean x native", "worst x native", "geomean x deleted", "worst x deleted",
                      "rank", "LRN cost"], rows, "lrrrrrr"), ""]

    out += ["## Summary", ""]
    rows = []
    for (name, batch), (best, t, nat, dele, times) in fastest.items():
        rows.append([name, batch, f"`{best}`", fmt_ms(t), f"{t / nat:.3f}", f"{paired(times, best, 'native'):.3f}",
                     f"{t / dele:.3f}", f"{paired(times, best, 'deleted'):.3f}", "yes" if t < nat else "**no**"])
    out += [md_table(["model", "batch", "fastest (median)", "ms", "x native", "paired", "x deleted", "paired",
                      "beats native"], rows, "lrlrrrrrl"), ""]
    winners = sorted({best for best, *_ in fastest.values()})
    out.append(f"- Fastest candidate per cell: {', '.join(f'`{w}`' for w in winners)}"
               + (" (the same everywhere)." if len(winners) == 1 else " (differs by cell)."))
    beats = [c for c in args.candidates
             if all(median(results[k][c]) < median(results[k]["native"]) and paired(results[k], c, "native") < 1
                    for k in keys)]
    out.append("- Candidates faster than native LRN in every cell (by median and paired ratio): "
               + (", ".join(f"`{c}`" for c in beats) if beats else "**none**") + ".")
    key = ("alexnet", 16)
    if key in results:
        times = results[key]
        dele = median(times["deleted"])
        within = [c for c in args.candidates if median(times[c]) <= 1.25 * dele and paired(times, c, "deleted") <= 1.25]
        best = min(args.candidates, key=lambda c: median(times[c]))
        out.append(f"- AlexNet batch 16: fastest `{best}` at {median(times[best]) / dele:.3f}x deleted "
                   f"(paired {paired(times, best, 'deleted'):.3f}); within 1.25x of deleted (both measures): "
                   + (", ".join(f"`{c}`" for c in within) if within else "**none**") + ".")
    return "\n".join(out)


def geomean(values) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


if __name__ == "__main__":
    sys.exit(main())
