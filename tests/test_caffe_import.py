"""Caffe import against an independent implementation.

Every net is written through the project's Caffe schema (``CaffeNetBuilder`` ->
``.prototxt`` + ``.caffemodel`` with random weights), imported with ``load_caffe`` and
run under ONNX Runtime; OpenCV's own Caffe importer (``cv2.dnn.readNetFromCaffe``) runs
the same two files. Outputs must agree within max-rel 1e-4 (``max|a-b| / max|b|``).
Inputs are pixel-scale (uniform in [-128, 128)), the regime where LRN's denominator
matters; the LRN tests assert that it does.

Where OpenCV is known to differ from Caffe, the expected value comes from a numpy
reference written from Caffe's definition, and a test records OpenCV's difference:
- LRN ACROSS_CHANNELS with k != 1: OpenCV ignores k;
- Deconvolution with dilation: OpenCV ignores the dilation (wrong output size);
- InnerProduct with ``transpose: true``: OpenCV reads the (K, N) weight as (N, K);
- ``round_mode`` (BVLC's pooling field 13): OpenCV does not know it (its dialect
  spells ``ceil_mode``); a prototxt that sets it fails to build in OpenCV;
- BatchNorm with ``use_global_stats: false`` (batch statistics): OpenCV refuses.
"""
from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lrnconv.formats.caffe import (CaffeNetBuilder, blob_from_array, load_caffe, read_prototxt,
                                   write_caffemodel, write_prototxt)
from lrnconv.graph.metadata import NOTES_KEY, SITES_KEY
from lrnconv.maths.reference import lrn_caffe_across, lrn_caffe_within

from conftest import max_rel

cv2 = pytest.importorskip("cv2")

TOL = 1e-4


# --------------------------------------------------------------------------------------
# helpers


def pixels(rng, shape):
    return rng.uniform(-128.0, 128.0, shape).astype(np.float32)


def he(rng, *shape, fan_in=None):
    fan_in = fan_in or int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def small(rng, *shape, scale=0.1):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def save(tmp_path, net, stem="net"):
    prototxt, caffemodel = tmp_path / f"{stem}.prototxt", tmp_path / f"{stem}.caffemodel"
    write_prototxt(net.net, prototxt)
    write_caffemodel(net.net, caffemodel)
    return str(prototxt), str(caffemodel)


def run_onnx(model, feeds, names):
    """Outputs (graph outputs or any intermediate tensor) under ONNX Runtime CPU."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    declared = {o.name for o in probe.graph.output}
    for name in names:
        if name not in declared:
            probe.graph.output.add(name=name).type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(probe.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(list(names), feeds)))


def run_opencv(prototxt, caffemodel, feeds, layers):
    net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
    net.enableFusion(False)   # compare layer by layer, no conv+BN/ReLU fusion
    for name, value in feeds.items():
        net.setInput(value, name)
    return dict(zip(layers, net.forward(list(layers))))


def import_and_compare(tmp_path, net, feeds, outputs, stem="net"):
    """Import, check the model, and compare ``outputs`` (ONNX tensor -> OpenCV layer)."""
    prototxt, caffemodel = save(tmp_path, net, stem)
    model, notes = load_caffe(prototxt, caffemodel)
    onnx.checker.check_model(model, full_check=True)
    ours = run_onnx(model, feeds, list(outputs))
    theirs = run_opencv(prototxt, caffemodel, feeds, list(outputs.values()))
    for tensor, layer in outputs.items():
        assert max_rel(ours[tensor], theirs[layer]) <= TOL, (tensor, max_rel(ours[tensor],
                                                                             theirs[layer]))
    return model, notes, ours


def sites_of(model):
    props = {p.key: p.value for p in model.metadata_props}
    return json.loads(props[SITES_KEY])


def caffe_pool(x, kernel, stride, pad, method, ceil=True):
    """Caffe's PoolingLayer::Forward_cpu, loop for loop, in float64."""
    n, c, h, w = x.shape

    def pooled(size, k, s, p):
        span = size + 2 * p - k
        out = (-(-span // s) if ceil else span // s) + 1
        if any(pad) and (out - 1) * s >= size + p:
            out -= 1
        return out

    ph_n, pw_n = pooled(h, kernel[0], stride[0], pad[0]), pooled(w, kernel[1], stride[1], pad[1])
    y = np.empty((n, c, ph_n, pw_n))
    for ph in range(ph_n):
        for pw in range(pw_n):
            hs, ws = ph * stride[0] - pad[0], pw * stride[1] - pad[1]
            he_, we = min(hs + kernel[0], h + pad[0]), min(ws + kernel[1], w + pad[1])
            area = (he_ - hs) * (we - ws)
            hs, ws, he_, we = max(hs, 0), max(ws, 0), min(he_, h), min(we, w)
            window = x[:, :, hs:he_, ws:we].astype(np.float64)
            y[:, :, ph, pw] = (window.max(axis=(2, 3)) if method == "MAX"
                               else window.sum(axis=(2, 3)) / area)
    return y


def lrn_matters(x, y, margin=0.1):
    """True when the LRN output differs from the input by more than ``margin`` (relative)."""
    return max_rel(y, x) > margin


# --------------------------------------------------------------------------------------
# nets


def alexnet_like(rng, *, v1=False, input_style="input_shape", k=1.0):
    """A small AlexNet: conv/relu/LRN/pool twice (group conv, ceil pooling on odd sizes),
    fc/relu/dropout, fc, softmax; in-place ReLUs and dropouts as in the original."""
    net = CaffeNetBuilder("alexnet_like", v1=v1)
    net.input("data", (2, 3, 31, 29), style=input_style)
    net.layer("conv1", "Convolution", "data", "conv1",
              convolution_param={"num_output": 8, "kernel_size": 5, "stride": 2, "pad": 1},
              blobs=[he(rng, 8, 3, 5, 5), small(rng, 8)])
    net.layer("relu1", "ReLU", "conv1", "conv1")
    net.layer("norm1", "LRN", "conv1", "norm1",
              lrn_param={"local_size": 5, "alpha": 1e-4, "beta": 0.75, "k": k})
    net.layer("pool1", "Pooling", "norm1", "pool1",
              pooling_param={"pool": "MAX", "kernel_size": 3, "stride": 2})
    net.layer("conv2", "Convolution", "pool1", "conv2",
              convolution_param={"num_output": 12, "kernel_size": 3, "pad": 1, "group": 2},
              blobs=[he(rng, 12, 4, 3, 3), small(rng, 12)])
    net.layer("relu2", "ReLU", "conv2", "conv2")
    net.layer("norm2", "LRN", "conv2", "norm2",
              lrn_param={"local_size": 3, "alpha": 1e-4, "beta": 0.75, "k": k})
    net.layer("pool2", "Pooling", "norm2", "pool2",
              pooling_param={"pool": "MAX", "kernel_size": 3, "stride": 2})
    net.layer("fc6", "InnerProduct", "pool2", "fc6", inner_product_param={"num_output": 32},
              blobs=[he(rng, 32, 12 * 3 * 3), small(rng, 32)])
    net.layer("relu6", "ReLU", "fc6", "fc6")
    net.layer("drop6", "Dropout", "fc6", "fc6", dropout_param={"dropout_ratio": 0.5})
    net.layer("fc7", "InnerProduct", "fc6", "fc7", inner_product_param={"num_output": 10},
              blobs=[he(rng, 10, 32) * 0.01, small(rng, 10)])
    net.layer("prob", "Softmax", "fc7", "prob")
    return net


ALEXNET_OUTPUTS = {"norm1": "norm1", "pool1": "pool1", "norm2": "norm2", "pool2": "pool2",
                   "fc7": "fc7", "prob": "prob"}


# --------------------------------------------------------------------------------------
# whole nets


@pytest.mark.parametrize("input_style", ["input_shape", "input_dim", "layer"])
def test_alexnet_like_matches_opencv(tmp_path, input_style):
    rng = np.random.default_rng(0)
    net = alexnet_like(rng, input_style=input_style)
    x = pixels(rng, (2, 3, 31, 29))
    model, notes, ours = import_and_compare(tmp_path, net, {"data": x}, ALEXNET_OUTPUTS)
    assert notes == []
    # LRN sits in its regime: its output is not a scaled copy of its input.
    lrn_in = run_onnx(model, {"data": x}, ["conv1/relu1"])["conv1/relu1"]
    assert lrn_matters(lrn_in, ours["norm1"])
    assert [n.op_type for n in model.graph.node].count("LRN") == 2


def test_names_follow_caffe_blobs_and_layers(tmp_path):
    rng = np.random.default_rng(1)
    prototxt, caffemodel = save(tmp_path, alexnet_like(rng))
    model, _ = load_caffe(prototxt, caffemodel)
    nodes = {n.name: n for n in model.graph.node}
    assert list(nodes["conv1"].output) == ["conv1"]
    assert list(nodes["relu1"].input) == ["conv1"]
    assert list(nodes["relu1"].output) == ["conv1/relu1"]      # in-place: renamed uniquely
    assert list(nodes["norm1"].input) == ["conv1/relu1"]
    assert "drop6" not in nodes                                # dropout: no node
    assert list(nodes["fc7"].input)[0] == "fc6/relu6"
    assert [o.name for o in model.graph.output] == ["prob"]
    assert model.opset_import[0].version == 13
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [3, 31, 29]
    assert sites_of(model) == [
        {"name": "norm1", "family": "caffe-across", "size": 5, "alpha": 1e-4, "beta": 0.75,
         "bias": 1.0, "input": "conv1/relu1", "output": "norm1"},
        {"name": "norm2", "family": "caffe-across", "size": 3, "alpha": 1e-4, "beta": 0.75,
         "bias": 1.0, "input": "conv2/relu2", "output": "norm2"},
    ]


def test_symbolic_batch_runs_other_batch_sizes(tmp_path):
    rng = np.random.default_rng(2)
    net = alexnet_like(rng)
    prototxt, caffemodel = save(tmp_path, net)
    model, _ = load_caffe(prototxt, caffemodel)
    x = pixels(rng, (3, 3, 31, 29))              # the prototxt declares batch 2
    ours = run_onnx(model, {"data": x}, ["prob", "norm2"])
    theirs = run_opencv(prototxt, caffemodel, {"data": x}, ["prob", "norm2"])
    assert max_rel(ours["norm2"], theirs["norm2"]) <= TOL
    assert max_rel(ours["prob"], theirs["prob"]) <= TOL


def test_v1_format_matches_opencv_and_its_v2_twin(tmp_path):
    seed = 3
    v2 = alexnet_like(np.random.default_rng(seed))
    v1 = alexnet_like(np.random.default_rng(seed), v1=True, input_style="input_dim")
    assert len(v1.net.layers) and not len(v1.net.layer)
    assert v1.net.layers[0].blobs[0].HasField("num")           # legacy 4-D blob dims
    x = pixels(np.random.default_rng(99), (2, 3, 31, 29))
    model_v1, _, ours_v1 = import_and_compare(tmp_path, v1, {"data": x}, ALEXNET_OUTPUTS,
                                              stem="v1")
    prototxt, caffemodel = save(tmp_path, v2, "v2")
    model_v2, _ = load_caffe(prototxt, caffemodel)
    assert "type: CONVOLUTION" in (tmp_path / "v1.prototxt").read_text()
    ours_v2 = run_onnx(model_v2, {"data": x}, list(ALEXNET_OUTPUTS))
    for name in ALEXNET_OUTPUTS:
        np.testing.assert_array_equal(ours_v1[name], ours_v2[name])
    assert [n.op_type for n in model_v1.graph.node] == [n.op_type for n in model_v2.graph.node]


# --------------------------------------------------------------------------------------
# LRN


@pytest.mark.parametrize("region,size,channels", [
    ("ACROSS_CHANNELS", 5, 7), ("ACROSS_CHANNELS", 3, 4), ("ACROSS_CHANNELS", 7, 3),
    ("WITHIN_CHANNEL", 3, 4), ("WITHIN_CHANNEL", 5, 3),
])
def test_lrn_k1_matches_opencv_and_reference(tmp_path, region, size, channels):
    rng = np.random.default_rng(size * 10 + channels)
    net = CaffeNetBuilder()
    net.input("data", (2, channels, 9, 7))
    net.layer("norm", "LRN", "data", "norm",
              lrn_param={"local_size": size, "alpha": 1e-4, "beta": 0.75,
                         "norm_region": region})
    x = pixels(rng, (2, channels, 9, 7))
    model, _, ours = import_and_compare(tmp_path, net, {"data": x}, {"norm": "norm"})
    reference = (lrn_caffe_across(x, size, 1e-4, 0.75, 1.0) if region == "ACROSS_CHANNELS"
                 else lrn_caffe_within(x, size, 1e-4, 0.75))
    assert max_rel(ours["norm"], reference) <= 1e-5
    assert lrn_matters(x, reference)
    (site,) = sites_of(model)
    assert site["family"] == ("caffe-across" if region == "ACROSS_CHANNELS" else "caffe-within")
    assert (site["input"], site["output"], site["size"]) == ("data", "norm", size)


def _lrn_net(k, region="ACROSS_CHANNELS", shape=(2, 6, 5, 7), alpha=1e-4, beta=0.75, size=5):
    net = CaffeNetBuilder()
    net.input("data", shape)
    net.layer("norm", "LRN", "data", "norm",
              lrn_param={"local_size": size, "alpha": alpha, "beta": beta, "k": k,
                         "norm_region": region})
    return net


@pytest.mark.parametrize("k", [2.0, 0.5])
def test_lrn_across_keeps_k(tmp_path, k):
    """ONNX LRN's bias is Caffe's k (OpenCV and the PyPI converters drop it)."""
    rng = np.random.default_rng(5)
    x = pixels(rng, (2, 6, 5, 7))
    prototxt, caffemodel = save(tmp_path, _lrn_net(k))
    model, _ = load_caffe(prototxt, caffemodel)
    (node,) = [n for n in model.graph.node if n.op_type == "LRN"]
    assert onnx.helper.get_attribute_value(
        next(a for a in node.attribute if a.name == "bias")) == pytest.approx(k)
    ours = run_onnx(model, {"data": x}, ["norm"])["norm"]
    reference = lrn_caffe_across(x, 5, 1e-4, 0.75, k)
    assert max_rel(ours, reference) <= 1e-5
    assert sites_of(model)[0]["bias"] == k


def test_opencv_ignores_k_of_across_lrn(tmp_path):
    """On record: OpenCV computes ACROSS_CHANNELS as if k were 1, so it cannot be the
    oracle for k != 1 (the tests above use the numpy reference instead)."""
    rng = np.random.default_rng(6)
    x = pixels(rng, (2, 6, 5, 7))
    prototxt, caffemodel = save(tmp_path, _lrn_net(2.0))
    opencv = run_opencv(prototxt, caffemodel, {"data": x}, ["norm"])["norm"]
    assert max_rel(opencv, lrn_caffe_across(x, 5, 1e-4, 0.75, 2.0)) > 0.1
    assert max_rel(opencv, lrn_caffe_across(x, 5, 1e-4, 0.75, 1.0)) <= 1e-5


def test_lrn_within_ignores_k_like_caffe(tmp_path):
    rng = np.random.default_rng(7)
    x = pixels(rng, (2, 3, 8, 6))
    net = _lrn_net(3.0, "WITHIN_CHANNEL", shape=(2, 3, 8, 6), size=3, alpha=1e-3)
    model, notes, ours = import_and_compare(tmp_path, net, {"data": x}, {"norm": "norm"})
    assert max_rel(ours["norm"], lrn_caffe_within(x, 3, 1e-3, 0.75)) <= 1e-5
    assert any("ignores k" in n for n in notes)
    assert "LRN" not in [n.op_type for n in model.graph.node]   # no ONNX op: decomposed
    assert sites_of(model)[0]["bias"] == 1.0


# --------------------------------------------------------------------------------------
# pooling


@pytest.mark.parametrize("h,w,kernel,stride,pad,method", [
    (5, 6, 2, 2, 1, "MAX"),     # Caffe drops the last window (it would start in the pad)
    (5, 6, 2, 2, 1, "AVE"),
    (7, 9, 3, 2, 1, "AVE"),     # ceil-mode overhang past the padding: clipped divisor
    (8, 11, 3, 3, 1, "AVE"),
    (10, 9, 4, 3, 2, "AVE"),
    (6, 7, 3, 2, 0, "AVE"),
    (9, 13, 3, 2, 0, "MAX"),
    (13, 13, 3, 2, 0, "AVE"),   # no overhang: count_include_pad path
])
def test_pooling_ceil_mode_matches_opencv_and_caffe_loop(tmp_path, h, w, kernel, stride, pad,
                                                         method):
    rng = np.random.default_rng(h * w + kernel)
    net = CaffeNetBuilder()
    net.input("data", (2, 3, h, w))
    net.layer("pool", "Pooling", "data", "pool",
              pooling_param={"pool": method, "kernel_size": kernel, "stride": stride,
                             "pad": pad})
    x = pixels(rng, (2, 3, h, w))
    _, _, ours = import_and_compare(tmp_path, net, {"data": x}, {"pool": "pool"})
    expected = caffe_pool(x, (kernel, kernel), (stride, stride), (pad, pad), method)
    assert ours["pool"].shape == expected.shape
    assert max_rel(ours["pool"], expected) <= 1e-6


def test_pooling_rectangular_and_global(tmp_path):
    rng = np.random.default_rng(8)
    net = CaffeNetBuilder()
    net.input("data", (2, 4, 9, 8))
    net.layer("rect", "Pooling", "data", "rect",
              pooling_param={"pool": "AVE", "kernel_h": 3, "kernel_w": 2, "stride_h": 2,
                             "stride_w": 3, "pad_h": 1, "pad_w": 0})
    net.layer("gave", "Pooling", "data", "gave",
              pooling_param={"pool": "AVE", "global_pooling": True})
    net.layer("gmax", "Pooling", "data", "gmax",
              pooling_param={"pool": "MAX", "global_pooling": True})
    x = pixels(rng, (2, 4, 9, 8))
    _, _, ours = import_and_compare(tmp_path, net, {"data": x},
                                    {"rect": "rect", "gave": "gave", "gmax": "gmax"})
    expected = caffe_pool(x, (3, 2), (2, 3), (1, 0), "AVE")
    assert max_rel(ours["rect"], expected) <= 1e-6
    assert ours["gave"].shape == (2, 4, 1, 1)


@pytest.mark.parametrize("method", ["MAX", "AVE"])
def test_pooling_round_mode_floor(tmp_path, method):
    """``round_mode: FLOOR`` (BVLC field 13) against Caffe's loop; OpenCV cannot read it
    (its dialect has ``ceil_mode``, which the import also understands)."""
    rng = np.random.default_rng(9)
    x = pixels(rng, (2, 3, 8, 7))
    for field, value in (("round_mode", "FLOOR"), ("ceil_mode", False)):
        net = CaffeNetBuilder()
        net.input("data", (2, 3, 8, 7))
        net.layer("pool", "Pooling", "data", "pool",
                  pooling_param={"pool": method, "kernel_size": 3, "stride": 2, "pad": 1,
                                 field: value})
        prototxt, caffemodel = save(tmp_path, net, field)
        model, _ = load_caffe(prototxt, caffemodel)
        ours = run_onnx(model, {"data": x}, ["pool"])["pool"]
        expected = caffe_pool(x, (3, 3), (2, 2), (1, 1), method, ceil=False)
        assert ours.shape == expected.shape == (2, 3, 4, 4)
        assert max_rel(ours, expected) <= 1e-6
    with pytest.raises(cv2.error):
        run_opencv(str(tmp_path / "round_mode.prototxt"),
                   str(tmp_path / "round_mode.caffemodel"), {"data": x}, ["pool"])


# --------------------------------------------------------------------------------------
# convolutions and inner products


def test_convolution_forms_and_deconvolution(tmp_path):
    rng = np.random.default_rng(10)
    net = CaffeNetBuilder()
    net.input("data", (2, 4, 9, 8))
    net.layer("c1", "Convolution", "data", "c1",
              convolution_param={"num_output": 6, "kernel_h": 3, "kernel_w": 2, "pad_h": 1,
                                 "pad_w": 0, "stride_h": 2, "stride_w": 1, "group": 2,
                                 "bias_term": False},
              blobs=[he(rng, 6, 2, 3, 2)])
    net.layer("c2", "Convolution", "c1", "c2",
              convolution_param={"num_output": 4, "kernel_size": 3, "dilation": 2, "pad": 2},
              blobs=[he(rng, 4, 6, 3, 3), small(rng, 4)])
    net.layer("c3", "Convolution", "c2", "c3",
              convolution_param={"num_output": 5, "kernel_size": [3, 1], "stride": [1, 2],
                                 "pad": [0, 1]},
              blobs=[he(rng, 5, 4, 3, 1), small(rng, 5)])
    net.layer("d1", "Deconvolution", "c3", "d1",
              convolution_param={"num_output": 6, "kernel_size": 4, "stride": 2, "pad": 1,
                                 "group": 1},
              blobs=[he(rng, 5, 6, 4, 4), small(rng, 6)])
    x = pixels(rng, (2, 4, 9, 8))
    import_and_compare(tmp_path, net, {"data": x},
                       {"c1": "c1", "c2": "c2", "c3": "c3", "d1": "d1"})


def deconv_reference(x, w, b, stride, pad, dilation, group):
    """Transposed convolution by scattering, from Caffe's col2im definition (float64)."""
    n, c, h, wd = x.shape
    _, mg, kh, kw = w.shape
    full = np.zeros((n, mg * group, stride * (h - 1) + dilation * (kh - 1) + 1,
                     stride * (wd - 1) + dilation * (kw - 1) + 1))
    cg = c // group
    for ci in range(c):
        g = ci // cg
        for m in range(mg):
            for i in range(kh):
                for j in range(kw):
                    full[:, g * mg + m,
                         i * dilation:i * dilation + stride * (h - 1) + 1:stride,
                         j * dilation:j * dilation + stride * (wd - 1) + 1:stride] += \
                        x[:, ci].astype(np.float64) * w[ci, m, i, j]
    out = full[:, :, pad:full.shape[2] - pad, pad:full.shape[3] - pad]
    return out + b[None, :, None, None]


def test_deconvolution_with_dilation_and_opencv_discrepancy(tmp_path):
    """Caffe's deconvolution honours dilation; OpenCV ignores it (smaller output)."""
    rng = np.random.default_rng(11)
    x = pixels(rng, (2, 4, 5, 6))
    w, b = he(rng, 4, 3, 3, 3), small(rng, 6)
    net = CaffeNetBuilder()
    net.input("data", x.shape)
    net.layer("d", "Deconvolution", "data", "d",
              convolution_param={"num_output": 6, "kernel_size": 3, "stride": 2, "pad": 1,
                                 "dilation": 2, "group": 2},
              blobs=[w, b])
    prototxt, caffemodel = save(tmp_path, net)
    model, _ = load_caffe(prototxt, caffemodel)
    onnx.checker.check_model(model, full_check=True)
    ours = run_onnx(model, {"data": x}, ["d"])["d"]
    expected = deconv_reference(x, w, b, 2, 1, 2, 2)
    assert ours.shape == expected.shape == (2, 6, 11, 13)
    assert max_rel(ours, expected) <= 1e-5
    opencv = run_opencv(prototxt, caffemodel, {"data": x}, ["d"])["d"]
    assert opencv.shape != expected.shape


def test_inner_product_axis_and_transpose(tmp_path):
    rng = np.random.default_rng(12)
    x = pixels(rng, (2, 4, 3, 5))
    w_axis2, w_axis3, w_t = he(rng, 7, 15), he(rng, 7, 5), he(rng, 60, 7, fan_in=60)
    b = small(rng, 7)
    net = CaffeNetBuilder()
    net.input("data", x.shape)
    net.layer("ip2", "InnerProduct", "data", "ip2",
              inner_product_param={"num_output": 7, "axis": 2}, blobs=[w_axis2, b])
    net.layer("ip3", "InnerProduct", "data", "ip3",
              inner_product_param={"num_output": 7, "axis": -1}, blobs=[w_axis3, b])
    net.layer("ipt", "InnerProduct", "data", "ipt",
              inner_product_param={"num_output": 7, "transpose": True}, blobs=[w_t, b])
    _, _, ours = import_and_compare(tmp_path, net, {"data": x}, {"ip2": "ip2", "ip3": "ip3"})
    x64 = x.astype(np.float64)
    assert max_rel(ours["ip2"], x64.reshape(2, 4, 15) @ w_axis2.T + b) <= 1e-5
    assert max_rel(ours["ip3"], x64 @ w_axis3.T + b) <= 1e-5
    # transpose: true stores the weight as (K, N) and computes x @ W.
    prototxt, caffemodel = str(tmp_path / "net.prototxt"), str(tmp_path / "net.caffemodel")
    model, _ = load_caffe(prototxt, caffemodel)
    ipt = run_onnx(model, {"data": x}, ["ipt"])["ipt"]
    expected = x64.reshape(2, 60) @ w_t + b
    assert max_rel(ipt, expected) <= 1e-5
    opencv = run_opencv(prototxt, caffemodel, {"data": x}, ["ipt"])["ipt"]
    assert max_rel(opencv, expected) > 0.1    # on record: OpenCV ignores transpose


# --------------------------------------------------------------------------------------
# activations, element-wise, shape layers, normalisation


def test_activations_and_power(tmp_path):
    rng = np.random.default_rng(13)
    net = CaffeNetBuilder()
    net.input("data", (2, 5, 4, 3))
    net.layer("scaled", "Power", "data", "scaled", power_param={"scale": 0.02})
    net.layer("leaky", "ReLU", "scaled", "leaky", relu_param={"negative_slope": 0.1})
    net.layer("prelu", "PReLU", "scaled", "prelu", blobs=[small(rng, 5, scale=0.5)])
    net.layer("prelu_s", "PReLU", "scaled", "prelu_s", prelu_param={"channel_shared": True},
              blobs=[np.array([0.3], np.float32)])
    net.layer("sig", "Sigmoid", "scaled", "sig")
    net.layer("tanh", "TanH", "scaled", "tanh")
    net.layer("pow", "Power", "sig", "pow", power_param={"power": 1.5, "scale": 2.0,
                                                           "shift": 0.5})
    net.layer("pow_id", "Power", "tanh", "pow_id")
    net.layer("relu", "ReLU", "scaled", "relu")
    names = ["leaky", "prelu", "prelu_s", "sig", "tanh", "pow", "pow_id", "relu"]
    x = pixels(rng, (2, 5, 4, 3))
    _, _, ours = import_and_compare(tmp_path, net, {"data": x}, {n: n for n in names})
    s = 1.0 / (1.0 + np.exp(-0.02 * x.astype(np.float64)))
    assert max_rel(ours["pow"], (0.5 + 2.0 * s) ** 1.5) <= 1e-5


def test_eltwise_concat_slice_split(tmp_path):
    rng = np.random.default_rng(14)
    net = CaffeNetBuilder()
    net.input("data", (2, 6, 4, 5))
    net.layer("split", "Split", "data", ["d1", "d2"])
    net.layer("halves", "Slice", "d1", ["a", "b"], slice_param={"axis": 1})
    net.layer("parts", "Slice", "d2", ["p", "q", "r"], slice_param={"slice_point": [1, 4]})
    net.layer("rows", "Slice", "d2", ["top", "bottom"],
              slice_param={"axis": 2, "slice_point": [1]})
    net.layer("sum", "Eltwise", ["a", "b"], "sum",
              eltwise_param={"operation": "SUM", "coeff": [0.5, -2.0]})
    net.layer("plain", "Eltwise", ["a", "b", "sum"], "plain")
    net.layer("prod", "Eltwise", ["a", "b", "sum"], "prod", eltwise_param={"operation": "PROD"})
    net.layer("max", "Eltwise", ["a", "b", "sum"], "max", eltwise_param={"operation": "MAX"})
    net.layer("cat_h", "Concat", ["sum", "prod", "max"], "cat_h", concat_param={"axis": -2})
    net.layer("cat_c", "Concat", ["p", "q", "r", "a"], "cat_c")
    net.layer("cat_n", "Concat", ["top", "top"], "cat_n", concat_param={"axis": 0})
    net.layer("sink", "Silence", ["bottom"], [])
    x = pixels(rng, (2, 6, 4, 5))
    names = ["sum", "plain", "prod", "max", "cat_h", "cat_c", "cat_n"]
    model, _, ours = import_and_compare(tmp_path, net, {"data": x}, {n: n for n in names})
    a, b = x[:, :3].astype(np.float64), x[:, 3:].astype(np.float64)
    assert max_rel(ours["sum"], 0.5 * a - 2.0 * b) <= 1e-6
    assert {o.name for o in model.graph.output} == {"plain", "cat_h", "cat_c", "cat_n"}


def test_legacy_concat_dim_and_slice_dim(tmp_path):
    """Caffe uses ``concat_dim`` / ``slice_dim`` (the deprecated aliases of ``axis``) when
    they are set; OpenCV ignores them and works on axis 1 (on record)."""
    rng = np.random.default_rng(21)
    x = pixels(rng, (2, 6, 4, 5))
    net = CaffeNetBuilder()
    net.input("data", x.shape)
    net.layer("rows", "Slice", "data", ["top", "rest"],
              slice_param={"slice_dim": 2, "slice_point": [1]})
    net.layer("cat", "Concat", ["rest", "top"], "cat", concat_param={"concat_dim": 2})
    prototxt, caffemodel = save(tmp_path, net)
    model, _ = load_caffe(prototxt, caffemodel)
    onnx.checker.check_model(model, full_check=True)
    ours = run_onnx(model, {"data": x}, ["top", "cat"])
    np.testing.assert_array_equal(ours["top"], x[:, :, :1])
    np.testing.assert_array_equal(ours["cat"], np.concatenate([x[:, :, 1:], x[:, :, :1]], 2))
    opencv = run_opencv(prototxt, caffemodel, {"data": x}, ["cat"])["cat"]
    assert opencv.shape != ours["cat"].shape or not np.array_equal(opencv, ours["cat"])


def test_batchnorm_scale_flatten_reshape_softmax(tmp_path):
    rng = np.random.default_rng(15)
    c = 5
    mean, var = small(rng, c, scale=30.0), np.abs(small(rng, c, scale=3000.0)) + 100.0
    net = CaffeNetBuilder()
    net.input("data", (2, c, 4, 3))
    net.layer("bn", "BatchNorm", "data", "bn", batch_norm_param={"eps": 1e-3},
              blobs=[mean * 2.5, var * 2.5, np.array([2.5], np.float32)])
    net.layer("sc", "Scale", "bn", "sc", scale_param={"bias_term": True},
              blobs=[small(rng, c, scale=1.0), small(rng, c, scale=1.0)])
    net.layer("sc2", "Scale", "sc", "sc2", scale_param={"axis": 2, "num_axes": 2},
              blobs=[small(rng, 4, 3, scale=1.0)])
    net.layer("bn0", "BatchNorm", "sc2", "bn0",   # moving-average factor 0: mean = var = 0
              blobs=[small(rng, c), np.abs(small(rng, c)) + 1, np.zeros(1, np.float32)])
    net.layer("gate", "Pooling", "bn0", "gate", pooling_param={"pool": "AVE",
                                                                "global_pooling": True})
    net.layer("gate_flat", "Flatten", "gate", "gate_flat")
    net.layer("se", "Scale", ["bn0", "gate_flat"], "se", scale_param={"axis": 0})
    net.layer("fl", "Flatten", "se", "fl", flatten_param={"axis": 1, "end_axis": 2})
    net.layer("fl_all", "Flatten", "se", "fl_all")
    net.layer("rs", "Reshape", "fl", "rs", reshape_param={"shape": [0, 4, -1]})
    net.layer("rs_tail", "Reshape", "se", "rs_tail",
              reshape_param={"shape": [2, -1], "axis": 2})
    net.layer("sm", "Softmax", "rs", "sm", softmax_param={"axis": 2})
    x = pixels(rng, (2, c, 4, 3))
    names = ["bn", "sc", "sc2", "bn0", "se", "fl", "fl_all", "rs", "rs_tail", "sm"]
    model, _, ours = import_and_compare(tmp_path, net, {"data": x}, {n: n for n in names})
    expected_bn = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-3)
    assert max_rel(ours["bn"], expected_bn) <= 1e-5
    assert ours["rs_tail"].shape == (2, 5, 2, 6)
    # Scale with two bottoms over axis 0 covers the batch, yet stays batch-agnostic.
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_batchnorm_batch_statistics(tmp_path):
    """use_global_stats: false normalises by the batch's own statistics (as Caffe does
    in any phase); OpenCV refuses such a layer for batches > 1."""
    rng = np.random.default_rng(16)
    x = pixels(rng, (3, 4, 5, 2))
    net = CaffeNetBuilder()
    net.input("data", x.shape)
    net.layer("bn", "BatchNorm", "data", "bn", batch_norm_param={"use_global_stats": False},
              blobs=[small(rng, 4), np.ones(4, np.float32), np.ones(1, np.float32)])
    prototxt, caffemodel = save(tmp_path, net)
    model, notes = load_caffe(prototxt, caffemodel)
    onnx.checker.check_model(model, full_check=True)
    assert any("use_global_stats: false" in n for n in notes)
    ours = run_onnx(model, {"data": x}, ["bn"])["bn"]
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=(0, 2, 3), keepdims=True)
    expected = (x64 - mu) / np.sqrt(((x64 - mu) ** 2).mean(axis=(0, 2, 3), keepdims=True) + 1e-5)
    assert max_rel(ours, expected) <= 1e-5
    with pytest.raises(cv2.error):
        run_opencv(prototxt, caffemodel, {"data": x}, ["bn"])


# --------------------------------------------------------------------------------------
# batch dimension, prototxt dialects, random weights, writers


def test_batch_dependent_reshape_pins_the_batch(tmp_path):
    net = CaffeNetBuilder()
    net.input("data", (2, 3, 4, 4))
    net.layer("rs", "Reshape", "data", "rs", reshape_param={"shape": [6, 16]})
    prototxt, caffemodel = save(tmp_path, net)
    model, notes = load_caffe(prototxt, caffemodel)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, 4, 4]
    assert any("batch size fixed" in n and "'rs'" in n for n in notes)
    x = pixels(np.random.default_rng(17), (2, 3, 4, 4))
    np.testing.assert_array_equal(run_onnx(model, {"data": x}, ["rs"])["rs"], x.reshape(6, 16))


TRAIN_VAL = """
name: "train_val_style"
layer {
  name: "data" type: "Data" top: "data" top: "label"
  include { phase: TRAIN }
  transform_param { mirror: true crop_size: 227 mean_file: "mean.binaryproto" }
  data_param { source: "train_lmdb" batch_size: 256 backend: LMDB }
}
layer {
  name: "input" type: "Input" top: "data"
  include { phase: TEST }
  input_param { shape { dim: 1 dim: 3 dim: 12 dim: 12 } }
}
layer {
  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param {
    num_output: 4 kernel_size: 3 stride: 1
    weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0 }
    engine: CAFFE
  }
}
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer {
  name: "norm1" type: "LRN" bottom: "conv1" top: "norm1"
  lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 }
}
layer {
  name: "loss" type: "SoftmaxWithLoss" bottom: "norm1" bottom: "label" top: "loss"
  include { phase: TRAIN }
  loss_param { ignore_label: 255 }
}
"""


def test_train_val_prototxt_imports_its_test_phase(tmp_path):
    path = tmp_path / "train_val.prototxt"
    path.write_text(TRAIN_VAL)
    model, notes = load_caffe(str(path))
    assert [n.name for n in model.graph.node] == ["conv1", "relu1", "norm1"]
    assert [o.name for o in model.graph.output] == ["norm1"]
    assert any("seeded random weights" in n for n in notes)
    onnx.checker.check_model(model, full_check=True)


def test_unknown_layer_settings_are_reported(tmp_path):
    """A field the importer does not declare inside a converted layer's settings may be
    a typo that leaves a default in place: it is named in the notes (line included)."""
    path = tmp_path / "typo.prototxt"
    path.write_bytes(b"# r\xe9seau (latin-1 comment)\n"
                     b'input: "data" input_dim: 1 input_dim: 3 input_dim: 5 input_dim: 5\n'
                     b'layer { name: "n" type: "LRN" bottom: "data" top: "n"\n'
                     b"  lrn_param { locl_size: 3 beta: 0.5 } }\n")
    model, notes = load_caffe(str(path))
    (note,) = [n for n in notes if "skipped" in n]
    assert "caffe.LRNParameter.locl_size (line 4)" in note
    assert sites_of(model)[0]["size"] == 5          # Caffe's default, as the note warns
    train_val = tmp_path / "train_val.prototxt"
    train_val.write_text(TRAIN_VAL)
    assert not any("skipped" in n for n in load_caffe(str(train_val))[1])


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, wire_type, payload):
    key = _varint(number << 3 | wire_type)
    return key + (_varint(len(payload)) + payload if wire_type == 2 else payload)


@pytest.mark.parametrize("encoding", ["unpacked", "two-chunks", "double", "legacy-unpacked"])
def test_caffemodel_blob_encodings(tmp_path, encoding):
    """Blob data written other than as one packed float field still reads exactly (the
    importer reads packed floats straight from the file and parses anything else)."""
    rng = np.random.default_rng(22)
    weight = small(rng, 4, 3, 3, 3, scale=1.0)
    net = CaffeNetBuilder()
    net.input("data", (1, 3, 6, 6))
    net.layer("conv", "Convolution", "data", "conv",
              convolution_param={"num_output": 4, "kernel_size": 3, "bias_term": False})
    prototxt = tmp_path / "net.prototxt"
    write_prototxt(net.net, prototxt)
    values = weight.ravel()
    if encoding.startswith("legacy"):
        blob = b"".join(_field(n, 0, _varint(d)) for n, d in zip((1, 2, 3, 4), weight.shape))
    else:
        blob = _field(7, 2, b"".join(_field(1, 0, _varint(d)) for d in weight.shape))
    if encoding.endswith("unpacked"):
        blob += b"".join(_field(5, 5, v.astype("<f4").tobytes()) for v in values)
    elif encoding == "two-chunks":
        blob += _field(5, 2, values[:50].astype("<f4").tobytes())
        blob += _field(5, 2, values[50:].astype("<f4").tobytes())
    else:
        blob += _field(8, 2, values.astype("<f8").tobytes())
    layer = _field(1, 2, b"conv") + _field(2, 2, b"Convolution") + _field(7, 2, blob)
    caffemodel = tmp_path / "net.caffemodel"
    caffemodel.write_bytes(_field(1, 2, b"net") + _field(100, 2, layer))
    model, _ = load_caffe(str(prototxt), str(caffemodel))
    (init,) = [t for t in model.graph.initializer if t.name == "conv/weight"]
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(init), weight)


def test_bias_layer_and_two_net_inputs(tmp_path):
    rng = np.random.default_rng(23)
    x, gate = pixels(rng, (2, 4, 3, 5)), small(rng, 2, 4, scale=1.0)
    b_blob = small(rng, 3, 5, scale=10.0)
    net = CaffeNetBuilder()
    net.input("data", x.shape)
    net.input("gate", gate.shape)
    net.layer("gated", "Scale", ["data", "gate"], "gated", scale_param={"axis": 0})
    net.layer("shift", "Bias", "gated", "shift", bias_param={"axis": 2, "num_axes": 2},
              blobs=[b_blob])
    net.layer("plus", "Bias", ["shift", "gate"], "plus", bias_param={"axis": 0})
    prototxt, caffemodel = save(tmp_path, net)
    model, _ = load_caffe(prototxt, caffemodel)
    onnx.checker.check_model(model, full_check=True)
    assert [i.type.tensor_type.shape.dim[0].dim_param for i in model.graph.input] == ["N", "N"]
    ours = run_onnx(model, {"data": x, "gate": gate}, ["plus"])["plus"]
    g = gate[:, :, None, None].astype(np.float64)
    assert max_rel(ours, x * g + b_blob + g) <= 1e-6


def test_random_weights_are_seeded_and_keep_lrn_in_regime(tmp_path):
    prototxt, _ = save(tmp_path, alexnet_like(np.random.default_rng(18)))
    model_a, notes = load_caffe(prototxt)
    model_b, _ = load_caffe(prototxt)
    model_c, _ = load_caffe(prototxt, seed=1)
    assert notes and "no --weights given: seeded random weights" in notes[0]
    props = {p.key: p.value for p in model_a.metadata_props}
    assert json.loads(props[NOTES_KEY]) == notes
    init = lambda m: {t.name: t.raw_data for t in m.graph.initializer}  # noqa: E731
    assert init(model_a) == init(model_b) != init(model_c)
    shapes = {t.name: tuple(t.dims) for t in model_a.graph.initializer}
    assert shapes["conv1/weight"] == (8, 3, 5, 5) and shapes["fc6/weight"] == (32, 108)
    x = pixels(np.random.default_rng(19), (2, 3, 31, 29))
    out = run_onnx(model_a, {"data": x}, ["conv1/relu1", "norm1"])
    # alpha/size * (sum of squares over a 5-channel window) ~ alpha * mean(x^2): order 1.
    term = 1e-4 * np.mean(out["conv1/relu1"].astype(np.float64) ** 2)
    assert 0.05 < term < 50, term
    assert lrn_matters(out["conv1/relu1"], out["norm1"])


def test_writers_and_reader_round_trip(tmp_path):
    rng = np.random.default_rng(20)
    net = alexnet_like(rng)
    prototxt, caffemodel = save(tmp_path, net)
    text = (tmp_path / "net.prototxt").read_text()
    assert "blobs" not in text and 'type: "LRN"' in text
    parsed = read_prototxt(prototxt)
    assert [l.name for l in parsed.layer] == [l.name for l in net.net.layer]
    blob = blob_from_array(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert list(blob.shape.dim) == [2, 3] and list(blob.data) == [0, 1, 2, 3, 4, 5]
    legacy = blob_from_array(np.zeros((7, 5)), legacy=True)
    assert (legacy.num, legacy.channels, legacy.height, legacy.width) == (1, 1, 7, 5)
