"""VGG-CNN-M (Chatfield et al. 2014) replica with seeded random weights.

Facts (Chatfield, Simonyan, Vedaldi and Zisserman, "Return of the Devil in the Details:
Delving Deep into Convolutional Nets", BMVC 2014, Table 1, CNN-M; and the layer
configuration of the ``VGG_CNN_M`` deploy prototxt of the Caffe Model Zoo): input
3x224x224; conv1 96 7x7 stride 2, ReLU, **norm1**, pool1 3x3/2; conv2 256 5x5 stride 2
pad 1, ReLU, **norm2**, pool2 3x3/2; conv3, conv4, conv5 512 3x3 pad 1 (ReLU each);
pool5 3x3/2; fc6 4096, fc7 4096 (dropout 0.5 each); fc8 1000; prob. As in AlexNet, each
LRN follows the ReLU and precedes the pooling; pooling rounds up as Caffe does
(109 -> 54, 26 -> 13). 102,908,520 parameters.

LRN (both sites, Caffe ACROSS_CHANNELS): local_size 5, alpha 5e-4, beta 0.75, k 2.
"""
from __future__ import annotations

import onnx

from ._layers import ReplicaBuilder, Widths

NAME = "vgg_cnn_m"
INPUT_SHAPE = (3, 224, 224)
LRN = dict(size=5, alpha=5e-4, beta=0.75, bias=2.0)


def build(*, variant: str = "full", seed: int = 0, opset: int = 13) -> onnx.ModelProto:
    """Build the VGG-CNN-M replica (arguments as ``lrnconv.models.build``)."""
    # Gains (see models/_layers.py): conv2 7.0 (stride 2 over a max-pooled map) puts norm2
    # in the LRN regime; fc8 0.4 spreads the logits over a few units.
    w = Widths(variant)
    net = ReplicaBuilder(NAME, INPUT_SHAPE, seed=seed, opset=opset)
    x = net.conv("conv1", "data", w.ch(96), 7, stride=2, gain=1.0)
    x = net.relu("relu1", x)
    x = net.lrn("norm1", x, **LRN)
    x = net.maxpool("pool1", x, 3, 2)
    x = net.conv("conv2", x, w.ch(256), 5, stride=2, pad=1, gain=7.0)
    x = net.relu("relu2", x)
    x = net.lrn("norm2", x, **LRN)
    x = net.maxpool("pool2", x, 3, 2)
    x = net.conv_relu("conv3", "relu3", x, w.ch(512), 3, pad=1)
    x = net.conv_relu("conv4", "relu4", x, w.ch(512), 3, pad=1)
    x = net.conv_relu("conv5", "relu5", x, w.ch(512), 3, pad=1)
    x = net.maxpool("pool5", x, 3, 2)
    x = net.alexnet_classifier(x, w, gain=0.4)
    return net.model(x, title="VGG-CNN-M (Chatfield et al. 2014)",
                     source="Chatfield et al., BMVC 2014, Table 1 (CNN-M); "
                            "Caffe Model Zoo VGG_CNN_M deploy.prototxt",
                     variant=w.variant)
