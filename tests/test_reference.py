"""The numpy LRN references against independent oracles.

Oracles: ONNX Runtime's native CPU ``LRN`` kernel (float32, rank 4, odd size, alpha > 0
only), ``torch.nn.LocalResponseNorm`` (float64, any size, rank >= 3), and, for Caffe's
WITHIN_CHANNEL mode, a torch ``avg_pool2d`` formulation written here. The onnx
package's reference evaluator is never used (it had an LRN bug hidden by N == C), and
no shape below has N == C.

Inputs are scaled from alpha so that the LRN term ``alpha/size * sum x**2`` is a sizable
fraction of the bias; with tiny terms every formula is ``x / bias**beta`` and the
comparison would pass whatever the window.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from lrnconv.maths.reference import (
    FAMILIES,
    lrn_caffe_across,
    lrn_caffe_within,
    lrn_onnx,
    lrn_tf,
    lrn_torch,
    window_sum,
)

from conftest import max_rel


def ort_lrn(x, size, alpha, beta, bias):
    """Run ONNX Runtime's native CPU ``LRN`` kernel on ``x`` (a one-node opset-13 model)."""
    elem = helper.np_dtype_to_tensor_dtype(x.dtype)
    node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=alpha, beta=beta, bias=bias)
    graph = helper.make_graph(
        [node],
        "lrn",
        [helper.make_tensor_value_info("x", elem, list(x.shape))],
        [helper.make_tensor_value_info("y", elem, list(x.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def scaled_input(rng, shape, scale):
    """Random signs, magnitudes uniform in [0.5, 1.5] * scale: every x**2 >= scale**2 / 4."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 1.5, size=shape) * scale


def lrn_term(x, size, alpha):
    """ONNX's ``alpha/size * sum_W x**2``, written out with an explicit loop over channels."""
    x = np.asarray(x, np.float64)
    c_count = x.shape[1]
    term = np.zeros_like(x)
    for c in range(c_count):
        first, last = max(0, c - (size - 1) // 2), min(c_count - 1, c + size // 2)
        term[:, c] = alpha / size * (x[:, first : last + 1] ** 2).sum(axis=1)
    return term


@st.composite
def lrn_cases(draw, sizes=(1, 3, 5, 7, 9)):
    """Rank-4 shapes with N > 1, N != C, C from 1 to 64 (often < size), and LRN attrs."""
    size = draw(st.sampled_from(sizes))
    c = draw(st.one_of(st.integers(1, size), st.integers(1, 64)))
    n = draw(st.integers(2, 4).filter(lambda v: v != c))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    alpha = 10.0 ** draw(st.floats(-5, -2))
    beta = draw(st.one_of(st.sampled_from([0.5, 0.75, 1.0]), st.floats(0.1, 2.0)))
    bias = draw(st.floats(0.5, 3.0))
    seed = draw(st.integers(0, 2**32 - 1))
    return (n, c, h, w), size, alpha, beta, bias, seed


# --- ONNX family against ONNX Runtime --------------------------------------------


@settings(max_examples=40, deadline=None)
@given(lrn_cases())
def test_lrn_onnx_matches_onnxruntime(case):
    shape, size, alpha, beta, bias, seed = case
    rng = np.random.default_rng(seed)
    x = scaled_input(rng, shape, np.sqrt(bias * size / alpha)).astype(np.float32)
    # Every element's LRN term is at least a quarter of the bias: the window matters.
    assert (lrn_term(x, size, alpha) / bias).min() >= 0.2
    expected = ort_lrn(x, size, alpha, beta, bias)
    actual = lrn_onnx(x, size, alpha=alpha, beta=beta, bias=bias)
    assert actual.dtype == np.float32
    assert max_rel(actual, expected) <= 1e-5


@pytest.mark.parametrize("shape", [(2, 7, 9), (3, 5, 2, 3, 4)], ids=["rank3", "rank5"])
@pytest.mark.parametrize("size", [1, 3, 5, 9])
def test_lrn_onnx_rank3_rank5_via_reshaped_onnxruntime(shape, size):
    """LRN is pointwise in space, so rank 3/5 equals ORT's rank-4 LRN on a reshaped view."""
    alpha, beta, bias = 1e-3, 0.75, 2.0
    x = scaled_input(np.random.default_rng(size), shape, np.sqrt(bias * size / alpha))
    x = x.astype(np.float32)
    as4 = x.reshape(shape[0], shape[1], -1, 1)
    expected = ort_lrn(as4, size, alpha, beta, bias).reshape(shape)
    assert max_rel(lrn_onnx(x, size, alpha=alpha, beta=beta, bias=bias), expected) <= 1e-5


def test_lrn_onnx_float16_matches_onnxruntime():
    """A float16 LRN model runs on CPU (ORT casts to float32); we return float16 too."""
    size, alpha, beta, bias = 5, 1e-2, 0.75, 1.0
    x = scaled_input(np.random.default_rng(0), (3, 10, 4, 4), np.sqrt(bias * size / alpha))
    x = x.astype(np.float16)
    actual = lrn_onnx(x, size, alpha=alpha, beta=beta, bias=bias)
    assert actual.dtype == np.float16
    assert max_rel(actual, ort_lrn(x, size, alpha, beta, bias)) <= 2e-3


def test_lrn_onnx_alpha_zero_is_a_constant_scale():
    """ORT refuses alpha = 0; the formula then reduces to x / bias**beta."""
    x = np.random.default_rng(1).standard_normal((2, 6, 3, 3))
    np.testing.assert_allclose(lrn_onnx(x, 4, alpha=0.0, beta=0.75, bias=2.0), x / 2.0**0.75)


# --- PyTorch family against torch.nn.LocalResponseNorm -----------------------------


@pytest.mark.parametrize(
    "shape",
    [(2, 7, 11), (3, 2, 5, 4), (2, 9, 3, 4), (2, 6, 2, 3, 2)],
    ids=["rank3", "rank4-C<size", "rank4", "rank5"],
)
@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 8])
def test_lrn_torch_matches_pytorch(shape, size):
    alpha, beta, k = 1e-3, 0.75, 1.5
    x = scaled_input(np.random.default_rng(size), shape, np.sqrt(k * size / alpha))
    layer = torch.nn.LocalResponseNorm(size, alpha=alpha, beta=beta, k=k)
    expected = layer(torch.from_numpy(x)).numpy()
    assert max_rel(lrn_torch(x, size, alpha=alpha, beta=beta, k=k), expected) <= 1e-12


@pytest.mark.parametrize("size", [1, 3, 5, 7])
def test_torch_equals_onnx_for_odd_size(size):
    x = scaled_input(np.random.default_rng(size), (2, 6, 3, 3), np.sqrt(size / 1e-3))
    np.testing.assert_allclose(
        lrn_torch(x, size, alpha=1e-3), lrn_onnx(x, size, alpha=1e-3), rtol=1e-14
    )


@pytest.mark.parametrize("size", [2, 4, 6])
def test_torch_is_onnx_mirrored_for_even_size(size):
    """Even size: PyTorch reaches size//2 back, ONNX size//2 ahead, so they differ by
    up to a whole channel's share of the window, and ONNX equals PyTorch run on the
    channel-reversed tensor, reversed back."""
    alpha = 1e-3
    x = scaled_input(np.random.default_rng(size), (2, 7, 3, 3), np.sqrt(size / alpha))
    onnx_y = lrn_onnx(x, size, alpha=alpha)
    torch_y = lrn_torch(x, size, alpha=alpha)
    assert max_rel(torch_y, onnx_y) > 1e-2
    mirrored = torch.nn.LocalResponseNorm(size, alpha=alpha)(torch.from_numpy(x[:, ::-1].copy()))
    np.testing.assert_allclose(onnx_y, mirrored.numpy()[:, ::-1], rtol=1e-12)


# --- Caffe families ---------------------------------------------------------------


@pytest.mark.parametrize("k", [1.0, 0.5, 2.0], ids=["k=1", "k=0.5", "k=2"])
@pytest.mark.parametrize("local_size", [1, 3, 5, 7])
def test_lrn_caffe_across_matches_onnxruntime_with_bias_k(local_size, k):
    alpha, beta = 1e-2, 0.75
    scale = np.sqrt(k * local_size / alpha)
    x = scaled_input(np.random.default_rng(local_size), (2, 5, 3, 4), scale).astype(np.float32)
    actual = lrn_caffe_across(x, local_size, alpha=alpha, beta=beta, k=k)
    assert max_rel(actual, ort_lrn(x, local_size, alpha, beta, k)) <= 1e-5


@pytest.mark.parametrize("local_size", [0, 2, 4])
def test_caffe_rejects_even_or_zero_local_size(local_size):
    x = np.ones((2, 3, 4, 4))
    with pytest.raises(ValueError, match="local_size"):
        lrn_caffe_across(x, local_size)
    with pytest.raises(ValueError, match="local_size"):
        lrn_caffe_within(x, local_size)


def torch_within_channel(x, size, alpha, beta):
    """Caffe WITHIN_CHANNEL as Caffe builds it: average pool of x**2 (padded cells count),
    then power layer (shift 1, scale alpha, power -beta), then product with x."""
    t = torch.from_numpy(x)
    avg = torch.nn.functional.avg_pool2d(
        t * t, size, stride=1, padding=(size - 1) // 2, count_include_pad=True
    )
    return (t * (1 + alpha * avg) ** -beta).numpy()


@pytest.mark.parametrize("hw", [(6, 7), (2, 3), (1, 1)], ids=["6x7", "2x3", "1x1"])
@pytest.mark.parametrize("local_size", [1, 3, 5])
def test_lrn_caffe_within_matches_avg_pool_formulation(local_size, hw):
    alpha, beta = 1e-2, 0.75
    scale = np.sqrt(local_size**2 / alpha)
    x = scaled_input(np.random.default_rng(local_size), (2, 3, *hw), scale)
    expected = torch_within_channel(x, local_size, alpha, beta)
    if local_size > 1:  # a single-pixel window would be the same LRN in any mode
        assert max_rel(lrn_onnx(x, local_size, alpha=alpha, beta=beta), expected) > 1e-3
    assert max_rel(lrn_caffe_within(x, local_size, alpha=alpha, beta=beta), expected) <= 1e-12


def test_lrn_caffe_within_needs_rank4():
    with pytest.raises(ValueError, match="rank-4"):
        lrn_caffe_within(np.ones((2, 3, 4)), 3)


# --- TensorFlow family ------------------------------------------------------------


@pytest.mark.parametrize("radius", [0, 1, 2, 5])
def test_lrn_tf_is_onnx_with_size_2r_plus_1_and_alpha_times_size(radius):
    size, alpha, beta, bias = 2 * radius + 1, 1e-3, 0.5, 1.0
    x_nhwc = scaled_input(np.random.default_rng(radius), (2, 3, 4, 6), np.sqrt(bias / alpha))
    x_nchw = x_nhwc.transpose(0, 3, 1, 2)
    expected = lrn_onnx(x_nchw, size, alpha=alpha * size, beta=beta, bias=bias)
    actual = lrn_tf(x_nhwc, depth_radius=radius, bias=bias, alpha=alpha, beta=beta)
    np.testing.assert_allclose(actual.transpose(0, 3, 1, 2), expected, rtol=1e-13)


# --- helpers and registry ---------------------------------------------------------


@pytest.mark.parametrize("lo,hi", [(0, 0), (1, 2), (2, 1), (6, 6)])
def test_window_sum_matches_explicit_loop(lo, hi):
    sq = np.random.default_rng(0).random((2, 5, 3))
    expected = np.stack(
        [sq[:, max(0, c - lo) : c + hi + 1].sum(axis=1) for c in range(sq.shape[1])], axis=1
    )
    np.testing.assert_allclose(window_sum(sq, lo, hi), expected, rtol=1e-14)


def test_families_registry():
    assert FAMILIES == {
        "onnx": lrn_onnx,
        "caffe-across": lrn_caffe_across,
        "caffe-within": lrn_caffe_within,
        "torch-pattern": lrn_torch,
        "tf-pattern": lrn_tf,
    }
