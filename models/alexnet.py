"""AlexNet (BVLC ``bvlc_alexnet``) replica with seeded random weights.

Facts (layer configuration of ``models/bvlc_alexnet/deploy.prototxt`` in BVLC Caffe,
after Krizhevsky, Sutskever and Hinton, NIPS 2012): input 3x227x227;
conv1 96 11x11 stride 4, relu1, **norm1**, pool1 3x3/2; conv2 256 5x5 pad 2 group 2,
relu2, **norm2**, pool2 3x3/2; conv3 384 3x3 pad 1; conv4 384 3x3 pad 1 group 2;
conv5 256 3x3 pad 1 group 2; pool5 3x3/2; fc6 4096, drop6 0.5; fc7 4096, drop7 0.5;
fc8 1000; prob (softmax). The LRN layers come *after* the ReLU and *before* the
pooling (CaffeNet swaps them). 60,965,224 parameters (about 244 MB of float32).

LRN (both sites, Caffe ACROSS_CHANNELS): local_size 5, alpha 1e-4, beta 0.75, k 1.
"""
from __future__ import annotations

import onnx

from ._layers import ReplicaBuilder, Widths

NAME = "alexnet"
INPUT_SHAPE = (3, 227, 227)
LRN = dict(size=5, alpha=1e-4, beta=0.75, bias=1.0)


def build(*, variant: str = "full", seed: int = 0, opset: int = 13) -> onnx.ModelProto:
    """Build the AlexNet replica (arguments as ``lrnconv.models.build``)."""
    w = Widths(variant)
    # Gains (see models/_layers.py): conv1 1.5 and conv2 3.5 put norm1/norm2 in the LRN
    # regime on pixel-scale inputs (conv2 reads a max-pooled map); fc8 0.14 spreads the
    # logits over a few units.
    net = ReplicaBuilder(NAME, INPUT_SHAPE, seed=seed, opset=opset)
    x = net.conv("conv1", "data", w.ch(96), 11, stride=4, gain=1.5)
    x = net.relu("relu1", x)
    x = net.lrn("norm1", x, **LRN)
    x = net.maxpool("pool1", x, 3, 2)
    x = net.conv("conv2", x, w.ch(256), 5, pad=2, group=2, gain=3.5)
    x = net.relu("relu2", x)
    x = net.lrn("norm2", x, **LRN)
    x = net.maxpool("pool2", x, 3, 2)
    x = net.conv_relu("conv3", "relu3", x, w.ch(384), 3, pad=1)
    x = net.conv_relu("conv4", "relu4", x, w.ch(384), 3, pad=1, group=2)
    x = net.conv_relu("conv5", "relu5", x, w.ch(256), 3, pad=1, group=2)
    x = net.maxpool("pool5", x, 3, 2)
    x = net.alexnet_classifier(x, w, gain=0.14)
    return net.model(x, title="AlexNet (bvlc_alexnet)",
                     source="BVLC Caffe models/bvlc_alexnet/deploy.prototxt",
                     variant=w.variant)
