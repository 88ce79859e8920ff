"""Shared helpers for the benchmark scripts: machine description, statistics, Markdown.

Not a test module and not part of the package; the scripts import it from their own
folder (``python benchmarks/NAME.py`` puts ``benchmarks/`` first on ``sys.path``).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Sequence

import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")


def _cpuinfo() -> Dict[str, str]:
    info: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" not in line:
                    if info:
                        break  # first processor block is enough
                    continue
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux: the report says "?"
        return {}
    return info


def _mem_total_gib() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:  # not Linux
        return "?"
    return "?"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _version(module: str) -> str:
    """The installed version, from package metadata (no import: the convert benchmark's
    launcher must stay small, see bench_convert.py)."""
    from importlib import metadata

    names = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
             "onnx_graphsurgeon": ("onnx-graphsurgeon", "onnx_graphsurgeon")}.get(module, (module,))
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (rev or "?") + (" (+ uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_lines() -> List[str]:
    """A Markdown bullet list describing the machine and the software versions."""
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags]
    model = cpu.get("model name", platform.processor() or "?")
    family = f"family {cpu.get('cpu family', '?')} model {cpu.get('model', '?')}"
    return [
        f"- CPU: {model} ({family}; {', '.join(simd) or 'no AVX2'}), "
        f"{usable_cores()} usable cores (os.cpu_count() = {os.cpu_count()}), {_mem_total_gib()} RAM",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()}; onnxruntime {_version('onnxruntime')}; onnx {_version('onnx')}; "
        f"onnx-graphsurgeon {_version('onnx_graphsurgeon')}; numpy {_version('numpy')}",
        f"- lrnconv {_version('lrnconv')} at git {_git_revision()}",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- command: `python {' '.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])}`",
    ]


class ForeignLoad:
    """CPU time that other processes used while a block ran, in cores (from /proc/stat).

    The machine may be shared; this says how much of it someone else was using during a
    measurement (0.0 = idle apart from us; 1.0 = one whole core busy elsewhere).
    """

    def __init__(self):
        self.cores = 0.0

    @staticmethod
    def _busy_jiffies() -> float:
        try:
            with open("/proc/stat") as f:
                fields = [float(x) for x in f.readline().split()[1:]]
        except OSError:
            return float("nan")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        return sum(fields[:8]) - idle

    def __enter__(self):
        self._t0 = time.perf_counter()
        self._busy0 = self._busy_jiffies()
        self._own0 = os.times()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._t0
        own1 = os.times()
        own = sum(own1[:4]) - sum(self._own0[:4])
        busy = (self._busy_jiffies() - self._busy0) / os.sysconf("SC_CLK_TCK")
        self.cores = max(0.0, busy - own) / wall if wall > 0 else 0.0
        return False


def wait_for_quiet(max_wait: float, threshold: float = 0.25, window: float = 2.0) -> float:
    """Wait (up to ``max_wait`` s) until other processes use < ``threshold`` cores over ``window`` s.

    Returns the foreign load seen last. The machine may be shared with other jobs; this
    only lowers the odds of measuring them, the reports still say how busy it was.
    """
    deadline = time.monotonic() + max_wait
    while True:
        with ForeignLoad() as load:
            time.sleep(window)
        if load.cores < threshold or time.monotonic() >= deadline:
            if load.cores >= threshold:
                print(f"(machine still busy: other processes use {load.cores:.2f} cores; measuring anyway)",
                      file=sys.stderr)
            return load.cores


def add_quiet_options(parser: argparse.ArgumentParser, *, wait: float, retry: float = 0.0) -> None:
    """``--wait-quiet`` (and, with ``retry``, ``--max-foreign`` / ``--retry-budget``: redo a round
    that shared the machine): the one spelling of the shared-machine options of every script."""
    parser.add_argument("--wait-quiet", type=float, default=wait, metavar="S",
                        help="before timing, wait up to S seconds for other processes to go quiet "
                             "(default: %(default)s; 0 = don't wait)")
    if retry:
        parser.add_argument("--max-foreign", type=float, default=0.3, metavar="CORES",
                            help="leave out (and redo) a round during which other processes used more than "
                                 "CORES cores (default: %(default)s)")
        parser.add_argument("--retry-budget", type=float, default=retry, metavar="S",
                            help="total seconds that redone rounds may take (default: %(default)s); after "
                                 "that every round is kept")


def builtin_models(parser: argparse.ArgumentParser, value: str) -> List[str]:
    """``--models`` as names of built-in replicas ('all': every one); an unknown name is a usage error."""
    from lrnconv import models

    names = list(models.BUILTIN) if value == "all" else [m for m in value.split(",") if m]
    for m in names:
        if m not in models.BUILTIN:
            parser.error(f"unknown model '{m}'; valid: {', '.join(models.BUILTIN)}")
    return names


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def quartiles(values: Sequence[float]):
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table; ``align`` is one char per column ('l' or 'r'), default right but first."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(str(h) for h in header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_result(name: str, text: str, out: str = "") -> str:
    path = out or os.path.join(RESULTS, name + ".md")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text.rstrip() + "\n")
    return path


def lrn_deleted(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with every LRN node turned into Identity (same tensor names)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)

    def walk(graph):
        for node in graph.node:
            if node.op_type == "LRN" and node.domain in ("", "ai.onnx"):
                node.op_type = "Identity"
                del node.attribute[:]
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                for g in attr.graphs:
                    walk(g)

    walk(copy.graph)
    return copy


def rss_now_kb() -> int:
    """This process's resident set size now (VmRSS), in KiB; 0 where /proc is missing."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
