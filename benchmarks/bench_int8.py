"""INT8: ONNX Runtime CPU latency of the quantized models per strategy, and ``inspect --data`` memory.

Two measurements:

* **latency** of the reduced-width AlexNet and GoogLeNet (``lrnconv.models.build(name,
  "small")``): the float original, the INT8 model of the original (``keep``: every LRN left
  in float, the float islands ONNX Runtime's quantizer leaves) and the INT8 model of each
  strategy's rewrite (``remove``, ``fold``, ``bn``, ``l2``, ``decompose``; fitted and
  quantized on 32 seeded random pixel samples, as ``convert --quantize int8`` does), at
  batch 1 and 16. One process, every variant timed once per round, the order rotated from
  round to round; medians of the rounds, and the ratios against the float original and
  against the INT8 original (the paired ratio: the median over rounds of the ratio within
  each round).
* **peak memory** of ``lrnconv inspect alexnet_small.onnx --data X.npy --quantize int8`` for
  64 and 1024 samples (memory-mapped ``.npy`` files of seeded random pixels), each in a fresh
  interpreter (the parent reads the child's peak RSS with ``os.wait4``). Everything streams,
  so the two should be within 10 %.

Not a test: nothing asserts.

    python benchmarks/bench_int8.py            # 15 rounds
    python benchmarks/bench_int8.py --quick    # 3 rounds, 64 vs 256 samples
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

from _common import RESULTS, add_quiet_options, machine_lines, md_table, median, wait_for_quiet, write_result

MODELS = ("alexnet", "googlenet")
STRATEGIES = ("remove", "fold", "bn", "l2", "decompose")
BATCHES = (1, 16)

BUILD = r"""
import json, sys
import onnx, lrnconv
from lrnconv.models import build
from lrnconv.runtime.inputs import random_samples
from lrnconv.measure.quantization import Int8Options, quantize_model
folder, names, strategies = sys.argv[1], sys.argv[2].split(","), sys.argv[3].split(",")
made = {}
for name in names:
    model = build(name, variant="small")
    samples, _ = random_samples(model, 64)
    fit = samples.halves()[0]
    paths = {"float": f"{folder}/{name}.float.onnx"}
    onnx.save(model, paths["float"])
    original, _ = quantize_model(model, fit, Int8Options())
    paths["int8 original (keep)"] = f"{folder}/{name}.keep.int8.onnx"
    onnx.save(original.model, paths["int8 original (keep)"])
    for strategy in strategies:
        result = lrnconv.convert(model, strategy, calibration=samples, quantize="int8")
        paths[f"int8 {strategy}"] = f"{folder}/{name}.{strategy}.int8.onnx"
        onnx.save(result.int8.model, paths[f"int8 {strategy}"])
    made[name] = paths
print(json.dumps(made))
"""

TIMING = r"""
import json, sys, time
import numpy as np, onnxruntime as ort
paths, batches, rounds = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
options = ort.SessionOptions()
options.log_severity_level = 3
out = {}
for model, variants in paths.items():
    sessions = {k: ort.InferenceSession(v, options, providers=["CPUExecutionProvider"]) for k, v in variants.items()}
    first = next(iter(sessions.values())).get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in first.shape]
    for batch in batches:
        rng = np.random.default_rng(0)
        x = rng.uniform(-128, 128, [batch] + shape[1:]).astype(np.float32)
        times = {k: [] for k in sessions}
        names = list(sessions)
        for k in names:  # warm up
            sessions[k].run(None, {first.name: x})
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for k in order:
                start = time.perf_counter()
                sessions[k].run(None, {first.name: x})
                times[k].append(time.perf_counter() - start)
        out[f"{model}/{batch}"] = times
print(json.dumps(out))
"""


def _anon_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("RssAnon")), 0)
    except OSError:  # the child has exited
        return 0


def peak_rss_mib(args: List[str]) -> Dict[str, float]:
    """Wall time, peak RSS (``os.wait4``) and peak anonymous RSS (``RssAnon``, polled every 5 ms) of a child.

    The data is a memory-mapped ``.npy``: the pages read stay resident as file-backed page cache
    (reclaimable, shared) and count in the plain RSS, so RSS grows with the file even when the
    process itself allocates nothing more; RssAnon is what the process allocated.
    """
    start = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    anon = 0
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        anon = max(anon, _anon_kib(child.pid))
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(child.stderr.read().decode())
    peak = usage.ru_maxrss / 1024
    return {"seconds": elapsed, "peak_mib": peak, "anon_mib": anon / 1024}


MAKE_DATA = r"""
import sys
import numpy as np, onnx
from lrnconv.models import build
folder, counts = sys.argv[1], [int(c) for c in sys.argv[2].split(",")]
onnx.save(build("alexnet", variant="small"), f"{folder}/alexnet_small.onnx")
for count in counts:
    data = np.lib.format.open_memmap(f"{folder}/x{count}.npy", mode="w+", dtype=np.float32, shape=(count, 3, 227, 227))
    for start in range(0, count, 64):
        stop = min(start + 64, count)
        data[start:stop] = np.random.default_rng(start).uniform(-128, 128, (stop - start, 3, 227, 227))
    data.flush()
    del data
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds; 64 vs 256 samples")
    add_quiet_options(parser, wait=60.0)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rounds = 3 if args.quick else 15
    counts = (64, 256) if args.quick else (64, 1024)
    waited = wait_for_quiet(args.wait_quiet)
    with tempfile.TemporaryDirectory() as folder:
        paths = json.loads(subprocess.run([sys.executable, "-c", BUILD, folder, ",".join(MODELS), ",".join(STRATEGIES)],
                                          check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        timing = json.loads(subprocess.run([sys.executable, "-c", TIMING, json.dumps(paths), json.dumps(BATCHES),
                                            str(rounds)], check=True, capture_output=True, text=True).stdout)
        subprocess.run([sys.executable, "-c", MAKE_DATA, folder, ",".join(map(str, counts))], check=True)
        memory = {}
        for count in counts:
            runs = [peak_rss_mib([sys.executable, "-m", "lrnconv", "inspect", f"{folder}/alexnet_small.onnx",
                                  "--data", f"{folder}/x{count}.npy", "--quantize", "int8"]) for _ in range(2)]
            memory[count] = {key: median([r[key] for r in runs]) for key in ("peak_mib", "anon_mib", "seconds")}

    from lrnconv.measure.quantization import Int8Options  # only now: the parent stays light while children run

    lines = ["# INT8: latency per strategy, and `inspect --data` memory", ""]
    lines += machine_lines() + [f"- waited {waited:.0f} s for a quiet machine", "",
                                "## ONNX Runtime CPU latency (reduced-width replicas, seeded random weights)", "",
                                f"Medians of {rounds} rounds (ms); ratios are paired (median over rounds of the "
                                "ratio within a round). INT8: ONNX Runtime's static quantizer as "
                                f"`convert --quantize int8` runs it on this CPU ({Int8Options().settings().describe()}"
                                ", on 32 random pixel samples).", ""]
    rows = []
    for key, times in timing.items():
        model, batch = key.split("/")
        base, int8_base = times["float"], times["int8 original (keep)"]
        for variant, values in times.items():
            vs_float = median([v / b for v, b in zip(values, base)])
            vs_int8 = median([v / b for v, b in zip(values, int8_base)])
            rows.append([model, batch, variant, f"{median(values) * 1e3:.2f}", f"{vs_float:.2f}", f"{vs_int8:.2f}"])
    lines.append(md_table(["model", "batch", "variant", "median ms", "× float original", "× INT8 original"], rows))
    ratio = memory[counts[1]]["anon_mib"] / memory[counts[0]]["anon_mib"]
    rss_ratio = memory[counts[1]]["peak_mib"] / memory[counts[0]]["peak_mib"]
    size = {c: c * 3 * 227 * 227 * 4 / 2 ** 20 for c in counts}
    lines += ["", "## `lrnconv inspect alexnet_small.onnx --data X.npy --quantize int8` peak memory", "",
              "Fresh process per run (median of 2). Anonymous RSS (RssAnon, polled every 5 ms) is what the process "
              "allocated; the plain peak RSS also counts the pages of the memory-mapped `.npy` that were read "
              "(file-backed page cache, reclaimable), so it grows by about the data file's size.", "",
              md_table(["samples", "data file MiB", "peak anon RSS MiB", "peak RSS MiB", "wall s"],
                       [[c, f"{size[c]:.0f}", f"{memory[c]['anon_mib']:.0f}", f"{memory[c]['peak_mib']:.0f}",
                         f"{memory[c]['seconds']:.1f}"] for c in counts]),
              "", f"{counts[1]} / {counts[0]} samples: **{ratio:.3f}×** peak anonymous memory (target: within 10 %); "
                  f"{rss_ratio:.2f}× plain RSS, the difference being the mapped data file."]
    text = "\n".join(lines)
    print(text)
    name = "bench_int8" + (".quick" if args.quick else "")
    print("wrote", write_result(name, text, args.out))
    with open(os.path.join(os.path.dirname(args.out) if args.out else RESULTS, name + ".json"), "w") as f:
        json.dump({"timing": timing, "memory": memory}, f, indent=1)


if __name__ == "__main__":
    main()
