"""Completion records: a rerun skips what matches, redoes the rest; a killed run resumes cleanly."""
from __future__ import annotations

import fcntl
import glob
import json
import os
import signal
import subprocess
import time

import onnx
import pytest

from conftest import lrn_model
from lrnconv.app.records import RECORD_NAME
from lrnconv.base.files import STAGING_PREFIX
from lrnconv.models import BUILTIN
from zoo_support import ROOT, invoke, lrnconv_command, read_report, results, staging_left, tiny_zoo

ZOO = ("--variant", "small", "--samples", "8", "--timing-runs", "2")


def stamps(out, names):
    """(inode, mtime) of every file of the named models: unchanged means not rewritten."""
    found = {}
    for name in names:
        for path in sorted(glob.glob(os.path.join(out, name, "*"))):
            st = os.stat(path)
            found[path] = (st.st_ino, st.st_mtime_ns)
    return found


def test_rerun_skips_what_matches_and_redoes_the_rest(tmp_path):
    source, out = tmp_path / "src", tmp_path / "out"
    names = tiny_zoo(source, count=3)
    args = ("zoo", source, "-o", out, "--timing-runs", "0", "--quiet")
    assert invoke(*args).exit_code == 1
    first = read_report(out)
    assert sorted(first["run"]["converted"]) == names and first["run"]["reused"] == []
    record = json.loads((out / "m0" / RECORD_NAME).read_text())
    assert record["model"] == "m0" and len(record["input_sha256"]) == 64
    assert record["fingerprint"]["options"]["strategies"] == ["decompose"]
    assert record["fingerprint"]["versions"]["lrnconv"] and record["outputs"] == {
        "decompose.onnx": os.path.getsize(out / "m0" / "decompose.onnx")}
    assert [e["model"] for e in record["entries"]] == ["m0"]
    # a failed model has a record too: its failure is its result
    assert json.loads((out / "garbage" / RECORD_NAME).read_text())["entries"][0]["error"]

    before = stamps(out, names)
    again = invoke(*args)
    assert again.exit_code == 1 and read_report(out)["run"]["converted"] == []
    assert stamps(out, names) == before and results(read_report(out)) == results(first)

    m0 = stamps(out, ["m0"])
    onnx.save(lrn_model(3, channels=11), str(source / "m1.onnx"))  # a changed input
    os.remove(out / "m2" / "decompose.onnx")  # a lost output
    invoke(*args)
    assert sorted(read_report(out)["run"]["converted"]) == ["m1", "m2"]
    assert stamps(out, ["m0"]) == m0

    invoke(*args[:-1], "--samples", "4", "--quiet")  # other options: every model again
    assert sorted(read_report(out)["run"]["converted"]) == names
    invoke(*args[:-1], "--samples", "4", "--quiet", "--force")
    assert sorted(read_report(out)["run"]["converted"]) == names


def test_a_second_run_into_the_same_folder_is_refused_while_one_runs(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = invoke("zoo", "-o", tmp_path, "--variant", "small")
        assert result.exit_code == 2 and "another lrnconv zoo run is writing to this folder" in result.stderr
    finally:
        os.close(fd)


def _start_and_interrupt(out, sig):
    """Start the zoo in a subprocess and send ``sig`` once its first model is recorded."""
    process = subprocess.Popen(lrnconv_command("zoo", "-o", out, *ZOO), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not glob.glob(os.path.join(out, "*", RECORD_NAME)):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    finished = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(out, "*", RECORD_NAME)))
    return process.returncode, stderr, finished


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    assert invoke("zoo", "-o", out, *ZOO, "--quiet").exit_code == 0
    return read_report(out)


def test_a_run_killed_with_sigkill_resumes_where_it_stopped(tmp_path, uninterrupted):
    out = tmp_path / "out"
    code, _, finished = _start_and_interrupt(out, signal.SIGKILL)
    assert code == -signal.SIGKILL and 1 <= len(finished) < len(BUILTIN)
    assert not (out / "report.json").exists()  # no report, and certainly no half-written one
    for path in glob.glob(os.path.join(out, "*", "*.onnx")):
        onnx.checker.check_model(onnx.load(path))  # every model file there is whole
    (out / "alexnet" / (STAGING_PREFIX + "left-by-kill")).mkdir(parents=True, exist_ok=True)
    done_before = stamps(out, finished)
    rerun = invoke("zoo", "-o", out, *ZOO)
    assert rerun.exit_code == 0, rerun.output
    report = read_report(out)
    assert sorted(report["run"]["reused"]) == finished
    assert sorted(report["run"]["converted"]) == sorted(set(BUILTIN) - set(finished))
    assert stamps(out, finished) == done_before  # finished models were not converted again
    assert results(report) == results(uninterrupted)
    assert staging_left(out) == []


def test_a_run_stopped_with_sigint_leaves_no_staging_and_resumes(tmp_path, uninterrupted):
    out = tmp_path / "out"
    code, stderr, finished = _start_and_interrupt(out, signal.SIGINT)
    assert code == 130 and "interrupted; the models finished so far are recorded" in stderr
    assert "Traceback" not in stderr and staging_left(out) == [] and not (out / "report.json").exists()
    assert invoke("zoo", "-o", out, *ZOO, "--quiet").exit_code == 0
    report = read_report(out)
    assert sorted(report["run"]["reused"]) == finished and results(report) == results(uninterrupted)


def children(pid: int):
    """The child processes of ``pid`` (Linux /proc)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _start_pool_run(out):
    process = subprocess.Popen(lrnconv_command("zoo", "-o", out, *ZOO, "--jobs", "2"), cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not glob.glob(os.path.join(out, "*", RECORD_NAME)):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.005)
    workers = [c for c in children(process.pid) if alive(c)]
    assert workers and process.poll() is None, "the run ended before a worker could be killed"
    return process, workers


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads /proc")
def test_a_lost_pool_worker_is_an_error_without_a_record_and_the_rerun_redoes_it(tmp_path, uninterrupted):
    out = tmp_path / "out"
    process, workers = _start_pool_run(out)
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    report = read_report(out)
    lost = [e["model"] for e in report["entries"] if e["error"] and "no result from the worker" in e["error"]]
    assert lost and len(lost) + len(report["run"]["converted"]) == len(BUILTIN)
    # a worker may finish a model in the instant between the pool breaking and its end: then its
    # record is whole and the rerun takes it; every other lost model has no record and is redone
    unrecorded = [name for name in lost if not (out / name / RECORD_NAME).exists()]
    assert unrecorded
    assert invoke("zoo", "-o", out, *ZOO, "--quiet").exit_code == 0
    again = read_report(out)
    assert again["run"]["converted"] == unrecorded and results(again) == results(uninterrupted)
    assert staging_left(out) == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads /proc")
def test_pool_workers_die_with_a_killed_zoo(tmp_path):
    process, workers = _start_pool_run(tmp_path / "out")
    process.kill()
    process.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(w) for w in workers)
