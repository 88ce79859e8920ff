"""CaffeNet (BVLC ``bvlc_reference_caffenet``) replica with seeded random weights.

Facts (layer configuration of ``models/bvlc_reference_caffenet/deploy.prototxt`` in BVLC
Caffe): AlexNet's layers and widths (input 3x227x227; conv1 96 11x11/4; conv2 256 5x5
pad 2 group 2; conv3 384 3x3 pad 1; conv4 384 3x3 pad 1 group 2; conv5 256 3x3 pad 1
group 2; fc6/fc7 4096 with dropout 0.5; fc8 1000), except that the pooling comes
*before* the normalization: relu1 -> pool1 -> **norm1**, relu2 -> pool2 -> **norm2**.
60,965,224 parameters, like AlexNet.

LRN (both sites, Caffe ACROSS_CHANNELS): local_size 5, alpha 1e-4, beta 0.75, k 1.
"""
from __future__ import annotations

import onnx

from ._layers import ReplicaBuilder, Widths

NAME = "caffenet"
INPUT_SHAPE = (3, 227, 227)
LRN = dict(size=5, alpha=1e-4, beta=0.75, bias=1.0)


def build(*, variant: str = "full", seed: int = 0, opset: int = 13) -> onnx.ModelProto:
    """Build the CaffeNet replica (arguments as ``lrnconv.models.build``)."""
    # Gains (see models/_layers.py): norm1 follows a max pool, so conv1 keeps gain 1;
    # conv2 2.0 puts norm2 in the LRN regime; fc8 0.2 spreads the logits over a few units.
    w = Widths(variant)
    net = ReplicaBuilder(NAME, INPUT_SHAPE, seed=seed, opset=opset)
    x = net.conv("conv1", "data", w.ch(96), 11, stride=4, gain=1.0)
    x = net.relu("relu1", x)
    x = net.maxpool("pool1", x, 3, 2)
    x = net.lrn("norm1", x, **LRN)
    x = net.conv("conv2", x, w.ch(256), 5, pad=2, group=2, gain=2.0)
    x = net.relu("relu2", x)
    x = net.maxpool("pool2", x, 3, 2)
    x = net.lrn("norm2", x, **LRN)
    x = net.conv_relu("conv3", "relu3", x, w.ch(384), 3, pad=1)
    x = net.conv_relu("conv4", "relu4", x, w.ch(384), 3, pad=1, group=2)
    x = net.conv_relu("conv5", "relu5", x, w.ch(256), 3, pad=1, group=2)
    x = net.maxpool("pool5", x, 3, 2)
    x = net.alexnet_classifier(x, w, gain=0.2)
    return net.model(x, title="CaffeNet (bvlc_reference_caffenet)",
                     source="BVLC Caffe models/bvlc_reference_caffenet/deploy.prototxt",
                     variant=w.variant)
