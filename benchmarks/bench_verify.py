"""Streaming verification: memory flat in the sample count, and the cost of a fixed batch of 1.

Two measurements on the reduced-width AlexNet (``lrnconv.models.build("alexnet", "small")``)
against its ``decompose`` rewrite:

* **peak memory** of ``lrnconv verify REF CAND --per-site --samples N`` for N = 64 and 1024,
  each in a fresh interpreter (a subprocess; the parent reads the child's peak RSS with
  ``os.wait4``). Random samples are drawn chunk by chunk and every metric streams, so the
  two should be within 10 %.
* **time** of ``lrnconv.verify`` on the same 64 samples with the model's input declared as a
  fixed batch of 1 (every sample its own run) and as a dynamic batch (runs of 16), in one
  process, round-robin, medians of the timed runs; the ratio fixed / dynamic.

Not a test: nothing asserts.

    python benchmarks/bench_verify.py            # 5 timed runs per mode
    python benchmarks/bench_verify.py --quick    # 2 runs
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

from _common import add_quiet_options, machine_lines, md_table, median, wait_for_quiet, write_result

COUNTS = (64, 1024)


def peak_rss_mib(args: List[str]) -> Dict[str, float]:
    """Wall time and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise RuntimeError(child.stderr.read().decode())
    return {"seconds": elapsed, "peak_mib": usage.ru_maxrss / 1024}


def build_models(folder: str) -> Dict[str, str]:
    """The reference and candidate files, dynamic and fixed batch 1 (a child: the parent stays small)."""
    script = f"""
import onnx, lrnconv
from lrnconv.models import build
model = build("alexnet", variant="small")
converted = lrnconv.convert(model, "decompose").model
onnx.save(model, {folder!r} + "/ref.onnx"); onnx.save(converted, {folder!r} + "/cand.onnx")
for m in (model, converted):
    for vi in list(m.graph.input) + list(m.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 1
onnx.save(model, {folder!r} + "/ref1.onnx"); onnx.save(converted, {folder!r} + "/cand1.onnx")
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    return {name: os.path.join(folder, f"{name}.onnx") for name in ("ref", "cand", "ref1", "cand1")}


TIMING = r"""
import json, sys, time
import onnx, lrnconv
paths, runs = json.loads(sys.argv[1]), int(sys.argv[2])
models = {k: onnx.load(v) for k, v in paths.items()}
pairs = {"dynamic": ("ref", "cand"), "fixed batch 1": ("ref1", "cand1")}
times = {k: [] for k in pairs}
for round_ in range(runs + 1):
    order = list(pairs) if round_ % 2 == 0 else list(reversed(pairs))
    for name in order:
        ref, cand = pairs[name]
        start = time.perf_counter()
        report = lrnconv.verify(models[ref], models[cand], samples=64, per_site=True)
        elapsed = time.perf_counter() - start
        assert report.samples == 64
        if round_:  # the first round warms up
            times[name].append(elapsed)
print(json.dumps(times))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 timed runs per mode")
    add_quiet_options(parser, wait=60.0)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    runs = 2 if args.quick else 5
    waited = wait_for_quiet(args.wait_quiet)
    with tempfile.TemporaryDirectory() as folder:
        paths = build_models(folder)
        memory = {}
        for count in COUNTS:
            samples = [peak_rss_mib([sys.executable, "-m", "lrnconv", "verify", paths["ref"], paths["cand"],
                                     "--per-site", "--samples", str(count)]) for _ in range(max(2, runs // 2))]
            memory[count] = {"peak_mib": median([s["peak_mib"] for s in samples]),
                             "seconds": median([s["seconds"] for s in samples])}
        timing = json.loads(subprocess.run([sys.executable, "-c", TIMING, json.dumps(paths), str(runs)],
                                           check=True, capture_output=True, text=True).stdout)
    fixed, dynamic = median(timing["fixed batch 1"]), median(timing["dynamic"])
    lines = ["# Streaming verification: memory vs sample count, fixed batch 1 vs dynamic", ""]
    lines += machine_lines() + [f"- waited {waited:.0f} s for a quiet machine", "",
                                "## `lrnconv verify --per-site` peak memory (reduced-width AlexNet vs its decompose)", ""]
    lines.append(md_table(["samples", "peak RSS MiB", "wall s"],
                          [[c, f"{memory[c]['peak_mib']:.0f}", f"{memory[c]['seconds']:.1f}"] for c in COUNTS]))
    ratio = memory[COUNTS[1]]["peak_mib"] / memory[COUNTS[0]]["peak_mib"]
    lines += ["", f"1024 / 64 samples: **{ratio:.3f}×** peak memory (target: within 10 %).", "",
              "## `lrnconv.verify` on 64 samples, per-site: fixed batch 1 (64 runs) vs dynamic (runs of 16)", ""]
    lines.append(md_table(["input batch", "median s", "runs"],
                          [[k, f"{median(v):.2f}", len(v)] for k, v in timing.items()]))
    lines += ["", f"fixed batch 1 / dynamic: **{fixed / dynamic:.2f}×** (medians of {runs} runs, one process, "
              "alternating order)."]
    text = "\n".join(lines)
    print(text)
    print("wrote", write_result("bench_verify", text, args.out))
    with open(os.path.join(os.path.dirname(args.out) if args.out else os.path.join(os.path.dirname(__file__), "results"),
                           "bench_verify.json"), "w") as f:
        json.dump({"memory": memory, "timing": timing}, f, indent=1)


if __name__ == "__main__":
    main()
