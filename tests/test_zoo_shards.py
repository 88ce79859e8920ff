"""Shards by a stable hash, `--shard auto` from Slurm and Kubernetes, and `zoo merge`."""
from __future__ import annotations

import os
import subprocess

import onnx
import pytest

from conftest import lrn_model
from lrnconv.app.shards import Shard, parse_shard, select, shard_of, shard_from_environment
from lrnconv.app.zoo import builtin_items, folder_items
from lrnconv.base.errors import UsageError
from zoo_support import ROOT, entry_names, invoke, lrnconv_command, read_report, results, tiny_zoo

SCHEDULER_VARIABLES = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
                       "SLURM_ARRAY_TASK_STEP", "JOB_COMPLETION_INDEX", "LRNCONV_SHARD_COUNT")


@pytest.fixture
def clean_environment(monkeypatch):
    for name in SCHEDULER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def zoo_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo") / "src"
    names = tiny_zoo(folder, count=7)
    assert sorted({shard_of(n, 3) for n in names}) == [0, 1, 2]  # every shard has work
    return folder


def test_parse_shard():
    assert parse_shard("2/3") == Shard(2, 3) and parse_shard(None) is None
    for bad in ["3/3", "x", "1/0", "-1/2", "1/2/3"]:
        with pytest.raises(UsageError, match="--shard"):
            parse_shard(bad)


def test_the_shards_partition_the_zoo():
    names = [i.name for i in builtin_items("small")]
    parts = [[i.name for i in select(builtin_items("small"), Shard(k, 3))] for k in range(3)]
    assert sorted(sum(parts, [])) == sorted(names)
    assert all(shard_of(n, 3) == k for k, part in enumerate(parts) for n in part)


def test_adding_or_removing_a_model_moves_only_that_model(tmp_path):
    names = tiny_zoo(tmp_path, count=12, failing=False)

    def assignment():
        return {i.name: k for k in range(4) for i in select(folder_items(str(tmp_path)), Shard(k, 4))}

    before = assignment()
    assert sorted(before) == names
    onnx.save(lrn_model(3), str(tmp_path / "added.onnx"))
    after = assignment()
    assert set(after) == set(before) | {"added"} and all(after[n] == before[n] for n in before)
    os.remove(tmp_path / "m3.onnx")
    removed = assignment()
    assert set(removed) == set(after) - {"m3"} and all(removed[n] == after[n] for n in removed)


@pytest.mark.parametrize("environment, expected", [
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"}, Shard(1, 3, "slurm")),
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"}, Shard(1, 3, "slurm")),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0",
      "SLURM_ARRAY_TASK_STEP": "2"}, Shard(2, 3, "slurm")),
    ({"JOB_COMPLETION_INDEX": "0", "LRNCONV_SHARD_COUNT": "3"}, Shard(0, 3, "kubernetes")),
], ids=["slurm", "slurm-from-1", "slurm-step-2", "kubernetes"])
def test_shard_from_environment(environment, expected):
    assert shard_from_environment(environment) == expected


@pytest.mark.parametrize("environment, message", [
    ({}, "no shard index in the environment"),
    ({"JOB_COMPLETION_INDEX": "1"}, "LRNCONV_SHARD_COUNT is not"),
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3"}, "expected 0 <= index < count"),
    ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "3"}, "is not an integer"),
])
def test_shard_from_environment_refuses(environment, message):
    with pytest.raises(UsageError, match=message):
        shard_from_environment(environment)


@pytest.mark.parametrize("environment", [
    {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"},
    {"JOB_COMPLETION_INDEX": "1", "LRNCONV_SHARD_COUNT": "3"},
], ids=["slurm", "kubernetes"])
def test_shard_auto_picks_the_same_shard_as_the_explicit_form(zoo_folder, tmp_path, clean_environment, environment):
    explicit = invoke("zoo", zoo_folder, "-o", tmp_path / "explicit", "--shard", "1/3", "--timing-runs", "0")
    auto = invoke("zoo", zoo_folder, "-o", tmp_path / "auto", "--shard", "auto", "--timing-runs", "0",
                  env=environment)
    assert explicit.exit_code == auto.exit_code
    first, second = read_report(tmp_path / "explicit"), read_report(tmp_path / "auto")
    assert first["assigned"] == second["assigned"] and entry_names(first) == entry_names(second)
    assert second["shards"][0]["origin"] in ("slurm", "kubernetes") and first["assigned"]


def test_shard_auto_without_a_scheduler_is_one_clear_error(tmp_path, clean_environment):
    result = invoke("zoo", "-o", tmp_path, "--variant", "small", "--shard", "auto")
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "--shard auto: no shard index in the environment" in result.stderr
    assert not os.listdir(tmp_path)


def test_three_parallel_shards_merged_equal_one_unsharded_run(zoo_folder, tmp_path):
    shards = [tmp_path / f"shard{k}" for k in range(3)]
    processes = [subprocess.Popen(lrnconv_command("zoo", zoo_folder, "-o", shards[k], "--shard", f"{k}/3",
                                                  "--strategy", "decompose,keep", "--quiet"),
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for k in range(3)]
    outputs = [p.communicate(timeout=300) for p in processes]
    codes = [p.returncode for p in processes]
    assert set(codes) <= {0, 1} and 1 in codes, outputs  # the shards holding the broken models exit 1
    whole = invoke("zoo", zoo_folder, "-o", tmp_path / "whole", "--strategy", "decompose,keep", "--quiet")
    assert whole.exit_code == 1  # the two broken models
    merged = invoke("zoo", "merge", *shards, "-o", tmp_path / "merged")
    assert merged.exit_code == 1, merged.output  # the same failures, nothing missing
    merged_report, whole_report = read_report(tmp_path / "merged"), read_report(tmp_path / "whole")
    assert results(merged_report) == results(whole_report)
    assert merged_report["missing"] == [] and len(merged_report["shards"]) == 3
    for entry in merged_report["entries"]:  # paths rebased onto the merged report's folder
        if entry["output"]:
            assert (tmp_path / "merged" / entry["output"]).is_file() and entry["output"].startswith("../shard")
    assert (tmp_path / "merged" / "report.md").read_text().count("| m0 |") == 2
    assert (tmp_path / "merged" / "report.html").read_text().count("<tr ") == len(merged_report["entries"])


def test_merge_lists_the_models_no_shard_has(zoo_folder, tmp_path):
    for k in (0, 2):
        invoke("zoo", zoo_folder, "-o", tmp_path / f"s{k}", "--shard", f"{k}/3", "--timing-runs", "0", "--quiet")
    result = invoke("zoo", "merge", tmp_path / "s0", tmp_path / "s2", "-o", tmp_path / "merged")
    assert result.exit_code == 1
    report = read_report(tmp_path / "merged")
    expected = sorted(i.name for i in select(folder_items(str(zoo_folder)), Shard(1, 3)))
    assert report["missing"] == expected and f"missing from every shard: {', '.join(expected)}" in result.stdout
    assert "## Missing from every shard" in (tmp_path / "merged" / "report.md").read_text()


def test_merge_refuses_shards_made_differently(zoo_folder, tmp_path):
    invoke("zoo", zoo_folder, "-o", tmp_path / "a", "--shard", "0/2", "--timing-runs", "0", "--quiet")
    invoke("zoo", zoo_folder, "-o", tmp_path / "b", "--shard", "1/2", "--timing-runs", "0", "--quiet",
           "--samples", "3")
    result = invoke("zoo", "merge", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "m")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "was made with other versions or options" in result.stderr and "samples 3 vs 8" in result.stderr
    # another lrnconv version
    report = (tmp_path / "b" / "report.json").read_text().replace('"lrnconv": "', '"lrnconv": "9.9-')
    (tmp_path / "b" / "report.json").write_text(report)
    assert "lrnconv \"9.9-" in invoke("zoo", "merge", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "m").stderr
    # the same shard twice; a folder without a report; the output folder being a shard
    assert "is in both" in invoke("zoo", "merge", tmp_path / "a", tmp_path / "a", "-o", tmp_path / "m").stderr
    missing = invoke("zoo", "merge", tmp_path / "a", tmp_path / "nothing", "-o", tmp_path / "m")
    assert missing.exit_code == 2 and "no zoo report here" in missing.stderr
    own = invoke("zoo", "merge", tmp_path / "a", "-o", tmp_path / "a")
    assert own.exit_code == 2 and "is one of the shards" in own.stderr
    assert not (tmp_path / "m").exists()
