"""zoo: built-in and folder sources, reports, sharding, one failure never stops the rest."""
from __future__ import annotations

import json

import onnx
import pytest
from click.testing import CliRunner

from lrnconv.app.cli import main
from lrnconv.models import BUILTIN
from lrnconv.app.zoo import builtin_items, parse_shard
from conftest import lrn_model


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_builtin_zoo_small(tmp_path):
    result = invoke("zoo", "-o", tmp_path, "--variant", "small", "--samples", "4")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert {e["model"] for e in report["entries"]} == set(BUILTIN)
    for entry in report["entries"]:
        assert entry["passed"] and entry["sites"] == entry["exact_sites"] >= 2
        assert entry["worst"]["max_rel"] <= 1e-4 and entry["worst"]["top1"] == 1.0
        converted = onnx.load(entry["output"])
        assert "LRN" not in {n.op_type for n in converted.graph.node}
    markdown = (tmp_path / "report.md").read_text()
    assert all(f"| {name} | decompose |" in markdown for name in BUILTIN)
    assert "NO DATA GIVEN" in markdown


def test_folder_zoo_records_failures_and_goes_on(tmp_path):
    source = tmp_path / "src"
    (source / "nested").mkdir(parents=True)
    onnx.save(lrn_model(5), str(source / "good.onnx"))
    onnx.save(lrn_model(4, channels=9), str(source / "nested" / "even.onnx"))
    (source / "broken.onnx").write_bytes(b"\x00garbage")
    out = tmp_path / "out"
    result = invoke("zoo", source, "-o", out, "--strategy", "decompose,keep", "--jobs", "2")
    assert result.exit_code == 1
    entries = json.loads((out / "report.json").read_text())["entries"]
    by_model = {(e["model"], e["strategy"]): e for e in entries}
    assert "broken.onnx" in by_model[("broken", "decompose")]["error"]
    assert by_model[("good", "decompose")]["passed"] and by_model[("nested/even", "decompose")]["passed"]
    # the kept even-size LRN is what the user would deploy, and ONNX Runtime cannot run it
    kept = by_model[("nested/even", "keep")]  # ONNX Runtime cannot run an even-size LRN: written, not verifiable
    assert not kept["passed"] and kept["status"] == "not verifiable" and "size_ % 2 == 1" in kept["unverifiable"]["cpu"]
    assert (out / "nested" / "even" / "keep.onnx").exists()
    assert (out / "nested" / "even" / "decompose.onnx").exists()
    assert any("evaluated exactly in float64" in n for n in by_model[("nested/even", "decompose")]["notes"])


def test_shards_partition_the_zoo():
    items = [i.name for i in builtin_items("small")]
    shards = [[i.name for n, i in enumerate(builtin_items("small")) if n % 3 == k] for k in range(3)]
    assert sorted(sum(shards, [])) == sorted(items)
    assert parse_shard("2/3") == (2, 3)
    for bad in ["3/3", "x", "1/0", "-1/2"]:
        with pytest.raises(Exception, match="--shard"):
            parse_shard(bad)


def test_shard_option_runs_only_its_part(tmp_path):
    result = invoke("zoo", "-o", tmp_path, "--variant", "small", "--samples", "2", "--shard", "1/2")
    assert result.exit_code == 0, result.output
    entries = json.loads((tmp_path / "report.json").read_text())["entries"]
    assert [e["model"] for e in entries] == list(BUILTIN)[1::2]


def test_missing_provider_stops_the_zoo_before_any_model(tmp_path):
    import onnxruntime as ort

    provider = "cuda" if "CUDAExecutionProvider" not in ort.get_available_providers() else "NoSuchExecutionProvider"
    result = invoke("zoo", "-o", tmp_path / "z", "--variant", "small", "--providers", f"cpu,{provider}")
    assert result.exit_code == 2 and "not available" in result.stderr
    assert not (tmp_path / "z" / "alexnet").exists()
