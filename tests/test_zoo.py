"""zoo: built-in and folder sources, model names, reports, one failure never stops the rest."""
from __future__ import annotations

import json
import os

import onnx
import pytest

from conftest import lrn_model
from lrnconv.app.zoo import ZooItem, ZooOptions, builtin_items, folder_items, run_zoo
from lrnconv.app.zoo_report import SCHEMA_VERSION
from lrnconv.base.files import STAGING_PREFIX
from lrnconv.models import BUILTIN
from zoo_support import invoke, read_report, string_size_lrn, tiny_zoo


def test_builtin_zoo_small(tmp_path):
    result = invoke("zoo", "-o", tmp_path, "--variant", "small", "--samples", "4")
    assert result.exit_code == 0, result.output
    report = read_report(tmp_path)
    assert report["schema_version"] == SCHEMA_VERSION and report["catalogue"] == list(BUILTIN)
    assert [e["model"] for e in report["entries"]] == list(BUILTIN)
    for entry in report["entries"]:
        assert entry["passed"] and entry["status"] == "passed" and entry["error"] is None
        assert entry["sites"] == entry["exact_sites"] >= 2 and entry["approximate_sites"] == 0
        assert entry["worst"]["max_rel"] <= 1e-4 and entry["worst"]["top1"] == 1.0
        converted = onnx.load(str(tmp_path / entry["output"]))  # relative to the report's folder
        assert "LRN" not in {n.op_type for n in converted.graph.node}
        assert entry["output_bytes"] == os.path.getsize(tmp_path / entry["output"])
        latency = entry["latency"]
        assert latency["runs"] == 5 and latency["before_ms"] > 0 and latency["after_ms"] > 0
        assert latency["ratio"] == pytest.approx(latency["after_ms"] / latency["before_ms"])
    markdown = (tmp_path / "report.md").read_text()
    assert all(f"| {name} | decompose |" in markdown for name in BUILTIN)
    assert "NO DATA GIVEN" in markdown
    assert (tmp_path / "report.html").read_text().count("<tr class=\"passed\"") == len(BUILTIN)


def test_folder_zoo_records_failures_and_goes_on(tmp_path):
    source = tmp_path / "src"
    (source / "nested").mkdir(parents=True)
    onnx.save(lrn_model(5), str(source / "good.onnx"))
    onnx.save(lrn_model(4, channels=9), str(source / "nested" / "even.onnx"))
    (source / "broken.onnx").write_bytes(b"\x00garbage")
    onnx.save(string_size_lrn(), str(source / "string_size.onnx"))
    out = tmp_path / "out"
    result = invoke("zoo", source, "-o", out, "--strategy", "decompose,keep", "--jobs", "2")
    assert result.exit_code == 1
    report = read_report(out)
    by_model = {(e["model"], e["strategy"]): e for e in report["entries"]}
    assert "broken.onnx" in by_model[("broken", "decompose")]["error"]
    # a model that is not valid ONNX (a STRING size) is that model's failure, with its reason
    crashed = by_model[("string_size", "decompose")]
    assert crashed["status"] == "error" and "not a valid ONNX model" in crashed["error"] and "STRING" in crashed["error"]
    assert by_model[("good", "decompose")]["passed"] and by_model[("nested/even", "decompose")]["passed"]
    # the kept even-size LRN is what the user would deploy, and ONNX Runtime cannot run it
    kept = by_model[("nested/even", "keep")]  # ONNX Runtime cannot run an even-size LRN: written, not verifiable
    assert not kept["passed"] and kept["status"] == "not verifiable" and "size_ % 2 == 1" in kept["unverifiable"]["cpu"]
    assert (out / "nested" / "even" / "keep.onnx").exists()
    assert (out / "nested" / "even" / "decompose.onnx").exists()
    assert any("evaluated exactly in float64" in n for n in by_model[("nested/even", "decompose")]["notes"])
    # an even size: ORT cannot run the original, so there is no 'before' time
    latency = by_model[("nested/even", "decompose")]["latency"]
    assert latency["before_ms"] is None and latency["after_ms"] > 0 and "original" in latency["note"]
    assert (report["passed"], report["errors"], report["not_verifiable"]) == (3, 4, 1)
    assert "string_size keep: " in (out / "report.md").read_text()


def test_same_stem_onnx_and_prototxt_get_distinct_names(tmp_path):
    from test_readme import caffe_net
    from lrnconv.formats.caffe import write_caffemodel, write_prototxt

    source = tmp_path / "src"
    source.mkdir()
    onnx.save(lrn_model(5), str(source / "net.onnx"))
    net = caffe_net()
    write_prototxt(net.net, str(source / "net.prototxt"))
    write_caffemodel(net.net, str(source / "net.caffemodel"))
    onnx.save(lrn_model(3), str(source / "other.onnx"))
    items = folder_items(str(source))
    assert [(i.name, os.path.basename(i.source), i.weights and os.path.basename(i.weights)) for i in items] == [
        ("net.onnx", "net.onnx", None), ("net.prototxt", "net.prototxt", "net.caffemodel"),
        ("other", "other.onnx", None)]
    out = tmp_path / "out"
    assert invoke("zoo", source, "-o", out, "--timing-runs", "0").exit_code == 0
    first = onnx.load(str(out / "net.onnx" / "decompose.onnx"))
    second = onnx.load(str(out / "net.prototxt" / "decompose.onnx"))
    assert len(first.graph.node) != len(second.graph.node)
    assert read_report(out)["entries"][0]["latency"] is None


def test_names_stay_unique_when_a_stem_is_another_files_name(tmp_path):
    for name in ("net.onnx", "net.prototxt", "net.onnx.onnx"):
        (tmp_path / name).write_bytes(b"")
    assert sorted(i.name for i in folder_items(str(tmp_path))) == ["net.onnx", "net.onnx.onnx", "net.prototxt"]


def test_the_walk_skips_staging_folders_and_zoo_outputs(tmp_path):
    source = tmp_path / "src"
    tiny_zoo(source, count=2, failing=False)
    (source / (STAGING_PREFIX + "abc")).mkdir()
    onnx.save(lrn_model(3), str(source / (STAGING_PREFIX + "abc") / "half.onnx"))
    out = source / "out"  # the output folder inside the source folder
    assert invoke("zoo", source, "-o", out, "--timing-runs", "0").exit_code == 0
    assert read_report(out)["catalogue"] == ["m0", "m1"]
    # a second run, and a run into another folder, do not take the first run's outputs as models
    assert invoke("zoo", source, "-o", out, "--timing-runs", "0").exit_code == 0
    assert invoke("zoo", source, "-o", tmp_path / "elsewhere", "--timing-runs", "0").exit_code == 0
    assert read_report(tmp_path / "elsewhere")["catalogue"] == ["m0", "m1"]
    assert [i.name for i in folder_items(str(source), exclude=[str(out)])] == ["m0", "m1"]


def test_output_folder_must_not_be_the_source(tmp_path):
    tiny_zoo(tmp_path, count=1, failing=False)
    result = invoke("zoo", tmp_path, "-o", tmp_path)
    assert result.exit_code == 2 and "is the source folder" in result.stderr


def test_report_json_is_written_even_when_every_model_fails(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.onnx").write_bytes(b"x")
    result = invoke("zoo", tmp_path / "src", "-o", tmp_path / "out", "--json", "--quiet")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report == read_report(tmp_path / "out") and report["errors"] == 1 and report["models"] == 1


def test_library_run_zoo(tmp_path):
    items = [ZooItem("tiny", "builtin:alexnet:small")] + builtin_items("small")[1:2]
    report = run_zoo(items, str(tmp_path), ZooOptions(strategies=("decompose", "keep"), timing_runs=1))
    assert [(e["model"], e["strategy"]) for e in report["entries"]] == [
        ("tiny", "decompose"), ("tiny", "keep"), ("caffenet", "decompose"), ("caffenet", "keep")]
    assert report["run"]["converted"] == ["tiny", "caffenet"] and report["fingerprint"]["options"]["timing_runs"] == 1


def test_unknown_strategy_and_missing_provider_stop_the_zoo_before_any_model(tmp_path):
    import onnxruntime as ort

    result = invoke("zoo", "-o", tmp_path / "z", "--variant", "small", "--strategy", "decompose,nope")
    assert result.exit_code == 2 and "unknown strategy ['nope']" in result.stderr
    provider = "cuda" if "CUDAExecutionProvider" not in ort.get_available_providers() else "NoSuchExecutionProvider"
    result = invoke("zoo", "-o", tmp_path / "z", "--variant", "small", "--providers", f"cpu,{provider}")
    assert result.exit_code == 2 and "not available" in result.stderr
    assert not (tmp_path / "z" / "alexnet").exists()


def test_progress_lines_when_not_a_terminal_and_silence_when_quiet(tmp_path):
    tiny_zoo(tmp_path / "src", count=2)
    loud = invoke("zoo", tmp_path / "src", "-o", tmp_path / "a", "--timing-runs", "0")
    lines = loud.stderr.splitlines()
    assert "zoo: 4 model(s): 0 finished before (completion records match), 4 to convert on 1 worker(s)" in lines
    assert any(line.startswith("[4/4] ") and "left 0" in line for line in lines)
    assert any("garbage: decompose ERROR (" in line for line in lines)
    quiet = invoke("zoo", tmp_path / "src", "-o", tmp_path / "b", "--timing-runs", "0", "--quiet")
    assert quiet.stderr == "" and quiet.exit_code == 1


def test_progress_bar_on_a_terminal(tmp_path):
    """The bar itself (tqdm), as the CLI puts it on a terminal's stderr."""
    import io

    from lrnconv.app.progress import BarProgress

    stream = io.StringIO()
    bar = BarProgress(stream)
    bar.start(3, 1, 2)
    bar.reused("vgg", [{"strategy": "decompose", "error": None, "passed": True}])
    bar.stage("alexnet", "decompose: converting and verifying")
    bar.stage("caffenet", "loading")
    bar.done("caffenet", [{"strategy": "decompose", "error": "boom", "passed": False}])
    text = stream.getvalue()
    bar.close()
    assert "done 1, failed 0, left 2 | alexnet: decompose: converting and verifying +1 more" in text
    assert "caffenet: decompose ERROR (boom)" in text and "2/3" in text and "done 2, failed 1, left 1" in text
