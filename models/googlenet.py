"""GoogLeNet / Inception-v1 (BVLC ``bvlc_googlenet``) replica with seeded random weights.

Facts (layer configuration of ``models/bvlc_googlenet/deploy.prototxt`` in BVLC Caffe,
after Szegedy et al., "Going Deeper with Convolutions", CVPR 2015, Table 1; the deploy
net has no auxiliary heads): input 3x224x224; conv1/7x7_s2 64 7x7 stride 2 pad 3;
pool1/3x3_s2 max 3x3/2; **pool1/norm1**; conv2/3x3_reduce 64 1x1; conv2/3x3 192 3x3
pad 1; **conv2/norm2**; pool2/3x3_s2; inception 3a, 3b; pool3/3x3_s2; inception 4a-4e;
pool4/3x3_s2; inception 5a, 5b; pool5/7x7_s1 average 7x7; pool5/drop_7x7_s1 dropout
0.4; loss3/classifier 1000; prob. Caffe pooling rounds the output size up
(112 -> 56 -> 28 -> 14 -> 7). Each inception module concatenates, in this order,
1x1; 3x3_reduce -> 3x3 (pad 1); 5x5_reduce -> 5x5 (pad 2); pool (max 3x3/1 pad 1) ->
pool_proj 1x1, every convolution followed by a ReLU. 6,998,552 parameters.

LRN (both sites, Caffe ACROSS_CHANNELS): local_size 5, alpha 1e-4, beta 0.75, k 1.
"""
from __future__ import annotations

import onnx

from ._layers import ReplicaBuilder, Widths

NAME = "googlenet"
INPUT_SHAPE = (3, 224, 224)
LRN = dict(size=5, alpha=1e-4, beta=0.75, bias=1.0)

# name: (1x1, 3x3_reduce, 3x3, 5x5_reduce, 5x5, pool_proj), Table 1 of Szegedy et al.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def _inception(net: ReplicaBuilder, w: Widths, name: str, x: str) -> str:
    c1, c3r, c3, c5r, c5, cp = (w.ch(c) for c in INCEPTION[name])
    p = f"inception_{name}/"

    def conv_relu(layer: str, src: str, channels: int, kernel: int, pad: int = 0) -> str:
        return net.relu(f"{p}relu_{layer}", net.conv(f"{p}{layer}", src, channels, kernel, pad=pad))

    b1 = conv_relu("1x1", x, c1, 1)
    b3 = conv_relu("3x3", conv_relu("3x3_reduce", x, c3r, 1), c3, 3, pad=1)
    b5 = conv_relu("5x5", conv_relu("5x5_reduce", x, c5r, 1), c5, 5, pad=2)
    bp = conv_relu("pool_proj", net.maxpool(f"{p}pool", x, 3, 1, pad=1), cp, 1)
    return net.concat(f"{p}output", [b1, b3, b5, bp])


def build(*, variant: str = "full", seed: int = 0, opset: int = 13) -> onnx.ModelProto:
    """Build the GoogLeNet replica (arguments as ``lrnconv.models.build``)."""
    # Gains (see models/_layers.py): conv2/3x3_reduce 2.0 and conv2/3x3 2.5 put conv2/norm2
    # in the LRN regime (they read a max-pooled, normalized map); the classifier reads
    # 7x7-averaged features, whose variation is small, hence its gain 1.3.
    w = Widths(variant)
    net = ReplicaBuilder(NAME, INPUT_SHAPE, seed=seed, opset=opset)
    x = net.conv("conv1/7x7_s2", "data", w.ch(64), 7, stride=2, pad=3, gain=1.0)
    x = net.relu("conv1/relu_7x7", x)
    x = net.maxpool("pool1/3x3_s2", x, 3, 2)
    x = net.lrn("pool1/norm1", x, **LRN)
    x = net.relu("conv2/relu_3x3_reduce", net.conv("conv2/3x3_reduce", x, w.ch(64), 1, gain=2.0))
    x = net.relu("conv2/relu_3x3", net.conv("conv2/3x3", x, w.ch(192), 3, pad=1, gain=2.5))
    x = net.lrn("conv2/norm2", x, **LRN)
    x = net.maxpool("pool2/3x3_s2", x, 3, 2)
    x = _inception(net, w, "3a", x)
    x = _inception(net, w, "3b", x)
    x = net.maxpool("pool3/3x3_s2", x, 3, 2)
    for name in ("4a", "4b", "4c", "4d", "4e"):
        x = _inception(net, w, name, x)
    x = net.maxpool("pool4/3x3_s2", x, 3, 2)
    x = _inception(net, w, "5a", x)
    x = _inception(net, w, "5b", x)
    x = net.avgpool("pool5/7x7_s1", x, 7, 1)
    x = net.dropout("pool5/drop_7x7_s1", x, 0.4)
    x = net.fc("loss3/classifier", x, w.classes, gain=1.3, bias_std=0.0)
    x = net.softmax("prob", x)
    return net.model(x, title="GoogLeNet / Inception-v1 (bvlc_googlenet)",
                     source="BVLC Caffe models/bvlc_googlenet/deploy.prototxt",
                     variant=w.variant)
