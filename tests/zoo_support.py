"""Shared by the zoo tests: a folder of tiny models, running the CLI, comparing reports."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, List, Sequence

import onnx
from click.testing import CliRunner

from conftest import lrn_model
from lrnconv.app.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VOLATILE = {"seconds", "latency", "output", "run", "shards", "started"}
"""What differs between two runs with the same results: timings, paths, how it was run."""


def string_size_lrn() -> onnx.ModelProto:
    """An LRN whose ``size`` is a STRING attribute (it crashes a parser: TypeError)."""
    model = lrn_model(5)
    for attribute in model.graph.node[0].attribute:
        if attribute.name == "size":
            attribute.type = onnx.AttributeProto.STRING
            attribute.s = b"five"
            attribute.ClearField("i")
    return model


def tiny_zoo(folder, count: int = 6, failing: bool = True) -> List[str]:
    """``count`` tiny LRN models (odd and even sizes, N != C) plus, with ``failing``, one that
    crashes the parser and one that is not ONNX at all. Returns the model names."""
    os.makedirs(folder, exist_ok=True)
    names = []
    for i in range(count):
        size = (3, 5, 4, 2, 7, 1)[i % 6]
        name = f"m{i}"
        onnx.save(lrn_model(size, channels=4 + i, spatial=6), os.path.join(folder, name + ".onnx"))
        names.append(name)
    if failing:
        onnx.save(string_size_lrn(), os.path.join(folder, "string_size.onnx"))
        with open(os.path.join(folder, "garbage.onnx"), "wb") as f:
            f.write(b"\x00not a model")
        names += ["string_size", "garbage"]
    return sorted(names)


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, env=env)


def lrnconv_command(*args) -> List[str]:
    """The CLI as a subprocess would run it (``python -m lrnconv``)."""
    return [sys.executable, "-m", "lrnconv"] + [str(a) for a in args]


def run_cli(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(lrnconv_command(*args), capture_output=True, text=True, cwd=ROOT, **kwargs)


def read_report(folder) -> Dict[str, object]:
    with open(os.path.join(folder, "report.json")) as f:
        return json.load(f)


def _stable(value, digits: int = 9):
    """Numbers to ``digits`` significant digits: the last bits of a float64 reduction depend on
    the BLAS thread count, which differs between a Dask worker and this process."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: _stable(v, digits) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v, digits) for v in value]
    return value


def results(report: Dict[str, object]) -> Dict[str, object]:
    """A report without what two runs with the same results may differ in."""
    return _stable(report)


def staging_left(folder) -> List[str]:
    """Every lrnconv staging folder or file under ``folder``."""
    found = []
    for here, dirs, files in os.walk(folder):
        found += [os.path.join(here, n) for n in dirs + files if n.startswith(".lrnconv-")]
    return found


def entry_names(report) -> Sequence[str]:
    return [(e["model"], e["strategy"]) for e in report["entries"]]


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1600,1000")


def headless_chromium(profile: str):
    """Debian's Chromium driven through its chromedriver by Selenium (nothing is downloaded:
    both paths are given, so Selenium Manager never runs), with a fresh profile folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={profile}",):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
