"""The README's zoo recipes run as written: the Slurm array script once per array index, the
Kubernetes Indexed Job's command once per completion index (as the pods would, in parallel),
then the merge command of each; the Dask recipe uses the commands tests/test_zoo_dask.py runs.
Only the shared folder (/shared/...) is replaced by a temporary one."""
from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import sys

import onnx
import pytest

from conftest import lrn_model
from zoo_support import read_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def section(title: str) -> str:
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    start = text.index(f"\n### {title}\n")
    end = text.find("\n### ", start + 1)
    return text[start:end]


def blocks(text: str, language: str):
    return re.findall(rf"```{language}\n(.*?)```", text, re.S)


@pytest.fixture
def shared(tmp_path):
    """A stand-in for the cluster's shared volume, and an environment whose `lrnconv` is this one."""
    (tmp_path / "models").mkdir()
    for i, size in enumerate((3, 5, 7, 1, 3)):  # odd sizes: `keep` runs in ONNX Runtime too
        onnx.save(lrn_model(size, channels=4 + i, spatial=6), str(tmp_path / "models" / f"m{i}.onnx"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "lrnconv"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m lrnconv "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    environment = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "JOB_COMPLETION_INDEX",
                 "LRNCONV_SHARD_COUNT"):
        environment.pop(name, None)
    return tmp_path, environment


def localise(text: str, root) -> str:
    return text.replace("/shared/", f"{root}/")


def run_in_parallel(commands, environments):
    processes = [subprocess.Popen(c, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                 for c, e in zip(commands, environments)]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0] * len(processes), outputs


def check_merged(root, shards: int):
    report = read_report(root / "zoo" / "all")
    assert report["missing"] == [] and report["assigned"] == report["catalogue"] == [f"m{i}" for i in range(5)]
    assert len(report["shards"]) == shards and all(e["passed"] for e in report["entries"])


def test_slurm_array_recipe(shared):
    root, environment = shared
    script, submit = blocks(section("Slurm job array"), "bash")
    first, last = (int(v) for v in re.search(r"#SBATCH --array=(\d+)-(\d+)", script).groups())
    count = last - first + 1
    tasks = [dict(environment, SLURM_ARRAY_TASK_ID=str(i), SLURM_ARRAY_TASK_COUNT=str(count),
                  SLURM_ARRAY_TASK_MIN=str(first)) for i in range(first, last + 1)]
    run_in_parallel([["bash", "-c", localise(script, root)]] * count, tasks)
    merge = re.search(r"--wrap '(.*?)'", submit).group(1)
    subprocess.run(["bash", "-c", localise(merge, root)], env=environment, check=True, cwd=ROOT)
    check_merged(root, count)


def test_kubernetes_indexed_job_recipe(shared):
    yaml = pytest.importorskip("yaml")
    root, environment = shared
    text = section("Kubernetes Indexed Job")
    (manifest,) = blocks(text, "yaml")
    job = yaml.safe_load(manifest)
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    (container,) = spec["template"]["spec"]["containers"]
    variables = {v["name"]: v["value"] for v in container["env"]}
    assert variables["LRNCONV_SHARD_COUNT"] == str(spec["completions"])
    (rule,) = spec["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailIndex" and rule["onExitCodes"]["values"] == [1]
    command = [localise(part, root) for part in container["command"]]
    pods = [dict(environment, **variables, JOB_COMPLETION_INDEX=str(i)) for i in range(spec["completions"])]
    run_in_parallel([command] * spec["completions"], pods)
    (merge,) = blocks(text, "bash")
    subprocess.run(["bash", "-c", localise(merge, root)], env=environment, check=True, cwd=ROOT)
    check_merged(root, spec["completions"])


def test_dask_recipe_uses_the_commands_the_dask_tests_run():
    (block,) = blocks(section("Dask"), "bash")
    commands = [shlex.split(line.split("#")[0]) for line in block.strip().splitlines()]
    assert [c[:2] for c in commands] == [["dask", "scheduler"], ["dask", "worker"], ["lrnconv", "zoo"]]
    assert "--nthreads" in commands[1] and commands[1][commands[1].index("--nthreads") + 1] == "1"
    scheduler = commands[2][commands[2].index("--scheduler") + 1]
    assert scheduler == commands[1][2] and scheduler.endswith(":" + commands[0][commands[0].index("--port") + 1])
