"""Zoo throughput and peak memory: ``--jobs 1``, ``--jobs 2`` and ``--executor dask`` (two local workers).

Each run is a fresh ``python -m lrnconv zoo -o TMP --variant small --force --quiet`` (the
built-in replicas at reduced width, ``decompose``, verification and timing as by default),
so a run pays what a user pays: interpreter start, imports, for Dask the local cluster. The
three configurations are interleaved round by round (load drifting over the benchmark
hits all alike); the report gives medians over rounds and, per round, the ratio against
``--jobs 1`` of that round (median of those paired ratios).

- throughput: models per minute of command wall time;
- in-run: ``report.json``'s ``run.seconds`` (from the first model to the report, Dask's
  cluster start included), without interpreter start and imports;
- peak memory: the largest sum of RSS over the process tree (the zoo process, its pool
  workers, Dask's nannies and workers), sampled every 20 ms with psutil.

    python benchmarks/bench_zoo.py [--rounds 5] [--strategies decompose] [--copies K] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

import psutil

from _common import ROOT, ForeignLoad, add_quiet_options, machine_lines, md_table, median, wait_for_quiet, write_result

CONFIGS = {
    "--jobs 1": ["--jobs", "1"],
    "--jobs 2": ["--jobs", "2"],
    "--executor dask (2 local workers)": ["--executor", "dask", "--jobs", "2"],
}


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process] + process.children(recursive=True):
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # ended between listing and reading
            continue
    return total


def one_run(extra: List[str], strategies: str, out: str, source: str) -> Dict[str, float]:
    zoo = [source] if source else ["--variant", "small"]
    command = [sys.executable, "-m", "lrnconv", "zoo"] + zoo + ["-o", out, "--force", "--quiet",
                                                               "--strategy", strategies] + extra
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        try:
            peak = max(peak, tree_rss(watched))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    wall = time.perf_counter() - start
    stderr = child.stderr.read().decode()
    if child.returncode not in (0, 1):  # 1: some conversion failed verification, which is a result
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}): {stderr}")
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    models = report["models"]
    return {"wall_s": wall, "run_s": report["run"]["seconds"], "models": models,
            "models_per_min": models / wall * 60, "peak_mib": peak / 2**20,
            "workers": report["run"]["workers"]}


def make_copies(folder: str, copies: int) -> str:
    import onnx

    from lrnconv.models import BUILTIN, build

    os.makedirs(folder)
    for name in BUILTIN:
        model = build(name, variant="small")
        for k in range(copies):
            onnx.save(model, os.path.join(folder, f"{name}_{k}.onnx"))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--strategies", default="decompose")
    parser.add_argument("--copies", type=int, default=0,
                        help="instead of the built-in zoo: a folder with this many copies of each small replica "
                             "(as .onnx files), so that the zoo's work outweighs starting it")
    parser.add_argument("--quick", action="store_true", help="2 rounds, for a smoke run")
    add_quiet_options(parser, wait=60.0, retry=300.0)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    foreign_start = wait_for_quiet(args.wait_quiet)
    runs: Dict[str, List[Dict[str, float]]] = {name: [] for name in CONFIGS}
    discarded, budget = 0, args.retry_budget
    with tempfile.TemporaryDirectory() as tmp, ForeignLoad() as load:
        source = make_copies(os.path.join(tmp, "models"), args.copies) if args.copies else ""
        for name, extra in CONFIGS.items():  # warm-up: file caches, compiled bytecode
            one_run(extra, args.strategies, os.path.join(tmp, "warm"), source)
        for r in range(rounds):
            order = list(CONFIGS.items())
            order = order[r % len(order):] + order[:r % len(order)]
            for name, extra in order:
                while True:
                    with ForeignLoad() as foreign:
                        run = one_run(extra, args.strategies, os.path.join(tmp, f"r{r}"), source)
                    run["foreign_cores"] = foreign.cores
                    if foreign.cores <= args.max_foreign or budget <= 0:
                        break
                    discarded += 1
                    budget -= run["wall_s"]
                    print(f"  (discarded: other processes used {foreign.cores:.2f} cores)", file=sys.stderr)
                runs[name].append(run)
                print(f"round {r + 1}/{rounds} {name}: {runs[name][-1]}", file=sys.stderr)
    base = runs["--jobs 1"]
    rows = []
    for name, results in runs.items():
        paired = [b["wall_s"] / x["wall_s"] for b, x in zip(base, results)]
        memory = [x["peak_mib"] / b["peak_mib"] for b, x in zip(base, results)]
        rows.append([name, results[0]["workers"], f"{median([x['models_per_min'] for x in results]):.0f}",
                     f"{median([x['wall_s'] for x in results]):.2f}", f"{median([x['run_s'] for x in results]):.2f}",
                     f"{median(paired):.2f}", f"{median([x['peak_mib'] for x in results]):.0f}",
                     f"{median(memory):.2f}"])
    text = "\n".join(
        ["# Zoo throughput and peak memory: --jobs 1, --jobs 2, --executor dask", ""] + machine_lines()
        + [f"- other processes used {foreign_start:.2f} cores before and {load.cores:.2f} cores during the runs; "
           f"{discarded} run(s) during which they used more than {args.max_foreign} cores were discarded and redone "
           f"(kept runs: at most {max(x['foreign_cores'] for v in runs.values() for x in v):.2f} cores)",
           "", ("Built-in zoo at reduced width (`--variant small`, " if not args.copies else
                f"A folder of {args.copies} copies of each built-in replica at reduced width (")
           + f"{base[0]['models']} models), strategies "
           f"`{args.strategies}`, default verification (8 samples) and timing (5 runs); a fresh process per run; "
           f"{rounds} rounds, configurations interleaved; medians, ratios paired within a round.", "",
           md_table(["executor", "workers", "models/min", "wall s", "in-run s", "throughput × jobs 1",
                     "peak RSS MiB (tree)", "memory × jobs 1"], rows)])
    path = write_result("bench_zoo", text, args.out)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(runs, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
