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
    """Every op type in a model, its subgraphs' included."""
    def walk(graph):
        for node in graph.node:
            yield node.op_type
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from walk(attr.g)
    return set(walk(onnx.load(path).graph))


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


def table_commands(heading: str):
    """The backticked `lrnconv ...` commands in the last column of a README table, in order."""
    section = readme().split(heading, 1)[1].split("\n###", 1)[0]
    return [re.findall(r"`(lrnconv [^`]+)`", line)[-1] for line in section.splitlines()
            if line.startswith("|") and "`lrnconv " in line]


def models_you_will_meet(folder):
    """The files the 'Models you will meet' commands name, shaped as the table says."""
    import warnings

    import torch
    from onnx import TensorProto, helper

    from conftest import lrn_model

    zoo = build("alexnet", variant="small")
    for vi in list(zoo.graph.input) + list(zoo.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(zoo, str(folder / "zoo_alexnet.onnx"))
    np.save(folder / "calib.npy", np.random.default_rng(0).uniform(-128, 128, (5, 3, 227, 227)).astype(np.float32))
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.LocalResponseNorm(5)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(2, 3, 10, 10), str(folder / "torch_net.onnx"), dynamo=False,
                          opset_version=13, input_names=["x"], output_names=["y"])
    dynamic = build("alexnet", variant="small")
    for axis, name in ((2, "H"), (3, "W")):
        dynamic.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = name
    onnx.save(dynamic, str(folder / "dynamic.onnx"))
    branch = lambda name, node: helper.make_graph([node], name, [], [helper.make_tensor_value_info(  # noqa: E731
        f"{name}_y", TensorProto.FLOAT, ["N", 5, 4, 4])])
    graph = helper.make_graph([helper.make_node(
        "If", ["cond"], ["y"], name="choose",
        then_branch=branch("then", helper.make_node("LRN", ["x"], ["then_y"], name="norm", size=3, alpha=1e-2)),
        else_branch=branch("else", helper.make_node("Identity", ["x"], ["else_y"], name="copy")))], "if_net",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, 4, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(folder / "if_net.onnx"))
    onnx.save(lrn_model(5, elem_type=TensorProto.FLOAT16, alpha=1e-3, bias=1.0), str(folder / "net_fp16.onnx"))
    shutil.copy(os.path.join(ROOT, "tests", "fixtures", "digits_lrn.onnx"), folder / "digits_lrn.onnx")
    np.save(folder / "digits.npy", np.random.default_rng(1).uniform(-128, 128, (20, 1, 8, 8)).astype(np.float32))
    onnx.save(lrn_model(4), str(folder / "even.onnx"))


def test_the_models_you_will_meet_commands_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    models_you_will_meet(tmp_path)
    commands = table_commands("### Models you will meet")
    assert len(commands) == 7
    outcomes = []
    for command in commands:
        result = CliRunner().invoke(main, shlex.split(command)[1:])
        outcomes.append(result.exit_code)
        output = shlex.split(command)[shlex.split(command).index("-o") + 1]
        assert os.path.exists(output), (command, result.output)
        if result.exit_code == 0:
            assert "LRN" not in ops(output), command
    assert outcomes == [0, 0, 0, 0, 0, 0, 3]
    assert "5 given samples" in CliRunner().invoke(main, shlex.split(commands[0])[1:]).output


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
