"""Calibrated rewrites: folded-model latency, calibration memory and throughput.

1. ONNX Runtime CPU latency of the ``fold``-rewritten AlexNet and GoogLeNet replicas
   against the same models with every LRN deleted (replaced by Identity): folding must
   cost nothing at run time (target: within 3 %).
2. Peak memory of ``lrnconv.measure.calibration`` on 64 vs 1024 samples streamed from a
   memory-mapped .npy (each in a fresh process): must not grow with the count.
3. Calibration throughput against plain inference of the same samples in the same
   batches (the price of exposing every site's tensors and accumulating statistics).

    python benchmarks/bench_calibrate.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx

from _common import lrn_deleted, machine_lines, md_table, median, write_result

import lrnconv
from lrnconv.runtime.inputs import random_inputs
from lrnconv.models import build
from lrnconv.runtime.sessions import create_session


def latency_ms(model: onnx.ModelProto, feeds, runs: int) -> list:
    session = create_session(model, "CPUExecutionProvider")
    session.inner.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.inner.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def fold_latency(quick: bool) -> str:
    rows = []
    for name in ("alexnet", "googlenet"):
        model = build(name, variant="full")
        folded = lrnconv.convert(model, "fold", calibration_samples=16).model
        assert "Mul" not in {n.op_type for n in folded.graph.node} - {n.op_type for n in model.graph.node}
        deleted = lrn_deleted(model)
        for batch, runs in ((1, 10 if quick else 40), (16, 3 if quick else 10)):
            feeds = random_inputs(model, batch, seed=1)
            fold_times, deleted_times = [], []
            for _ in range(3):  # interleave rounds so drift in machine load hits both
                fold_times += latency_ms(folded, feeds, runs)
                deleted_times += latency_ms(deleted, feeds, runs)
            f, d = median(fold_times), median(deleted_times)
            rows.append([name, batch, f"{d:.2f}", f"{f:.2f}", f"{f / d:.3f}"])
    return md_table(["model", "batch", "LRN deleted ms", "fold ms", "fold / deleted"], rows)


CHILD = r"""
import json, sys, time
import numpy as np
import lrnconv
from lrnconv.measure.calibration import calibrate
from lrnconv.runtime.runnable import RunnableReference
from lrnconv.runtime.datafiles import load_arrays
from lrnconv.runtime.inputs import array_samples
from lrnconv.models import build
from lrnconv.runtime.sessions import create_session
model = build("alexnet", variant="small")
sites = lrnconv.find_lrn(model)
data = array_samples(model, load_arrays(sys.argv[1], model))
import threading
def anon_mib():
    # RssAnon: memory the process allocated; pages of the memory-mapped .npy are file-backed
    # page cache (reclaimable, shared) and would otherwise grow with the file read
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("RssAnon")) / 1024
peak = [anon_mib()]
done = threading.Event()
def sample():
    while not done.wait(0.002):
        peak[0] = max(peak[0], anon_mib())
before = peak[0]
threading.Thread(target=sample, daemon=True).start()
start = time.perf_counter()
if sys.argv[2] == "calibrate":
    calibrate(RunnableReference(model, sites), data)
else:
    half, _ = data.halves()
    session = create_session(model, "CPUExecutionProvider")
    sum(1 for chunk in half.chunks(16, False) if session.run_chunk(chunk))  # run every chunk, keep nothing
elapsed = time.perf_counter() - start
done.set()
peak[0] = max(peak[0], anon_mib())
print(json.dumps({"seconds": elapsed, "peak_mib": peak[0], "before_mib": before}))
"""


def calibration_cost(quick: bool) -> str:
    rows = []
    model = build("alexnet", variant="small")
    with tempfile.TemporaryDirectory() as folder:
        for count in (64, 1024):
            path = os.path.join(folder, f"x{count}.npy")
            np.save(path, random_inputs(model, count, seed=2)["data"])
            result = {}
            for mode in ("calibrate", "inference"):
                runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, path, mode], check=True,
                                                  capture_output=True, text=True).stdout)
                        for _ in range(1 if quick else 3)]
                result[mode] = {k: median([r[k] for r in runs]) for k in runs[0]}
            c, i = result["calibrate"], result["inference"]
            rows.append([count, f"{c['before_mib']:.0f}", f"{c['peak_mib']:.0f}", f"{i['peak_mib']:.0f}",
                         f"{c['seconds']:.2f}", f"{i['seconds']:.2f}", f"{c['seconds'] / i['seconds']:.2f}"])
    return md_table(["samples", "anon RSS before MiB", "calibrate peak MiB", "inference peak MiB", "calibrate s",
                     "inference s", "calibrate / inference"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    text = "\n".join(["# Calibrated rewrites: fold latency, calibration memory and throughput", ""]
                     + machine_lines() + ["", "## fold vs LRN deleted (ONNX Runtime CPU, medians)", "",
                                          fold_latency(args.quick), "",
                                          "## calibration on AlexNet (small) from a memory-mapped .npy, batch 16", "",
                                          "Peak anonymous RSS (RssAnon, sampled every 2 ms) of a fresh process; calibration fits on the first half of the samples, "
                                          "inference runs that same half through a plain session.", "",
                                          calibration_cost(args.quick), ""])
    print(text)
    write_result("bench_calibrate" + (".quick" if args.quick else ""), text)


if __name__ == "__main__":
    main()
