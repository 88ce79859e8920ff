"""Wall time and peak memory of importing a full-size Caffe AlexNet (~244 MB caffemodel).

The net is BVLC AlexNet's deploy.prototxt layout (5 convolutions, 2 LRN, 3 max pools,
3 fully connected layers: 61M parameters), written with seeded random weights through
``lrnconv.formats.caffe`` (``CaffeNetBuilder`` + ``write_caffemodel``) in a temp folder.

Each measurement is a fresh interpreter (a subprocess), so its peak RSS is its own:
the parent reads it with ``os.wait4`` (the child's ``ru_maxrss``) and times the whole
process; the child also times the work alone (imports excluded) and reports its RSS
after imports. Modes:

* ``a-protobuf``  read the file + ``NetParameter.ParseFromString`` (the Caffe schema's
  float fields): what reading a caffemodel with protobuf alone costs (the baseline);
* ``b-load``      ``lrnconv.formats.caffe.load_caffe(prototxt, caffemodel)`` -> ``onnx.ModelProto``;
* ``c-load-save`` the same + ``SerializeToString`` of the model (the bytes an ``.onnx``
  file would hold).

Runs go round-robin over the modes (one warm-up round first, excluded); medians of
the timed runs; ratios against ``a-protobuf`` from the same run. Target (from the
issue): ``load_caffe`` within ~1.5x the baseline's time and peak memory. Not a test:
nothing asserts.

    python benchmarks/bench_caffe_import.py            # 3 timed runs per mode
    python benchmarks/bench_caffe_import.py --quick    # 1 timed run, no warm-up
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

from _common import (rss_now_kb, ForeignLoad, add_quiet_options, machine_lines, md_table, median, usable_cores,
                     wait_for_quiet, write_result)

MODES = ("a-protobuf", "b-load", "c-load-save")
LABELS = {
    "a-protobuf": "(a) read + NetParameter.ParseFromString (baseline)",
    "b-load": "(b) lrnconv.formats.caffe.load_caffe(prototxt, caffemodel)",
    "c-load-save": "(c) load_caffe + model.SerializeToString()",
}
TARGET = 1.5

# (name, type, bottom, top, params, blob shapes) of BVLC AlexNet's deploy.prototxt.
ALEXNET = [
    ("conv1", "Convolution", "data", "conv1",
     {"convolution_param": {"num_output": 96, "kernel_size": 11, "stride": 4}},
     [(96, 3, 11, 11), (96,)]),
    ("relu1", "ReLU", "conv1", "conv1", {}, []),
    ("norm1", "LRN", "conv1", "norm1",
     {"lrn_param": {"local_size": 5, "alpha": 1e-4, "beta": 0.75}}, []),
    ("pool1", "Pooling", "norm1", "pool1",
     {"pooling_param": {"pool": "MAX", "kernel_size": 3, "stride": 2}}, []),
    ("conv2", "Convolution", "pool1", "conv2",
     {"convolution_param": {"num_output": 256, "pad": 2, "kernel_size": 5, "group": 2}},
     [(256, 48, 5, 5), (256,)]),
    ("relu2", "ReLU", "conv2", "conv2", {}, []),
    ("norm2", "LRN", "conv2", "norm2",
     {"lrn_param": {"local_size": 5, "alpha": 1e-4, "beta": 0.75}}, []),
    ("pool2", "Pooling", "norm2", "pool2",
     {"pooling_param": {"pool": "MAX", "kernel_size": 3, "stride": 2}}, []),
    ("conv3", "Convolution", "pool2", "conv3",
     {"convolution_param": {"num_output": 384, "pad": 1, "kernel_size": 3}},
     [(384, 256, 3, 3), (384,)]),
    ("relu3", "ReLU", "conv3", "conv3", {}, []),
    ("conv4", "Convolution", "conv3", "conv4",
     {"convolution_param": {"num_output": 384, "pad": 1, "kernel_size": 3, "group": 2}},
     [(384, 192, 3, 3), (384,)]),
    ("relu4", "ReLU", "conv4", "conv4", {}, []),
    ("conv5", "Convolution", "conv4", "conv5",
     {"convolution_param": {"num_output": 256, "pad": 1, "kernel_size": 3, "group": 2}},
     [(256, 192, 3, 3), (256,)]),
    ("relu5", "ReLU", "conv5", "conv5", {}, []),
    ("pool5", "Pooling", "conv5", "pool5",
     {"pooling_param": {"pool": "MAX", "kernel_size": 3, "stride": 2}}, []),
    ("fc6", "InnerProduct", "pool5", "fc6", {"inner_product_param": {"num_output": 4096}},
     [(4096, 9216), (4096,)]),
    ("relu6", "ReLU", "fc6", "fc6", {}, []),
    ("drop6", "Dropout", "fc6", "fc6", {"dropout_param": {"dropout_ratio": 0.5}}, []),
    ("fc7", "InnerProduct", "fc6", "fc7", {"inner_product_param": {"num_output": 4096}},
     [(4096, 4096), (4096,)]),
    ("relu7", "ReLU", "fc7", "fc7", {}, []),
    ("drop7", "Dropout", "fc7", "fc7", {"dropout_param": {"dropout_ratio": 0.5}}, []),
    ("fc8", "InnerProduct", "fc7", "fc8", {"inner_product_param": {"num_output": 1000}},
     [(1000, 4096), (1000,)]),
    ("prob", "Softmax", "fc8", "prob", {}, []),
]


def build(folder: str) -> None:
    """Write alexnet.prototxt + alexnet.caffemodel (runs in a child: it peaks near 1 GB)."""
    import numpy as np

    from lrnconv.formats.caffe import CaffeNetBuilder, write_caffemodel, write_prototxt

    rng = np.random.default_rng(0)
    net = CaffeNetBuilder("AlexNet")
    net.input("data", (1, 3, 227, 227))
    for name, type_, bottom, top, params, shapes in ALEXNET:
        blobs = []
        for shape in shapes:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            blobs.append((rng.standard_normal(shape, dtype=np.float32)
                          * np.float32((2.0 / fan_in) ** 0.5)) if len(shape) > 1
                         else np.zeros(shape, np.float32))
        net.layer(name, type_, bottom, top, blobs=blobs, **params)
        del blobs
    write_prototxt(net.net, os.path.join(folder, "alexnet.prototxt"))
    write_caffemodel(net.net, os.path.join(folder, "alexnet.caffemodel"))


def child(mode: str, folder: str) -> None:
    """Runs inside the fresh interpreter; prints one JSON line."""
    prototxt = os.path.join(folder, "alexnet.prototxt")
    caffemodel = os.path.join(folder, "alexnet.caffemodel")
    t_import = time.perf_counter()
    if mode == "a-protobuf":
        from lrnconv.formats.caffe.schema import NetParameter
    else:
        from lrnconv.formats.caffe import load_caffe
    import_s = time.perf_counter() - t_import
    rss_after_import = rss_now_kb()
    t0 = time.perf_counter()
    extra = {}
    if mode == "a-protobuf":
        with open(caffemodel, "rb") as f:
            data = f.read()
        net = NetParameter()
        net.ParseFromString(data)
        extra["layers"] = len(net.layer)
    else:
        model, _notes = load_caffe(prototxt, caffemodel)
        extra["initializers"] = len(model.graph.initializer)
        if mode == "c-load-save":
            extra["onnx_bytes"] = len(model.SerializeToString())
    work_s = time.perf_counter() - t0
    import resource
    print(json.dumps({"import_s": import_s, "work_s": work_s,
                      "rss_after_import_kb": rss_after_import,
                      "self_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      **extra}))


def run_once(mode: str, folder: str) -> Dict[str, float]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, folder]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        raise RuntimeError(f"{mode} failed (exit {code}): {' '.join(cmd)}\n{out}")
    row = {"wall_s": wall, "maxrss_kb": usage.ru_maxrss}
    row.update(json.loads(out.strip().splitlines()[-1]))
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="timed runs per mode (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 timed run, no warm-up")
    p.add_argument("--tmpdir", default=None, help="folder for the model files (default: a temp folder)")
    p.add_argument("--out", default="", help="Markdown output (default: benchmarks/results/"
                                             "bench_caffe_import[.quick].md)")
    add_quiet_options(p, wait=60.0)
    p.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        if args.child[0] == "build":
            build(args.child[1])
        else:
            child(*args.child)
        return 0
    if args.quick:
        args.runs, args.warmup = 1, 0

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_caffe-", dir=args.tmpdir) as folder:
        # Built in a subprocess: Linux carries a process's peak RSS across fork + exec,
        # so this parent must stay small for the children's ru_maxrss to be their own.
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "build", folder],
                       check=True)
        size = os.path.getsize(os.path.join(folder, "alexnet.caffemodel"))
        print(f"wrote alexnet.caffemodel ({size / 1e6:.1f} MB)", file=sys.stderr)
        rows: Dict[str, List[Dict[str, float]]] = {m: [] for m in MODES}
        if args.wait_quiet > 0:
            wait_for_quiet(args.wait_quiet)
        with ForeignLoad() as load:
            for r in range(args.warmup + args.runs):
                for mode in MODES:
                    row = run_once(mode, folder)
                    if r >= args.warmup:
                        rows[mode].append(row)
                    print(f"  {'warm-up' if r < args.warmup else 'run'} {r} {mode}: "
                          f"work {row['work_s']:.2f}s, peak {row['maxrss_kb'] / 1024:.0f} MiB",
                          file=sys.stderr)

    def med(mode, key):
        return median([row[key] for row in rows[mode]])

    base = {key: med("a-protobuf", key) for key in ("wall_s", "work_s", "maxrss_kb")}
    base_work_rss = med("a-protobuf", "maxrss_kb") - med("a-protobuf", "rss_after_import_kb")
    table = []
    for mode in MODES:
        work_rss = med(mode, "maxrss_kb") - med(mode, "rss_after_import_kb")
        table.append([
            LABELS[mode],
            f"{med(mode, 'wall_s'):.2f}", f"{med(mode, 'wall_s') / base['wall_s']:.2f}x",
            f"{med(mode, 'work_s'):.2f}", f"{med(mode, 'work_s') / base['work_s']:.2f}x",
            f"{med(mode, 'maxrss_kb') / 1024:.0f}",
            f"{med(mode, 'maxrss_kb') / base['maxrss_kb']:.2f}x",
            f"{med(mode, 'rss_after_import_kb') / 1024:.0f}",
            f"{work_rss / 1024:.0f}", f"{work_rss / base_work_rss:.2f}x",
        ])
    work_ratio = med("b-load", "work_s") / base["work_s"]
    rss_ratio = med("b-load", "maxrss_kb") / base["maxrss_kb"]
    text = "\n".join([
        f"# Caffe import cost: full-size AlexNet ({size / 1e6:.0f} MB caffemodel)",
        "",
        *machine_lines(),
        f"- {args.runs} timed run(s) per mode after {args.warmup} warm-up round(s), round-robin, "
        f"each a fresh interpreter; files in a temp folder (page cache warm after the first "
        f"round); other processes used {load.cores:.2f} of {usable_cores()} cores meanwhile; "
        f"total {time.perf_counter() - started:.0f}s",
        "",
        "`process` = the child's whole wall time; `work` = inside the child around the work only "
        "(imports excluded); `peak RSS` = the child's `ru_maxrss` (os.wait4); `work RSS` = peak "
        "RSS minus VmRSS after imports. Medians; ratios against (a) from this run.",
        "",
        md_table(["mode", "process s", "x (a)", "work s", "x (a)", "peak RSS MiB", "x (a)",
                  "RSS after imports MiB", "work RSS MiB", "x (a)"], table),
        "",
        "## Target",
        "",
        f"- load_caffe work time {work_ratio:.2f}x (target <= {TARGET}x: "
        f"{'met' if work_ratio <= TARGET else '**missed**'}), peak RSS {rss_ratio:.2f}x "
        f"(target <= {TARGET}x: {'met' if rss_ratio <= TARGET else '**missed**'})",
    ])
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "bench_caffe_import" + (".quick" if args.quick else "") + ".md")
    print(text)
    print(f"\nwrote {write_result('bench_caffe_import', text, out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
