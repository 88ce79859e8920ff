"""ZFNet (Zeiler and Fergus) replica with seeded random weights.

Facts (Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks",
ECCV 2014, Fig. 3, the 8-layer ImageNet model): input 3x224x224; conv1 96 7x7 stride 2
(110x110 maps, hence pad 1), ReLU, max pool 3x3/2 (55x55), contrast normalization
across feature maps; conv2 256 5x5 stride 2 (26x26), ReLU, max pool 3x3/2 (13x13),
normalization; conv3 384 3x3, conv4 384 3x3, conv5 256 3x3 (pad 1, 13x13); max pool
3x3/2 (6x6); fc6 4096, fc7 4096 (dropout 0.5 each); fc8 1000 softmax. As in the paper
(and in CaffeNet) each normalization follows the pooling. Convolutions are not grouped
(the paper trains on one GPU). Pooling rounds up as Caffe does (110 -> 55, 26 -> 13).
62,357,608 parameters.

LRN (both sites): the paper gives no normalization constants. The issue this replica
serves asks for "ZFNet and VGG-CNN-M (LRN k = 2)", so both ZFNet sites use the
cross-channel LRN of VGG-CNN-M (Chatfield et al. 2014, whose CNN-M is a ZF-style net):
local_size 5, alpha 5e-4, beta 0.75, k 2. (Note: the ZF prototxt of the Faster R-CNN
release uses a different, WITHIN_CHANNEL normalization; that variant is not this one.)
"""
from __future__ import annotations

import onnx

from ._layers import ReplicaBuilder, Widths

NAME = "zfnet"
INPUT_SHAPE = (3, 224, 224)
LRN = dict(size=5, alpha=5e-4, beta=0.75, bias=2.0)


def build(*, variant: str = "full", seed: int = 0, opset: int = 13) -> onnx.ModelProto:
    """Build the ZFNet replica (arguments as ``lrnconv.models.build``)."""
    # Gains (see models/_layers.py): with k = 2 and alpha 5e-4 the LRN term is large, so
    # conv1 gets 0.5; conv2 4.0 (it reads a max-pooled map) puts norm2 in the LRN regime;
    # fc8 0.5 spreads the logits over a few units.
    w = Widths(variant)
    net = ReplicaBuilder(NAME, INPUT_SHAPE, seed=seed, opset=opset)
    x = net.conv("conv1", "data", w.ch(96), 7, stride=2, pad=1, gain=0.5)
    x = net.relu("relu1", x)
    x = net.maxpool("pool1", x, 3, 2)
    x = net.lrn("norm1", x, **LRN)
    x = net.conv("conv2", x, w.ch(256), 5, stride=2, gain=4.0)
    x = net.relu("relu2", x)
    x = net.maxpool("pool2", x, 3, 2)
    x = net.lrn("norm2", x, **LRN)
    x = net.conv_relu("conv3", "relu3", x, w.ch(384), 3, pad=1)
    x = net.conv_relu("conv4", "relu4", x, w.ch(384), 3, pad=1)
    x = net.conv_relu("conv5", "relu5", x, w.ch(256), 3, pad=1)
    x = net.maxpool("pool5", x, 3, 2)
    x = net.alexnet_classifier(x, w, gain=0.5)
    return net.model(x, title="ZFNet (Zeiler & Fergus 2014)",
                     source="Zeiler & Fergus, ECCV 2014, Fig. 3",
                     variant=w.variant)
