"""Built-in model replicas (lrnconv.models): structure, published LRN parameters, and the
numerical regime that makes them useful test subjects.

The small variants are run through ONNX Runtime on the default seeded inputs
(``lrnconv.runtime.inputs.random_inputs``, uniform in [-128, 128)) with every LRN input exposed,
to show that each LRN site works where it does on real data (its term
``alpha/size * window sum of x^2`` is a sizable fraction of the bias) and that the
softmax is neither saturated nor blind to its input. The full variants are only built
(never run here) to check their parameter counts against the published ones.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from lrnconv import models
from lrnconv.base.errors import UsageError
from lrnconv.runtime.inputs import graph_inputs, random_inputs

SAMPLES = 32

# Published LRN layers (Caffe ACROSS_CHANNELS): name -> (local_size, alpha, beta, k).
# bvlc_alexnet / bvlc_reference_caffenet / bvlc_googlenet deploy.prototxt; VGG_CNN_M
# deploy (Chatfield et al. 2014); ZFNet uses VGG-CNN-M's k = 2 LRN (see models/zfnet.py).
PUBLISHED_LRN = {
    "alexnet": {"norm1": (5, 1e-4, 0.75, 1.0), "norm2": (5, 1e-4, 0.75, 1.0)},
    "caffenet": {"norm1": (5, 1e-4, 0.75, 1.0), "norm2": (5, 1e-4, 0.75, 1.0)},
    "googlenet": {"pool1/norm1": (5, 1e-4, 0.75, 1.0), "conv2/norm2": (5, 1e-4, 0.75, 1.0)},
    "zfnet": {"norm1": (5, 5e-4, 0.75, 2.0), "norm2": (5, 5e-4, 0.75, 2.0)},
    "vgg_cnn_m": {"norm1": (5, 5e-4, 0.75, 2.0), "norm2": (5, 5e-4, 0.75, 2.0)},
}

# The op that produces each LRN's input: AlexNet and VGG-CNN-M normalize after the
# ReLU, CaffeNet and ZFNet after the pooling; GoogLeNet has one of each.
LRN_PRODUCER = {
    "alexnet": {"norm1": "Relu", "norm2": "Relu"},
    "caffenet": {"norm1": "MaxPool", "norm2": "MaxPool"},
    "googlenet": {"pool1/norm1": "MaxPool", "conv2/norm2": "Relu"},
    "zfnet": {"norm1": "MaxPool", "norm2": "MaxPool"},
    "vgg_cnn_m": {"norm1": "Relu", "norm2": "Relu"},
}

INPUT_SIZE = {"alexnet": 227, "caffenet": 227, "googlenet": 224, "zfnet": 224, "vgg_cnn_m": 224}

# Weights + biases of the published nets. AlexNet/CaffeNet: 60,965,224 (bvlc_alexnet);
# GoogLeNet without auxiliary heads: 6,998,552 (bvlc_googlenet deploy); ZFNet and
# VGG-CNN-M: the sums over their published layer tables.
PUBLISHED_PARAMETERS = {
    "alexnet": 60_965_224,
    "caffenet": 60_965_224,
    "googlenet": 6_998_552,
    "zfnet": 62_357_608,
    "vgg_cnn_m": 102_908_520,
}

NAMES = list(PUBLISHED_LRN)


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _lrn_nodes(model):
    return [n for n in model.graph.node if n.op_type == "LRN"]


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _parameters(model):
    """Weights and biases of Conv and Gemm nodes (the Caffe learnable parameters)."""
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    return sum(sizes[i] for n in model.graph.node if n.op_type in ("Conv", "Gemm")
               for i in n.input[1:])


def _lrn_term_over_bias(x, size, alpha, bias):
    """alpha/size * sum of x^2 over the ONNX channel window, divided by the bias."""
    sq = x.astype(np.float64) ** 2
    channels = x.shape[1]
    front, back = (size - 1) // 2, size - 1 - (size - 1) // 2
    padded = np.pad(sq, ((0, 0), (front, back), (0, 0), (0, 0)))
    window = sum(padded[:, i:i + channels] for i in range(size))
    return alpha / size * window / bias


@pytest.fixture(scope="module")
def small():
    """name -> (model, feeds, {output name: array}) for the small variants, run once."""
    cache = {}

    def get(name):
        if name not in cache:
            model = models.build(name, variant="small", seed=0)
            probe = onnx.ModelProto()
            probe.CopyFrom(model)
            for node in _lrn_nodes(model):
                probe.graph.output.append(onnx.helper.make_tensor_value_info(
                    node.input[0], onnx.TensorProto.FLOAT, None))
            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            session = ort.InferenceSession(probe.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
            feeds = random_inputs(model, SAMPLES, seed=0)
            names = [o.name for o in session.get_outputs()]
            cache[name] = (model, feeds, dict(zip(names, session.run(None, feeds))), session)
        return cache[name]

    return get


def test_registry_is_ordered_and_complete():
    assert list(models.BUILTIN) == ["alexnet", "caffenet", "googlenet", "zfnet", "vgg_cnn_m"]
    assert models.VARIANTS == ("full", "small")


@pytest.mark.parametrize("kwargs, words", [
    pytest.param(dict(name="lenet"), ["lenet", "alexnet", "vgg_cnn_m"], id="unknown-name"),
    pytest.param(dict(name="alexnet", variant="tiny"), ["tiny", "full", "small"],
                 id="unknown-variant"),
    pytest.param(dict(name="alexnet", variant="small", opset=6), ["opset 6", "7"],
                 id="opset-too-old"),
])
def test_bad_arguments_raise_usage_error(kwargs, words):
    name = kwargs.pop("name")
    with pytest.raises(UsageError) as info:
        models.build(name, **kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_small_model_is_valid_and_well_named(name, small):
    model = small(name)[0]
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 13
    assert model.ir_version == onnx.helper.find_min_ir_version_for(list(model.opset_import))
    assert model.producer_name == "lrnconv.models"
    assert "random-weight replica" in model.doc_string.lower()
    assert "lrn testing" in model.doc_string.lower()
    props = {p.key: p.value for p in model.metadata_props}
    assert props["lrnconv.model"] == name and props["lrnconv.variant"] == "small"

    node_names = [n.name for n in model.graph.node]
    assert all(node_names) and len(set(node_names)) == len(node_names)
    tensors = [o for n in model.graph.node for o in n.output]
    tensors += [t.name for t in model.graph.initializer] + ["data"]
    assert len(set(tensors)) == len(tensors)
    assert not any(n.startswith(("onnx::", "_", "/")) or n.isdigit() for n in tensors)


@pytest.mark.parametrize("name", NAMES)
def test_small_model_io_and_dynamic_batch(name, small):
    model, feeds, outputs, session = small(name)
    (data,) = graph_inputs(model)
    assert data.name == "data"
    assert data.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    side = INPUT_SIZE[name]
    assert _dims(data) == ["N", 3, side, side]
    (prob,) = model.graph.output
    assert prob.name == "prob" and _dims(prob) == ["N", 100]
    assert outputs["prob"].shape == (SAMPLES, 100)
    np.testing.assert_allclose(outputs["prob"].sum(axis=1), 1.0, rtol=1e-5)
    # another batch size runs and each sample's answer does not depend on the batch
    three = session.run(["prob"], {"data": feeds["data"][:3]})[0]
    np.testing.assert_allclose(three, outputs["prob"][:3], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_lrn_parameters_are_the_published_ones(name, small):
    model = small(name)[0]
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    lrns = _lrn_nodes(model)
    assert [n.name for n in lrns] == list(PUBLISHED_LRN[name])
    for node in lrns:
        a = _attrs(node)
        size, alpha, beta, k = PUBLISHED_LRN[name][node.name]
        assert a["size"] == size
        assert a["alpha"] == pytest.approx(alpha, rel=1e-6)
        assert a["beta"] == pytest.approx(beta, rel=1e-6)
        assert a["bias"] == pytest.approx(k, rel=1e-6)
        assert producers[node.input[0]] == LRN_PRODUCER[name][node.name]


@pytest.mark.parametrize("name", NAMES)
def test_every_lrn_works_in_its_real_data_regime(name, small):
    model, _, outputs, _ = small(name)
    medians = {}
    for node in _lrn_nodes(model):
        a = _attrs(node)
        x = outputs[node.input[0]]
        assert x.shape[0] == SAMPLES and x.shape[1] >= a["size"]
        ratio = _lrn_term_over_bias(x, a["size"], a["alpha"], a["bias"])
        medians[node.name] = float(np.median(ratio))
    for site, median in medians.items():
        assert 0.25 <= median <= 10.0, f"{name}/{site}: median term/bias {median:.3f} ({medians})"


@pytest.mark.parametrize("name", NAMES)
def test_softmax_is_not_saturated_and_follows_the_input(name, small):
    prob = small(name)[2]["prob"]
    max_prob = prob.max(axis=1)
    top1 = Counter(prob.argmax(axis=1).tolist())
    classes = prob.shape[1]
    assert 5.0 / classes < max_prob.mean() < 0.7, max_prob.mean()
    assert len(top1) >= 5, top1
    assert top1.most_common(1)[0][1] <= SAMPLES // 2, top1


@pytest.mark.parametrize("name", NAMES)
def test_weights_are_deterministic_in_the_seed(name):
    first = models.build(name, variant="small", seed=0)
    assert models.build(name, variant="small", seed=0).SerializeToString() == \
        first.SerializeToString()
    other = models.build(name, variant="small", seed=1)
    w0, w1 = first.graph.initializer[0], other.graph.initializer[0]
    assert w0.name == w1.name and w0.raw_data != w1.raw_data


@pytest.mark.parametrize("opset", [7, 9, 10, 12, 17])
@pytest.mark.parametrize("name", ["alexnet", "googlenet"])
def test_other_opsets_give_the_same_answers(name, opset, small):
    reference, feeds, outputs, _ = small(name)
    model = models.build(name, variant="small", seed=0, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == opset
    assert [i.name for i in graph_inputs(model)] == ["data"]
    assert [(n.name, _attrs(n)) for n in _lrn_nodes(model)] == \
        [(n.name, _attrs(n)) for n in _lrn_nodes(reference)]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    prob = session.run(["prob"], {"data": feeds["data"][:4]})[0]
    np.testing.assert_allclose(prob, outputs["prob"][:4], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_full_variants_have_the_published_sizes():
    """Build (never run) every full replica: parameter counts, widths and LRN sites."""
    for name in NAMES:
        model = models.build(name, variant="full", seed=0)
        assert _parameters(model) == PUBLISHED_PARAMETERS[name], name
        side = INPUT_SIZE[name]
        assert _dims(graph_inputs(model)[0]) == ["N", 3, side, side]
        assert _dims(model.graph.output[0]) == ["N", 1000]
        lrns = {n.name: _attrs(n) for n in _lrn_nodes(model)}
        assert list(lrns) == list(PUBLISHED_LRN[name])
        for site, a in lrns.items():
            seen = (a["size"], a["alpha"], a["beta"], a["bias"])
            assert seen == pytest.approx(PUBLISHED_LRN[name][site], rel=1e-6), (name, site)
        del model
