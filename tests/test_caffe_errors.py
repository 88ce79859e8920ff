"""Caffe import errors: the right exception, one line, naming the file and the layer."""
from __future__ import annotations

import numpy as np
import pytest

from lrnconv.formats.caffe import CaffeNetBuilder, load_caffe, write_caffemodel, write_prototxt
from lrnconv.base.errors import BadInput, InvalidSite, LrnConvError, UnsupportedModel


def conv_net(*, v1=False, bias_term=True, weight_shape=(4, 3, 3, 3)):
    rng = np.random.default_rng(0)
    net = CaffeNetBuilder("errors", v1=v1)
    net.input("data", (1, 3, 8, 8), style="input_dim" if v1 else "input_shape")
    blobs = [rng.standard_normal(weight_shape).astype(np.float32)]
    if bias_term:
        blobs.append(np.zeros(4, np.float32))
    net.layer("conv1", "Convolution", "data", "conv1",
              convolution_param={"num_output": 4, "kernel_size": 3, "bias_term": bias_term},
              blobs=blobs)
    net.layer("relu1", "ReLU", "conv1", "conv1")
    return net


def save(tmp_path, net, stem="net"):
    prototxt, caffemodel = tmp_path / f"{stem}.prototxt", tmp_path / f"{stem}.caffemodel"
    write_prototxt(net.net, prototxt)
    write_caffemodel(net.net, caffemodel)
    return str(prototxt), str(caffemodel)


def raises(exc_type, *args, **kwargs) -> str:
    """Call load_caffe, expect ``exc_type``, return its one-line message."""
    with pytest.raises(exc_type) as info:
        load_caffe(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    assert isinstance(info.value, LrnConvError) and info.value.exit_code == 2
    return message


def test_unknown_layer_type_names_layer_and_type(tmp_path):
    net = conv_net()
    net.layer("crop1", "Crop", ["conv1", "data"], "crop1")
    prototxt, caffemodel = save(tmp_path, net)
    message = raises(UnsupportedModel, prototxt, caffemodel)
    assert prototxt in message and "'crop1'" in message and "'Crop'" in message
    assert "Convolution" in message          # the supported types are listed


def test_unknown_v1_layer_type(tmp_path):
    net = conv_net(v1=True)
    net.layer("absval", "AbsVal", "conv1", "absval")
    prototxt, _ = save(tmp_path, net)
    message = raises(UnsupportedModel, prototxt)
    assert "'absval'" in message and "'AbsVal'" in message


@pytest.mark.parametrize("text", [
    'name: "x"\nlayer {\n  name: "conv1"\n  type: "Convolution"\n',          # unclosed
    'layer { name: "a" type: "ReLU" bottom: "x" top: "x" } }',                # stray brace
    'layer { name: "p" type: "Pooling" pooling_param { pool: MEDIAN } }',    # bad enum
    'input_dim: "three"',                                                    # bad value
])
def test_malformed_prototxt(tmp_path, text):
    path = tmp_path / "bad.prototxt"
    path.write_text(text)
    message = raises(BadInput, str(path))
    assert str(path) in message and "malformed prototxt" in message


def test_binary_file_given_as_prototxt(tmp_path):
    prototxt, caffemodel = save(tmp_path, conv_net())
    message = raises(BadInput, caffemodel)
    assert caffemodel in message


def test_missing_files(tmp_path):
    prototxt, _ = save(tmp_path, conv_net())
    missing = str(tmp_path / "nope.prototxt")
    assert missing in raises(BadInput, missing)
    missing_weights = str(tmp_path / "nope.caffemodel")
    assert missing_weights in raises(BadInput, prototxt, missing_weights)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_caffemodel(tmp_path, keep):
    prototxt, caffemodel = save(tmp_path, conv_net())
    data = open(caffemodel, "rb").read()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[:int(len(data) * keep)])
    message = raises(BadInput, prototxt, str(cut))
    assert str(cut) in message and "truncated" in message


def test_empty_and_text_caffemodel(tmp_path):
    prototxt, _ = save(tmp_path, conv_net())
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    assert "empty" in raises(BadInput, prototxt, str(empty))
    assert prototxt in raises(BadInput, prototxt, prototxt)   # text given as weights


def test_blob_shape_mismatch_names_layer_and_both_shapes(tmp_path):
    prototxt, _ = save(tmp_path, conv_net(), "deploy")
    _, caffemodel = save(tmp_path, conv_net(weight_shape=(4, 3, 5, 5)), "other")
    message = raises(BadInput, prototxt, caffemodel)
    assert caffemodel in message and "'conv1'" in message
    assert "(4, 3, 5, 5)" in message and "(4, 3, 3, 3)" in message


def test_legacy_blob_shape_mismatch(tmp_path):
    prototxt, _ = save(tmp_path, conv_net(v1=True), "deploy")
    _, caffemodel = save(tmp_path, conv_net(v1=True, weight_shape=(4, 3, 2, 2)), "other")
    message = raises(BadInput, prototxt, caffemodel)
    assert "'conv1'" in message and "(4, 3, 2, 2)" in message and "(4, 3, 3, 3)" in message


def test_blob_count_mismatch(tmp_path):
    prototxt, _ = save(tmp_path, conv_net(), "deploy")
    _, caffemodel = save(tmp_path, conv_net(bias_term=False), "other")
    message = raises(BadInput, prototxt, caffemodel)
    assert "'conv1'" in message and "1 blobs" in message and "implies 2" in message


def test_layer_missing_from_caffemodel(tmp_path):
    _, caffemodel = save(tmp_path, conv_net(), "trained")
    net = conv_net()
    net.layer("ip", "InnerProduct", "conv1", "ip", inner_product_param={"num_output": 3})
    prototxt, _ = save(tmp_path, net, "deploy")
    message = raises(BadInput, prototxt, caffemodel)
    assert "'ip'" in message and "no parameters" in message


def test_layer_without_its_blobs(tmp_path):
    net = conv_net()
    net.layer("ip", "InnerProduct", "conv1", "ip", inner_product_param={"num_output": 3})
    prototxt, caffemodel = save(tmp_path, net)   # ip is in the caffemodel, without blobs
    message = raises(BadInput, prototxt, caffemodel)
    assert "'ip'" in message and "0 blobs" in message and "(3, 144)" in message


def test_bottom_that_nothing_produces(tmp_path):
    net = conv_net()
    net.layer("relu2", "ReLU", "conv9", "relu2")
    prototxt, _ = save(tmp_path, net)
    message = raises(BadInput, prototxt)
    assert "'relu2'" in message and "'conv9'" in message


def test_even_lrn_size_is_an_invalid_site(tmp_path):
    net = conv_net()
    net.layer("norm1", "LRN", "conv1", "norm1", lrn_param={"local_size": 4})
    prototxt, _ = save(tmp_path, net)
    message = raises(InvalidSite, prototxt)
    assert "'norm1'" in message and "local_size 4" in message


def test_stochastic_pooling_is_unsupported(tmp_path):
    net = conv_net()
    net.layer("pool", "Pooling", "conv1", "pool",
              pooling_param={"pool": "STOCHASTIC", "kernel_size": 2})
    prototxt, _ = save(tmp_path, net)
    message = raises(UnsupportedModel, prototxt)
    assert "'pool'" in message and "STOCHASTIC" in message


def test_inconsistent_layer_settings(tmp_path):
    net = conv_net()
    net.layer("conv2", "Convolution", "conv1", "conv2",
              convolution_param={"num_output": 6, "kernel_size": 3, "group": 4})
    prototxt, _ = save(tmp_path, net)
    message = raises(BadInput, prototxt)
    assert "'conv2'" in message and "group 4" in message


def test_reshape_that_does_not_fit(tmp_path):
    net = conv_net()
    net.layer("rs", "Reshape", "conv1", "rs", reshape_param={"shape": [0, 5, -1]})
    prototxt, _ = save(tmp_path, net)
    message = raises(BadInput, prototxt)
    assert "'rs'" in message and "(1, 4, 6, 6)" in message


def test_v1_and_v2_layers_mixed(tmp_path):
    path = tmp_path / "mixed.prototxt"
    path.write_text('input: "data" input_dim: 1 input_dim: 3 input_dim: 4 input_dim: 4\n'
                    'layer { name: "a" type: "ReLU" bottom: "data" top: "a" }\n'
                    'layers { name: "b" type: RELU bottom: "a" top: "b" }\n')
    assert "both" in raises(BadInput, str(path))


def test_input_without_shape(tmp_path):
    path = tmp_path / "noshape.prototxt"
    path.write_text('input: "data"\nlayer { name: "a" type: "ReLU" bottom: "data" top: "a" }\n')
    message = raises(BadInput, str(path))
    assert "'data'" in message and "no shape" in message
