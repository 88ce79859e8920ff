"""Calibration: streaming statistics equal direct least squares; fit and evaluation halves are disjoint."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import lrnconv
from lrnconv.maths.reference import lrn_onnx
from lrnconv.maths.stats import SiteStats
from lrnconv.measure.calibration import calibrate
from lrnconv.models import build
from lrnconv.runtime.datafiles import ImagePreprocessing, load_data
from lrnconv.runtime.inputs import array_samples, random_samples
from lrnconv.runtime.runnable import RunnableReference
from lrnconv.runtime.sessions import create_session


def lrn_pair(seed=0, shape=(6, 10, 4, 4)):
    x = np.random.default_rng(seed).uniform(-80, 80, shape)
    return x, lrn_onnx(x, 5, 1e-3, 0.75, 1.0)


def test_fits_equal_direct_least_squares():
    x, y = lrn_pair()
    stats = SiteStats(10)
    stats.update(x, y)
    xs = x.transpose(1, 0, 2, 3).reshape(10, -1)
    ys = y.transpose(1, 0, 2, 3).reshape(10, -1)
    a, b = stats.affine()
    for c in range(10):
        (s_c,), *_ = np.linalg.lstsq(xs[c][:, None], ys[c], rcond=None)
        (a_c, b_c), *_ = np.linalg.lstsq(np.stack([xs[c], np.ones_like(xs[c])], 1), ys[c], rcond=None)
        assert stats.scale()[c] == pytest.approx(s_c, rel=1e-9)
        assert a[c] == pytest.approx(a_c, rel=1e-9) and b[c] == pytest.approx(b_c, rel=1e-6, abs=1e-9)
    norms = np.sqrt((x ** 2).sum(axis=1, keepdims=True))
    u = (x / norms).ravel()
    (k,), *_ = np.linalg.lstsq(u[:, None], y.ravel(), rcond=None)
    assert stats.l2_scale() == pytest.approx(k, rel=1e-9)
    assert 0 < stats.residual_rms(a, b) < 1


def test_streaming_equals_one_pass():
    x, y = lrn_pair(1, (8, 10, 3, 3))
    whole, parts = SiteStats(10), SiteStats(10)
    whole.update(x, y)
    for start in range(0, 8, 3):
        parts.update(x[start:start + 3], y[start:start + 3])
    for field in ("count", "sum_x", "sum_y", "sum_xx", "sum_xy", "sum_yy"):
        np.testing.assert_allclose(getattr(parts, field), getattr(whole, field), rtol=1e-12)
    assert parts.sum_uy == pytest.approx(whole.sum_uy, rel=1e-12)


def test_halves_are_disjoint_and_stats_come_from_the_first():
    model = build("alexnet", variant="small")
    data = {"data": np.random.default_rng(5).uniform(-128, 128, (6, 3, 227, 227)).astype(np.float32)}
    sites = lrnconv.find_lrn(model)
    result = calibrate(RunnableReference(model, sites), array_samples(model, data))
    assert np.array_equal(result.evaluation.rows(0, 3)["data"], data["data"][3:])
    assert (result.calibration_samples, result.evaluation_samples) == (3, 3)
    # the first site's input is conv1 -> relu1, recomputed here without lrnconv
    exposed = run_exposed(model, {"data": data["data"][:3]}, sites[0].input)
    expected = SiteStats(exposed.shape[1])
    expected.update(exposed, lrn_onnx(exposed.astype(np.float64), 5, 1e-4, 0.75, 1.0))
    np.testing.assert_allclose(result.stats[sites[0].output].scale(), expected.scale(), rtol=1e-5)
    assert not result.notes


def run_exposed(model, feeds, name):
    return create_session(model, "CPUExecutionProvider", [name]).run(feeds, [name])[name]


def test_without_data_the_notes_say_so_loudly():
    model = build("caffenet", variant="small")
    samples, _ = random_samples(model, 4)
    result = calibrate(RunnableReference(model, lrnconv.find_lrn(model)), samples)
    assert result.notes and result.notes[0].startswith("NO CALIBRATION DATA")
    assert result.evaluation_samples == 2


def test_one_sample_is_refused():
    model = build("caffenet", variant="small")
    with pytest.raises(lrnconv.BadInput, match="at least 2 samples"):
        one = array_samples(model, {"data": np.zeros((1, 3, 227, 227), np.float32)})
        calibrate(RunnableReference(model, lrnconv.find_lrn(model)), one)


def test_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 227, 227, 3), dtype=np.uint8)
    for i, p in enumerate(pixels):
        Image.fromarray(p).save(tmp_path / f"img{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    model = build("alexnet", variant="small")
    prep = ImagePreprocessing(mean=(104.0, 117.0, 123.0), std=(2.0, 2.0, 2.0), bgr=True)
    data = load_data(str(tmp_path), model, preprocessing=prep)["data"]
    assert data.shape == (3, 3, 227, 227)
    bgr = pixels[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32)
    expected = (bgr - np.array([104, 117, 123], np.float32)[:, None, None]) / 2
    np.testing.assert_array_equal(data, expected)
    assert load_data(str(tmp_path), model, samples=2, preprocessing=prep)["data"].shape[0] == 2
