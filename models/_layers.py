"""A small Caffe-flavoured layer builder that emits ONNX graphs with seeded random weights.

Every model replica in ``lrnconv.models`` is written as a sequence of calls on one
:class:`ReplicaBuilder`, one call per Caffe layer, so a builder reads like the published
``deploy.prototxt``. The builder

* names each ONNX node after its Caffe layer and each output tensor after the node
  (Caffe's in-place ``ReLU``/``Dropout`` tops become distinct tensors, because ONNX is SSA);
  weights are ``<layer>_w`` / ``<layer>_b``;
* tracks the static ``(C, H, W)`` shape of every tensor (the batch axis is the
  symbolic ``N``), so fully connected layers know their fan-in and Caffe's round-up
  pooling can be emitted for opsets that predate ``ceil_mode``;
* draws weights from a generator keyed by ``(seed, layer name)``, so a layer's weights
  depend only on the seed, its name and its shape, never on build order.

Weight scale (why the replicas exercise LRN). The default inputs of
``lrnconv.runtime.inputs.random_inputs`` are uniform in [-128, 128), like Caffe pixels minus the
mean; the LRN term ``alpha/size * sum(x^2)`` must then be comparable to the bias at
every LRN site, as it is on real images, or every LRN rewrite passes vacuously. So:

* filters are He-scaled: each filter has the exact norm ``gain * sqrt(2)`` (He's
  ``std = gain * sqrt(2 / fan_in)`` without the spread between filters), which keeps
  the second moment of pre-activations constant through ReLU layers when ``gain`` is 1;
* filters sum to zero over each block of input channels (a block is one branch of a
  concatenation, or the whole input): a layer answers the *variation* of its
  positive, post-ReLU input, as trained filters mostly do. With plain Gaussian filters
  the shared positive mean grows through the deep layers and every random input gets
  the same class;
* biases are small (std 0.1 against activations in the tens) and the classifier's is 0;
* each model sets per-layer gains: above 1 on a convolution that reads a max-pooled map
  before an LRN (pooling leaves mostly a mean, which the zero-sum filters remove, so
  the variation left is small), and a small classifier gain, chosen so that the logits
  spread over a few units: the softmax neither saturates nor stays uniform.

The gains are fixed numbers, so the weights depend only on the seed; ``tests/test_models.py``
measures the resulting LRN terms and softmax on the default inputs.

Opsets 7 to the newest the installed ``onnx`` knows are supported: from opset 10 Caffe's
round-up pooling is ``ceil_mode=1``; before it the same output size is reached with
explicit end padding (max pooling ignores padded cells). ``Dropout`` carries its ratio as
an attribute before opset 12 and as an input from opset 12 on; it is the identity at
inference either way.
"""
from __future__ import annotations

import math
import numbers
import zlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper

from lrnconv.base.errors import UsageError
from lrnconv.maths.geometry import caffe_pooled_extent

MIN_OPSET = 7
PRODUCER = "lrnconv.models"
BATCH = "N"

Shape = Tuple[int, ...]


def check_opset(opset: int) -> None:
    """Raise ``UsageError`` unless ``opset`` is one the builders can emit."""
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, numbers.Integral) \
            or not MIN_OPSET <= opset <= latest:
        raise UsageError(f"opset {opset!r} is not supported by the model builders; "
                         f"valid: {MIN_OPSET} to {latest}")


class ReplicaBuilder:
    """Builds one ONNX graph layer by layer, Caffe style (NCHW, float32).

    Args:
        name: graph name (the model's name).
        input_shape: ``(C, H, W)`` of the single input ``data``; the batch axis is ``N``.
        seed: seed of every weight draw. Defaults to 0.
        opset: default-domain opset to emit. Defaults to 13.
    """

    def __init__(self, name: str, input_shape: Shape, *, seed: int = 0, opset: int = 13,
                 input_name: str = "data"):
        check_opset(opset)
        self.name = name
        self.seed = int(seed)
        self.opset = int(opset)
        self.input_name = input_name
        self.nodes: List[onnx.NodeProto] = []
        self.weights: Dict[str, np.ndarray] = {}
        self.shapes: Dict[str, Shape] = {input_name: tuple(input_shape)}
        # channel blocks of each tensor: one per producer of a concatenation
        self.blocks: Dict[str, Tuple[int, ...]] = {input_name: (input_shape[0],)}

    # -- helpers --------------------------------------------------------------------
    def _rng(self, layer: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32(layer.encode("utf-8"))])

    def _fresh(self, name: str) -> str:
        if name in self.shapes:
            raise ValueError(f"tensor name '{name}' is already used in graph '{self.name}'")
        return name

    def _add_weight(self, name: str, array: np.ndarray) -> str:
        self._fresh(name)
        self.shapes[name] = tuple(array.shape)
        self.weights[name] = array
        return name

    def _he(self, layer: str, shape: Shape, blocks: Sequence[int], gain: float,
            bias_std: float) -> Tuple[np.ndarray, np.ndarray]:
        """He-scaled weights of ``shape`` (outputs first), zero-sum over each input block.

        Every filter has zero sum over each block of input channels (a block is the
        output of one producer: one branch of a concatenation, or the whole input), so a
        layer answers the variation of its positive, post-ReLU input rather than its mean,
        as trained filters mostly do; with plain Gaussian filters the shared mean wins in
        the deep layers and every random input gets the same class. Each filter is then
        scaled to the exact norm ``gain * sqrt(2)`` (He: ``std = gain * sqrt(2 / fan_in)``),
        so that every output channel sees the same gain.
        """
        rng = self._rng(layer)
        weight = rng.standard_normal(shape, dtype=np.float32)
        per_channel = weight.reshape(shape[0], shape[1], -1)
        start = 0
        for size in blocks:
            part = per_channel[:, start:start + size]
            part -= part.mean(axis=(1, 2), keepdims=True)
            start += size
        rows = weight.reshape(shape[0], -1)
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        rows *= (np.float32(gain * math.sqrt(2.0)) / norms)[:, None]
        bias = rng.standard_normal(shape[0], dtype=np.float32) * np.float32(bias_std)
        return weight, bias

    def _node(self, op: str, name: str, inputs: Sequence[str], shape: Shape,
              blocks: Optional[Tuple[int, ...]] = None, doc_string: Optional[str] = None,
              **attrs) -> str:
        out = self._fresh(name)
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=name,
                                           doc_string=doc_string, **attrs))
        self.shapes[out] = tuple(shape)
        if blocks is None:
            blocks = self.blocks.get(inputs[0], (shape[0],)) if inputs else (shape[0],)
            if sum(blocks) != shape[0]:
                blocks = (shape[0],)
        self.blocks[out] = blocks
        return out

    # -- layers ---------------------------------------------------------------------
    def conv(self, name: str, x: str, channels: int, kernel: int, *, stride: int = 1,
             pad: int = 0, group: int = 1, gain: float = 1.0, bias_std: float = 0.1) -> str:
        """Caffe ``Convolution``: square kernel, symmetric pad, ``group`` filter groups."""
        c, h, w = self.shapes[x]
        if c % group or channels % group:
            raise ValueError(f"{name}: group {group} does not divide {c} -> {channels} channels")
        blocks = self.blocks[x] if group == 1 else (c // group,)
        wshape = (channels, c // group, kernel, kernel)
        weight, bias = self._he(name, wshape, blocks, gain, bias_std)
        inputs = [x, self._add_weight(f"{name}_w", weight), self._add_weight(f"{name}_b", bias)]
        shape = (channels, caffe_pooled_extent(h, kernel, stride, pad, ceil=False, padded=False),
                 caffe_pooled_extent(w, kernel, stride, pad, ceil=False, padded=False))
        attrs = dict(kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
        if group != 1:
            attrs["group"] = group
        return self._node("Conv", name, inputs, shape, blocks=(channels,), **attrs)

    def relu(self, name: str, x: str) -> str:
        """Caffe ``ReLU`` (in place in Caffe; a new tensor here)."""
        return self._node("Relu", name, [x], self.shapes[x])

    def lrn(self, name: str, x: str, *, size: int, alpha: float, beta: float, bias: float) -> str:
        """Caffe ``LRN`` ACROSS_CHANNELS (``local_size``, ``alpha``, ``beta``, ``k`` = ``bias``)."""
        doc = (f"Caffe LRN layer '{name}': ACROSS_CHANNELS, local_size {size}, alpha {alpha:g}, "
               f"beta {beta:g}, k {bias:g}")
        return self._node("LRN", name, [x], self.shapes[x], size=size, alpha=alpha,
                          beta=beta, bias=bias, doc_string=doc)

    def _pool(self, op: str, name: str, x: str, kernel: int, stride: int, pad: int,
              ceil: bool) -> str:
        c, h, w = self.shapes[x]
        oh = caffe_pooled_extent(h, kernel, stride, pad, ceil=ceil)
        ow = caffe_pooled_extent(w, kernel, stride, pad, ceil=ceil)
        attrs = dict(kernel_shape=[kernel, kernel], strides=[stride, stride])
        if ceil and self.opset >= 10:
            attrs["ceil_mode"] = 1
            attrs["pads"] = [pad] * 4
        else:
            # Floor mode with enough end padding to produce Caffe's rounded-up size.
            end_h = (oh - 1) * stride + kernel - h - pad
            end_w = (ow - 1) * stride + kernel - w - pad
            if op != "MaxPool" and (end_h > pad or end_w > pad):
                raise ValueError(f"{name}: round-up average pooling needs opset >= 10")
            attrs["pads"] = [pad, pad, max(end_h, 0), max(end_w, 0)]
        if not any(attrs["pads"]):
            del attrs["pads"]
        return self._node(op, name, [x], (c, oh, ow), **attrs)

    def maxpool(self, name: str, x: str, kernel: int, stride: int, *, pad: int = 0,
                ceil: bool = True) -> str:
        """Caffe ``Pooling`` MAX; Caffe rounds the output size up (``ceil``) by default."""
        return self._pool("MaxPool", name, x, kernel, stride, pad, ceil)

    def avgpool(self, name: str, x: str, kernel: int, stride: int, *, pad: int = 0,
                ceil: bool = True) -> str:
        """Caffe ``Pooling`` AVE (padding excluded from the average, ONNX's default)."""
        return self._pool("AveragePool", name, x, kernel, stride, pad, ceil)

    def concat(self, name: str, inputs: Sequence[str]) -> str:
        """Caffe ``Concat`` along channels."""
        shapes = [self.shapes[i] for i in inputs]
        if len({s[1:] for s in shapes}) != 1:
            raise ValueError(f"{name}: spatial shapes differ: {shapes}")
        shape = (sum(s[0] for s in shapes),) + shapes[0][1:]
        return self._node("Concat", name, inputs, shape, blocks=tuple(s[0] for s in shapes), axis=1)

    def fc(self, name: str, x: str, outputs: int, *, gain: float = 1.0,
           bias_std: float = 0.1) -> str:
        """Caffe ``InnerProduct``: ``Flatten`` (when the input is a feature map) + ``Gemm``."""
        shape = self.shapes[x]
        blocks = self.blocks[x]
        if len(shape) > 1:
            x = self._node("Flatten", f"{name}_flatten", [x], (int(np.prod(shape)),), axis=1)
        # weights as [outputs, channels, positions] so blocks of channels stay contiguous
        wshape = (outputs, shape[0], int(np.prod(shape[1:])))
        weight, bias = self._he(name, wshape, blocks, gain, bias_std)
        weight = weight.reshape(outputs, -1)
        inputs = [x, self._add_weight(f"{name}_w", weight), self._add_weight(f"{name}_b", bias)]
        return self._node("Gemm", name, inputs, (outputs,), transB=1)

    def dropout(self, name: str, x: str, ratio: float) -> str:
        """Caffe ``Dropout``: the identity at inference, kept to mirror the deploy net."""
        if self.opset >= 12:
            ratio_name = self._add_weight(f"{name}_ratio", np.array(ratio, dtype=np.float32))
            return self._node("Dropout", name, [x, ratio_name], self.shapes[x])
        return self._node("Dropout", name, [x], self.shapes[x], ratio=float(ratio))

    def softmax(self, name: str, x: str) -> str:
        """Caffe ``Softmax`` over the class axis of ``[N, K]`` scores."""
        return self._node("Softmax", name, [x], self.shapes[x], axis=1)

    # -- blocks shared by the replicas --------------------------------------------------
    def conv_relu(self, conv: str, relu: str, x: str, channels: int, kernel: int, **conv_args) -> str:
        """A Convolution followed by its (in-place, in Caffe) ReLU."""
        return self.relu(relu, self.conv(conv, x, channels, kernel, **conv_args))

    def alexnet_classifier(self, x: str, widths: "Widths", *, gain: float) -> str:
        """The AlexNet-family head: fc6, fc7 (4096, ReLU, dropout 0.5), fc8, prob.

        ``gain`` scales fc8 so the logits spread over a few units without saturating.
        """
        for i in (6, 7):
            x = self.dropout(f"drop{i}", self.relu(f"relu{i}", self.fc(f"fc{i}", x, widths.units(4096))), 0.5)
        return self.softmax("prob", self.fc("fc8", x, widths.classes, gain=gain, bias_std=0.0))

    # -- model ----------------------------------------------------------------------
    def model(self, output: str, *, title: str, source: str, variant: str) -> onnx.ModelProto:
        """The finished model: ``data`` its only input, ``output`` its only output.

        Args:
            output: the tensor to expose (``prob``).
            title: the model's human name, for the doc string.
            source: where the layer configuration comes from, for the doc string.
            variant: the width variant, recorded in ``metadata_props``.
        """
        def info(tensor: str) -> onnx.ValueInfoProto:
            return helper.make_tensor_value_info(tensor, TensorProto.FLOAT,
                                                 [BATCH, *self.shapes[tensor]])

        opsets = [helper.make_opsetid("", self.opset)]
        ir_version = helper.find_min_ir_version_for(opsets)
        inputs = [info(self.input_name)]
        if ir_version < 4:  # IR 3 requires every initializer to be listed as a graph input
            inputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape))
                       for name, array in self.weights.items()]
        graph = helper.make_graph(self.nodes, self.name, inputs, [info(output)])
        for name, array in self.weights.items():
            # written in place: numpy_helper + make_graph would copy hundreds of MB twice
            tensor = graph.initializer.add()
            tensor.name = name
            tensor.data_type = TensorProto.FLOAT
            tensor.dims.extend(array.shape)
            tensor.raw_data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        doc = (f"Random-weight replica of {title} for LRN testing: layer configuration from "
               f"{source}; seeded random weights (seed {self.seed}, variant '{variant}'), "
               f"not trained.")
        model = helper.make_model(graph, opset_imports=opsets, producer_name=PRODUCER,
                                  doc_string=doc, ir_version=ir_version)
        helper.set_model_props(model, {"lrnconv.model": self.name, "lrnconv.variant": variant,
                                       "lrnconv.seed": str(self.seed), "source": source})
        return model


class Widths:
    """Channel and unit counts for a variant: ``full`` keeps the published widths,
    ``small`` divides channel counts by 8 and fully connected widths by 16 (min 1).

    Args:
        variant: ``"full"`` or ``"small"``.
    """

    VARIANTS = ("full", "small")

    def __init__(self, variant: str):
        if variant not in self.VARIANTS:
            raise UsageError(f"unknown model variant '{variant}'; "
                             f"valid: {', '.join(self.VARIANTS)}")
        self.variant = variant
        self.small = variant == "small"
        self.classes = 100 if self.small else 1000

    def ch(self, channels: int) -> int:
        """A convolution's output channel count."""
        return max(1, channels // 8) if self.small else channels

    def units(self, units: int) -> int:
        """A hidden fully connected layer's width."""
        return max(1, units // 16) if self.small else units

