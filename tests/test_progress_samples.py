"""Progress of the sample loops: every stage a conversion runs is told, with its real sample counts.

A fixed-batch-2 model with an odd number of calibration samples makes the last chunk padded;
the padding must never be counted as progress (``Chunk.real``).
"""
from __future__ import annotations

import io

import lrnconv
from lrnconv.app.progress import SampleBar
from lrnconv.runtime.progress import watching

from conftest import lrn_model, lrn_scale_inputs


class Recorder:
    """A watcher that keeps [stage, total, samples advanced, ended] per loop."""

    def __init__(self):
        self.stages = []

    def begin(self, stage, total):
        self.stages.append([stage, total, 0, False])

    def advance(self, samples):
        self.stages[-1][2] += samples

    def end(self):
        self.stages[-1][3] = True


def test_every_sample_loop_of_an_auto_conversion_reports_its_real_samples():
    samples = 5
    recorder = Recorder()
    with watching(recorder):
        result = lrnconv.convert(lrn_model(5, batch=2), "auto",
                                 calibration={"x": lrn_scale_inputs((samples, 7, 5, 5), 5, 1e-2, 1.5)},
                                 verify=lrnconv.VerifyOptions())
    names = [stage for stage, *_ in recorder.stages]
    assert names[0] == "calibrating" and names[-1] == "verifying on cpu"
    assert "auto: the reference" in names
    assert {f"auto: norm {s}" for s in ("remove", "fold")} <= set(names)
    for stage, total, advanced, ended in recorder.stages:
        assert advanced == total and ended, stage
    calibrated, held_out = recorder.stages[0][1], recorder.stages[1][1]
    assert calibrated + held_out == samples
    assert recorder.stages[-1][1] == result.verify.samples


def test_no_watcher_no_report_and_the_watcher_is_scoped_to_its_block():
    recorder = Recorder()
    with watching(recorder):
        pass
    lrnconv.convert(lrn_model(5), "decompose")
    assert recorder.stages == []


def test_sample_bar_shows_the_stage_and_its_count():
    stream = io.StringIO()
    bar = SampleBar(stream, delay=0)
    bar.begin("verifying on cpu", 8)
    assert "verifying on cpu" in stream.getvalue() and "0/8" in stream.getvalue()
    bar.advance(3)
    bar.advance(5)
    assert bar.bar.n == 8
    bar.end()
    assert bar.bar is None and stream.getvalue().endswith("\r")  # leave=False: the line is cleared
