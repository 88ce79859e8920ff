"""`zoo --executor dask`: a real cluster (scheduler and two workers, each its own process, started
with the README's `dask scheduler` / `dask worker` commands) gives what `--jobs 1` gives."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from lrnconv.app.records import RECORD_NAME
from zoo_support import invoke, read_report, results, staging_left, tiny_zoo

distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")

STRATEGIES = ("--strategy", "decompose,keep", "--timing-runs", "1", "--quiet")


@pytest.fixture(scope="module")
def zoo_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask") / "src"
    tiny_zoo(folder, count=4)  # + one model that crashes the parser and one that is not ONNX
    return folder


@pytest.fixture(scope="module")
def serial(zoo_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    assert invoke("zoo", zoo_folder, "-o", out, *STRATEGIES).exit_code == 1
    return out


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes on the loopback interface."""
    folder = tmp_path_factory.mktemp("cluster")
    scheduler_file = str(folder / "scheduler.json")
    environment = dict(os.environ, DASK_LOGGING__DISTRIBUTED="error")
    dask = [sys.executable, "-m", "dask"]
    processes = [subprocess.Popen(dask + ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                          "--scheduler-file", scheduler_file],
                                  env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(scheduler_file):
            assert time.monotonic() < deadline and processes[0].poll() is None, "the scheduler did not start"
            time.sleep(0.1)
        processes += [subprocess.Popen(dask + ["worker", "--scheduler-file", scheduler_file, "--nthreads", "1",
                                               "--no-dashboard", "--name", f"worker-{k}"],
                                       env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                      for k in range(2)]
        with open(scheduler_file) as f:
            address = json.load(f)["address"]
        client = distributed.Client(address, timeout=60)
        client.wait_for_workers(2, timeout=120)
        yield address
        client.shutdown()  # the scheduler and its workers close themselves
        client.close()
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def records(out):
    found = {}
    for name in sorted(os.listdir(out)):
        path = os.path.join(out, name, RECORD_NAME)
        if os.path.exists(path):
            with open(path) as f:
                record = json.load(f)
            found[name] = results({k: v for k, v in record.items() if k != "outputs"})
    return found


def test_a_dask_cluster_gives_the_same_report_and_records_as_jobs_1(zoo_folder, serial, cluster, tmp_path):
    out = tmp_path / "dask"
    result = invoke("zoo", zoo_folder, "-o", out, "--scheduler", cluster, *STRATEGIES)
    assert result.exit_code == 1, result.output  # the same two failures
    report = read_report(out)
    assert report["run"]["executor"] == "dask" and report["run"]["scheduler"] == cluster
    assert report["run"]["workers"] == 2
    assert results(report) == results(read_report(serial))
    errors = {e["model"]: e["error"] for e in report["entries"] if e["error"] and e["strategy"] == "decompose"}
    assert set(errors) == {"garbage", "string_size"} and "not a valid ONNX model" in errors["string_size"]
    assert records(out) == records(serial) and len(records(out)) == 6
    assert staging_left(out) == []
    # a rerun on the cluster skips everything: the records the workers wrote match
    invoke("zoo", zoo_folder, "-o", out, "--scheduler", cluster, *STRATEGIES)
    assert read_report(out)["run"]["converted"] == []


def test_executor_dask_alone_starts_a_local_cluster(zoo_folder, serial, tmp_path):
    out = tmp_path / "local"
    result = invoke("zoo", zoo_folder, "-o", out, "--executor", "dask", "--jobs", "2", *STRATEGIES)
    assert result.exit_code == 1, result.output
    report = read_report(out)
    assert report["run"]["scheduler"] == "local" and report["run"]["workers"] == 2
    assert results(report) == results(read_report(serial))


def test_jobs_2_gives_the_same_report_as_jobs_1(zoo_folder, serial, tmp_path):
    out = tmp_path / "jobs2"
    assert invoke("zoo", zoo_folder, "-o", out, "--jobs", "2", *STRATEGIES).exit_code == 1
    assert results(read_report(out)) == results(read_report(serial)) and records(out) == records(serial)
