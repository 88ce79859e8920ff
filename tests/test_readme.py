"""The README's examples run as written: its Python blocks, its shell examples, its set-up.

The shell examples run on a reduced-width AlexNet saved as ``alexnet.onnx``, random images
in ``calib.npy``, a small Caffe net (``deploy.prototxt`` + ``net.caffemodel``) and a folder
``models/`` holding both, made here; each command's result is checked, not only its exit code.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import lrnconv
from lrnconv.app.cli import main
from lrnconv.formats.caffe import CaffeNetBuilder, write_caffemodel, write_prototxt
from lrnconv.models import BUILTIN, build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme() -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def blocks(language: str):
    return re.findall(rf"```{language}\n(.*?)```", readme(), re.S)


def caffe_net() -> CaffeNetBuilder:
    """conv -> relu -> ACROSS LRN (k = 2) -> pool -> WITHIN LRN -> fc -> softmax."""
    rng = np.random.default_rng(0)
    net = CaffeNetBuilder("readme_net")
    net.input("data", (1, 3, 16, 16))
    net.layer("conv1", "Convolution", "data", "conv1", convolution_param={"num_output": 8, "kernel_size": 3},
              blobs=[rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, np.zeros(8, np.float32)])
    net.layer("relu1", "ReLU", "conv1", "conv1")
    net.layer("norm1", "LRN", "conv1", "norm1", lrn_param={"local_size": 5, "alpha": 1e-3, "beta": 0.75, "k": 2.0})
    net.layer("pool1", "Pooling", "norm1", "pool1", pooling_param={"pool": "MAX", "kernel_size": 3, "stride": 2})
    net.layer("norm2", "LRN", "pool1", "norm2", lrn_param={"local_size": 3, "alpha": 1e-2, "beta": 0.75,
                                                            "norm_region": "WITHIN_CHANNEL"})
    net.layer("fc", "InnerProduct", "norm2", "fc", inner_product_param={"num_output": 10},
              blobs=[rng.standard_normal((10, 8 * 7 * 7)).astype(np.float32) * 0.05, np.zeros(10, np.float32)])
    net.layer("prob", "Softmax", "fc", "prob")
    return net


@pytest.fixture
def example_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    alexnet = build("alexnet", variant="small")
    onnx.save(alexnet, "alexnet.onnx")
    np.save("calib.npy", np.random.default_rng(0).uniform(-128, 128, (64, 3, 227, 227)).astype(np.float32))
    net = caffe_net()
    write_prototxt(net.net, "deploy.prototxt")
    write_caffemodel(net.net, "net.caffemodel")
    os.mkdir("models")
    shutil.copy("alexnet.onnx", "models/alexnet.onnx")
    shutil.copy("deploy.prototxt", "models/net.prototxt")
    shutil.copy("net.caffemodel", "models/net.caffemodel")
    return tmp_path


def ops(path: str):
    return {n.op_type for n in onnx.load(path).graph.node}


def test_python_blocks_run(tmp_path, monkeypatch):
    python = blocks("python")
    assert len(python) == 2
    monkeypatch.chdir(tmp_path)
    for block in python:
        exec(compile(block, "README.md", "exec"), {})
    assert (tmp_path / "alexnet_small.nolrn.onnx").stat().st_size > 0


def test_shell_examples_run(example_files):
    (block,) = blocks("sh")
    commands = [shlex.split(line) for line in block.strip().splitlines()]
    assert [c[1] for c in commands] == ["inspect", "convert", "verify", "convert", "convert", "zoo"]
    results = []
    for command in commands:
        assert command[0] == "lrnconv"
        result = CliRunner().invoke(main, command[1:], catch_exceptions=False)
        assert result.exit_code == 0, (command, result.output)
        results.append(result)
    inspect, convert, verify, auto, caffe, zoo = results
    assert "2 LRN site(s)" in inspect.stdout and "fold: per-channel scale fitted" in inspect.stdout
    assert "LRN" not in ops("alexnet.nolrn.onnx")
    report = json.loads(open("alexnet.nolrn.json").read())
    assert [s["status"] for s in report["sites"]] == ["exact", "exact"] and report["verify"]["passed"]
    assert verify.stdout.rstrip().endswith("PASSED alexnet.nolrn.onnx") and "right after each LRN site" in verify.stdout
    assert "LRN" not in ops("alexnet.auto.onnx") and "auto rejected: remove (outside tolerance: cosine" in auto.stdout
    assert ops("net.onnx") >= {"LRN", "AveragePool", "Pow"}  # ACROSS stays an LRN, WITHIN its decomposition
    assert [s.family for s in lrnconv.find_lrn(lrnconv.load("net.onnx"))] == ["caffe-across", "caffe-within"]
    zoo_report = json.loads(open("zoo_out/report.json").read())
    assert sorted((e["model"], e["strategy"]) for e in zoo_report["entries"]) == [
        ("alexnet", "decompose"), ("alexnet", "keep"), ("net", "decompose"), ("net", "keep")]
    assert all(e["passed"] for e in zoo_report["entries"]) and "4/4 conversions passed" in zoo.stdout


def test_setup_commands_are_what_ci_runs_and_the_main_job_works(tmp_path):
    """The first set-up command's main job, run as the installed console script would."""
    install, tests = (b.strip() for b in re.findall(r"## Set-up.*?```\n(.*?)```.*?```\n(.*?)```", readme(), re.S)[0])
    assert install == "pip install -e . && lrnconv zoo -o out"
    assert tests == 'pip install -e ".[test]" && python -m pytest -q'
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        assert tests in f.read()
    job = install.split("&& ", 1)[1].split()
    done = subprocess.run([sys.executable, "-m", "lrnconv"] + job[1:], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    entries = json.loads((tmp_path / "out" / "report.json").read_text())["entries"]
    assert [e["model"] for e in entries] == list(BUILTIN) and all(e["passed"] for e in entries)
    assert all((tmp_path / "out" / name / "decompose.onnx").stat().st_size > 1_000_000 for name in BUILTIN)
