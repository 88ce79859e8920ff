"""Caffe layer -> ONNX (opset 13) converters, and the registry that maps type names to them.

Each converter takes a :class:`~lrnconv.formats.caffe.graph.LayerContext`, adds the nodes that
compute the layer exactly as Caffe's CPU implementation does (up to float rounding),
and returns ``(tensor, shape)`` for each top. Where Caffe and ONNX differ, the
converter says how it closes the gap:

- **Pooling**: Caffe rounds the output size up (``round_mode: CEIL``, the default) and
  then drops a last window that would start in the bottom/right padding
  (``if pad and (pooled - 1) * stride >= size + pad: pooled -= 1``). The ONNX node gets
  explicit end pads that produce exactly that size (``ceil_mode`` stays 0). ``AVE``
  pooling divides by the window clipped to the *padded* input: when the last window
  hangs past the padding, the input is zero-padded by ``pad`` with a ``Pad`` node and
  pooled with ``count_include_pad = 0`` over the overhang, so the divisor is Caffe's.
- **LRN** ``ACROSS_CHANNELS`` is ONNX ``LRN`` with ``bias = k``.
  ``WITHIN_CHANNEL`` has no ONNX op; it becomes Caffe's own decomposition
  ``x * (1 + alpha * mean_{size x size}(x^2))^-beta`` (zero pad ``(size - 1) / 2``,
  padded cells counted, ``k`` ignored as Caffe ignores it).
- **BatchNorm** divides the stored mean and variance by the moving-average factor
  (blob 2) and uses a zero mean and variance when that factor is 0, as Caffe does.
  With ``use_global_stats: false`` Caffe normalises by the statistics of the batch;
  so does the import (``ReduceMean`` over batch and spatial axes), with a note.
- **Dropout** and **Split** add no node: their tops are the bottom's tensor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...base.errors import InvalidSite
from ...base.text import shape_text
from ...graph.families import Family
from ...maths.geometry import caffe_pooled_extent
from .graph import LayerContext, Shape, axis_index
from .params import ParamSpec
from .schema import EltwiseOp, NormRegion, PoolMethod, RoundMode

Outputs = List[Tuple[str, Shape]]

__all__ = ["Converter", "CONVERTERS", "supported_types"]


@dataclass(frozen=True)
class Converter:
    """A converter function and how many bottoms and tops its layer type takes."""

    fn: Callable[[LayerContext], Outputs]
    bottoms: Tuple[int, Optional[int]] = (1, 1)   # (min, max); max None: no limit
    tops: Tuple[int, Optional[int]] = (1, 1)


def _prod(values: Sequence[int]) -> int:
    return int(np.prod(values, dtype=np.int64)) if len(values) else 1


def _one(value: float) -> np.ndarray:
    return np.array(value, dtype=np.float32)


def _int64(values: Sequence[int]) -> np.ndarray:
    return np.array(list(values), dtype=np.int64)


# --------------------------------------------------------------------------------------
# convolution


def _conv_geometry(ctx: LayerContext, p, n_spatial: int):
    """Kernel, pads, strides, dilations of a convolution_param (Caffe's BaseConvolution)."""

    def per_axis(values, default, what):
        values = [int(v) for v in values]
        if not values:
            if default is None:
                raise ctx.bad(f"{what} is missing")
            return [default] * n_spatial
        if len(values) == 1:
            return values * n_spatial
        if len(values) == n_spatial:
            return values
        raise ctx.bad(f"{what} has {len(values)} values; give 1 or one per spatial axis "
                      f"({n_spatial})")

    def two_d(h, w, what):
        if n_spatial != 2:
            raise ctx.bad(f"{h}/{w} apply to 2-D convolutions only")
        return [int(getattr(p, h)), int(getattr(p, w))]

    if p.HasField("kernel_h") or p.HasField("kernel_w"):
        if not (p.HasField("kernel_h") and p.HasField("kernel_w")):
            raise ctx.bad("kernel_h and kernel_w must be given together")
        kernel = two_d("kernel_h", "kernel_w", "kernel")
    else:
        kernel = per_axis(p.kernel_size, None, "kernel_size")
    if p.HasField("pad_h") or p.HasField("pad_w"):
        pads = two_d("pad_h", "pad_w", "pad")
    else:
        pads = per_axis(p.pad, 0, "pad")
    if p.HasField("stride_h") or p.HasField("stride_w"):
        if not (p.HasField("stride_h") and p.HasField("stride_w")):
            raise ctx.bad("stride_h and stride_w must be given together")
        strides = two_d("stride_h", "stride_w", "stride")
    else:
        strides = per_axis(p.stride, 1, "stride")
    dilations = per_axis(p.dilation, 1, "dilation")
    if min(kernel) <= 0 or min(strides) <= 0 or min(dilations) <= 0:
        raise ctx.bad(f"kernel {kernel}, stride {strides} and dilation {dilations} must be "
                      f"positive")
    return kernel, pads, strides, dilations


def _conv_common(ctx: LayerContext):
    p = ctx.layer.convolution_param
    x = ctx.shape
    if len(x) < 3:
        raise ctx.bad(f"needs an input with spatial axes, got shape {shape_text(x)}")
    if axis_index(ctx, int(p.axis), len(x)) != 1:
        raise ctx.unsupported(f"channel axis {p.axis} (only axis 1 converts to ONNX)")
    kernel, pads, strides, dilations = _conv_geometry(ctx, p, len(x) - 2)
    group, c_in, c_out = int(p.group), x[1], int(p.num_output)
    if c_out <= 0:
        raise ctx.bad("num_output is missing or 0")
    if group <= 0 or c_in % group or c_out % group:
        raise ctx.bad(f"group {group} must divide the input channels ({c_in}) and "
                      f"num_output ({c_out})")
    return p, x, kernel, pads, strides, dilations, group, c_in, c_out


def _conv_node(ctx, op, weight_spec, p, c_out, attrs, out_shape) -> Outputs:
    specs = [weight_spec] + ([ParamSpec("bias", (c_out,), "bias")] if p.bias_term else [])
    blobs = ctx.params(specs)
    inputs = [ctx.inputs[0], ctx.const("weight", blobs[0])]
    if p.bias_term:
        inputs.append(ctx.const("bias", blobs[1]))
    if min(out_shape[2:]) <= 0:
        raise ctx.bad(f"output shape {shape_text(out_shape)} is empty for input "
                      f"{shape_text(ctx.shape)}")
    ctx.node(op, inputs, [ctx.top()], **attrs)
    return [(ctx.top(), out_shape)]


def convolution(ctx: LayerContext) -> Outputs:
    p, x, kernel, pads, strides, dilations, group, c_in, c_out = _conv_common(ctx)
    out = tuple((size + 2 * pad - (d * (k - 1) + 1)) // s + 1
                for size, k, pad, s, d in zip(x[2:], kernel, pads, strides, dilations))
    weight = ParamSpec("weight", (c_out, c_in // group, *kernel), "he",
                       c_in // group * _prod(kernel))
    attrs = dict(kernel_shape=kernel, pads=pads + pads, strides=strides,
                 dilations=dilations, group=group)
    return _conv_node(ctx, "Conv", weight, p, c_out, attrs, (x[0], c_out) + out)


def deconvolution(ctx: LayerContext) -> Outputs:
    p, x, kernel, pads, strides, dilations, group, c_in, c_out = _conv_common(ctx)
    out = tuple(s * (size - 1) + d * (k - 1) + 1 - 2 * pad
                for size, k, pad, s, d in zip(x[2:], kernel, pads, strides, dilations))
    fan_in = max(1, c_in // group * _prod(kernel) // _prod(strides))
    weight = ParamSpec("weight", (c_in, c_out // group, *kernel), "he", fan_in)
    attrs = dict(kernel_shape=kernel, pads=pads + pads, strides=strides,
                 dilations=dilations, group=group)
    return _conv_node(ctx, "ConvTranspose", weight, p, c_out, attrs, (x[0], c_out) + out)


def inner_product(ctx: LayerContext) -> Outputs:
    p = ctx.layer.inner_product_param
    x = ctx.shape
    axis = axis_index(ctx, int(p.axis), len(x))
    k, n = _prod(x[axis:]), int(p.num_output)
    if n <= 0:
        raise ctx.bad("num_output is missing or 0")
    weight_shape = (k, n) if p.transpose else (n, k)
    specs = [ParamSpec("weight", weight_shape, "he", k)]
    if p.bias_term:
        specs.append(ParamSpec("bias", (n,), "bias"))
    blobs = ctx.params(specs)
    out_shape = tuple(x[:axis]) + (n,)
    top = ctx.top()
    if axis == 1:
        flat = ctx.inputs[0]
        if len(x) > 2:
            flat = ctx.tmp("flatten")
            ctx.node("Flatten", [ctx.inputs[0]], [flat], step="flatten", axis=1)
        inputs = [flat, ctx.const("weight", blobs[0])]
        if p.bias_term:
            inputs.append(ctx.const("bias", blobs[1]))
        ctx.node("Gemm", inputs, [top], transB=0 if p.transpose else 1)
        return [(top, out_shape)]
    # axis 0 or >= 2: (prefix..., K) @ (K, N) with MatMul.
    if axis == 0:
        ctx.pin_batch("takes the batch axis into its inner product (axis: 0)")
        ctx.keeps_batch = False
    rows = ctx.inputs[0]
    if axis != len(x) - 1:
        rows = ctx.tmp("rows")
        ctx.node("Reshape", [ctx.inputs[0], ctx.const("rows_shape", _int64([0] * axis + [-1]))],
                 [rows], step="rows")
    weight = blobs[0] if p.transpose else np.ascontiguousarray(blobs[0].T)
    product = ctx.tmp("matmul") if p.bias_term else top
    ctx.node("MatMul", [rows, ctx.const("weight", weight)], [product],
             step="matmul" if p.bias_term else None)
    if p.bias_term:
        ctx.node("Add", [product, ctx.const("bias", blobs[1])], [top])
    return [(top, out_shape)]


# --------------------------------------------------------------------------------------
# activations and element-wise


def relu(ctx: LayerContext) -> Outputs:
    slope = float(ctx.layer.relu_param.negative_slope)
    if slope != 0.0:
        ctx.node("LeakyRelu", ctx.inputs, [ctx.top()], alpha=slope)
    else:
        ctx.node("Relu", ctx.inputs, [ctx.top()])
    return [(ctx.top(), ctx.shape)]


def prelu(ctx: LayerContext) -> Outputs:
    x = ctx.shape
    if len(x) < 2:
        raise ctx.bad(f"needs an input with a channel axis, got shape {shape_text(x)}")
    shared = bool(ctx.layer.prelu_param.channel_shared)
    shape = (1,) if shared else (x[1],)
    (slope,) = ctx.params([ParamSpec("slope", shape, "slope")])
    dims = shape if shared else shape + (1,) * (len(x) - 2)
    ctx.node("PRelu", [ctx.inputs[0], ctx.const("slope", slope, dims)], [ctx.top()])
    return [(ctx.top(), x)]


def _unary(op_type: str):
    def convert(ctx: LayerContext) -> Outputs:
        ctx.node(op_type, ctx.inputs, [ctx.top()])
        return [(ctx.top(), ctx.shape)]
    convert.__name__ = op_type.lower()
    convert.__doc__ = f"Caffe's layer of the same maths as ONNX {op_type}."
    return convert


def power(ctx: LayerContext) -> Outputs:
    """``y = (shift + scale * x) ^ power``, only the steps that are not identities."""
    p = ctx.layer.power_param
    steps = []
    if float(p.scale) != 1.0:
        steps.append(("Mul", "scale", float(p.scale)))
    if float(p.shift) != 0.0:
        steps.append(("Add", "shift", float(p.shift)))
    if float(p.power) != 1.0:
        steps.append(("Pow", "power", float(p.power)))
    if not steps:
        ctx.node("Identity", ctx.inputs, [ctx.top()])
        return [(ctx.top(), ctx.shape)]
    current = ctx.inputs[0]
    for i, (op, role, value) in enumerate(steps):
        last = i == len(steps) - 1
        out = ctx.top() if last else ctx.tmp(role)
        ctx.node(op, [current, ctx.const(role, _one(value))], [out],
                 step=None if last else role)
        current = out
    return [(ctx.top(), ctx.shape)]


def eltwise(ctx: LayerContext) -> Outputs:
    p = ctx.layer.eltwise_param
    shape = ctx.shape
    for other in ctx.shapes[1:]:
        if other != shape:
            raise ctx.bad(f"bottoms have different shapes {shape_text(shape)} and "
                          f"{shape_text(other)}")
    coeffs = [float(c) for c in p.coeff]
    op = p.operation
    if coeffs and op != EltwiseOp.SUM:
        raise ctx.bad("coeff applies to operation SUM only")
    if coeffs and len(coeffs) != len(ctx.inputs):
        raise ctx.bad(f"has {len(coeffs)} coeff values for {len(ctx.inputs)} bottoms")
    top = ctx.top()
    if op == EltwiseOp.SUM:
        terms = []
        for i, name in enumerate(ctx.inputs):
            if coeffs and coeffs[i] != 1.0:
                term = ctx.tmp(f"coeff{i}")
                ctx.node("Mul", [name, ctx.const(f"coeff{i}", _one(coeffs[i]))], [term],
                         step=f"coeff{i}")
                name = term
            terms.append(name)
        ctx.node("Sum", terms, [top])
    elif op == EltwiseOp.MAX:
        ctx.node("Max", ctx.inputs, [top])
    elif op == EltwiseOp.PROD:
        current = ctx.inputs[0]
        if len(ctx.inputs) == 1:
            ctx.node("Identity", [current], [top])
        for i, name in enumerate(ctx.inputs[1:], start=1):
            last = i == len(ctx.inputs) - 1
            out = top if last else ctx.tmp(f"prod{i}")
            ctx.node("Mul", [current, name], [out], step=None if last else f"prod{i}")
            current = out
    else:
        raise ctx.unsupported(f"operation {op}")
    return [(top, shape)]


# --------------------------------------------------------------------------------------
# pooling and LRN


def _pool_geometry(ctx: LayerContext, p):
    """Kernel, pads and strides of a pooling_param, read as Caffe's PoolingLayer reads them."""
    if p.HasField("kernel_size") == (p.HasField("kernel_h") or p.HasField("kernel_w")):
        raise ctx.bad("give kernel_size, or kernel_h and kernel_w (exactly one form)")
    if p.HasField("kernel_size"):
        kernel = [int(p.kernel_size)] * 2
    elif p.HasField("kernel_h") and p.HasField("kernel_w"):
        kernel = [int(p.kernel_h), int(p.kernel_w)]
    else:
        raise ctx.bad("kernel_h and kernel_w must be given together")
    pads = ([int(p.pad_h), int(p.pad_w)] if p.HasField("pad_h") or p.HasField("pad_w")
            else [int(p.pad)] * 2)
    strides = ([int(p.stride_h), int(p.stride_w)] if p.HasField("stride_h") or
               p.HasField("stride_w") else [int(p.stride)] * 2)
    if min(kernel) <= 0 or min(strides) <= 0:
        raise ctx.bad(f"kernel {kernel} and stride {strides} must be positive")
    if any(pad >= k for pad, k in zip(pads, kernel)):
        raise ctx.bad(f"pad {pads} must be smaller than the kernel {kernel}")
    return kernel, pads, strides


def pooling(ctx: LayerContext) -> Outputs:
    p = ctx.layer.pooling_param
    x = ctx.shape
    if len(x) != 4:
        raise ctx.bad(f"Caffe pools 4-D inputs only, got shape {shape_text(x)}")
    method = p.pool
    if method == PoolMethod.STOCHASTIC:
        raise ctx.unsupported("pool: STOCHASTIC (no ONNX equivalent)")
    if len(ctx.layer.top) > 1:
        raise ctx.unsupported("a second top (the max-pooling mask)")
    top = ctx.top()
    if p.global_pooling:
        ctx.node("GlobalMaxPool" if method == PoolMethod.MAX else "GlobalAveragePool", ctx.inputs, [top])
        return [(top, (x[0], x[1], 1, 1))]
    kernel, pads, strides = _pool_geometry(ctx, p)
    if p.HasField("round_mode"):
        ceil = p.round_mode == RoundMode.CEIL
    else:
        ceil = bool(p.ceil_mode)   # OpenCV's dialect; defaults to true, Caffe's CEIL
    out, ends = [], []
    for size, k, pad, s in zip(x[2:], kernel, pads, strides):
        if size + 2 * pad < k:
            raise ctx.bad(f"kernel {kernel} with pad {pads} exceeds the input "
                          f"{shape_text(x)}")
        pooled = caffe_pooled_extent(size, k, s, pad, ceil=ceil, padded=any(pads))
        end = (pooled - 1) * s + k - size - pad      # reach past the input's end
        if end >= k:
            raise ctx.unsupported(f"its last window (stride {strides}, kernel {kernel}) "
                                  f"lies wholly outside the input {shape_text(x)}; Caffe "
                                  f"outputs a meaningless value there")
        out.append(pooled)
        ends.append(end)
    out_shape = (x[0], x[1], *out)
    attrs = dict(kernel_shape=kernel, strides=strides)
    if method == PoolMethod.MAX:
        ctx.node("MaxPool", ctx.inputs, [top], pads=pads + [max(e, pd) for e, pd in
                                                        zip(ends, pads)], **attrs)
        return [(top, out_shape)]
    overhang = [max(e - pd, 0) for e, pd in zip(ends, pads)]
    if not any(overhang):
        # Every window lies in the padded input: Caffe divides by the full kernel area.
        ctx.node("AveragePool", ctx.inputs, [top], pads=pads + pads, count_include_pad=1,
                 **attrs)
        return [(top, out_shape)]
    source = ctx.inputs[0]
    if any(pads):
        source = ctx.tmp("pad")
        pad_amounts = _int64([0, 0, pads[0], pads[1], 0, 0, pads[0], pads[1]])
        ctx.node("Pad", [ctx.inputs[0], ctx.const("pads", pad_amounts)], [source],
                 step="pad", mode="constant")
    ctx.node("AveragePool", [source], [top], pads=[0, 0] + overhang, count_include_pad=0,
             **attrs)
    return [(top, out_shape)]


def lrn(ctx: LayerContext) -> Outputs:
    p = ctx.layer.lrn_param
    x = ctx.shape
    size, alpha, beta, k = int(p.local_size), float(p.alpha), float(p.beta), float(p.k)
    if size <= 0 or size % 2 == 0:
        raise InvalidSite(f"{ctx.where}: local_size {size} is not valid; Caffe requires a "
                          f"positive odd local_size")
    if len(x) != 4:
        raise ctx.bad(f"Caffe's LRN takes 4-D inputs, got shape {shape_text(x)}")
    top = ctx.top()
    if p.norm_region == NormRegion.ACROSS_CHANNELS:
        ctx.node("LRN", ctx.inputs, [top], size=size, alpha=alpha, beta=beta, bias=k)
        ctx.site(Family.CAFFE_ACROSS, size, alpha, beta, k, ctx.inputs[0], top)
        return [(top, x)]
    # WITHIN_CHANNEL: x * (1 + alpha * avg_{size x size}(x^2)) ^ -beta, k unused by Caffe.
    if k != 1.0:
        ctx.note(f"layer '{ctx.name}' (LRN WITHIN_CHANNEL) sets k: {k:g}; Caffe ignores k "
                 f"for WITHIN_CHANNEL (the shift is 1) and so does the import")
    pad = (size - 1) // 2
    square, mean, scaled, shifted, factor = (ctx.tmp(s) for s in
                                             ("square", "window_mean", "scaled", "shifted",
                                              "factor"))
    ctx.node("Mul", [ctx.inputs[0], ctx.inputs[0]], [square], step="square")
    ctx.node("AveragePool", [square], [mean], step="window_mean", kernel_shape=[size, size],
             pads=[pad] * 4, strides=[1, 1], count_include_pad=1)
    ctx.node("Mul", [mean, ctx.const("alpha", _one(alpha))], [scaled], step="scaled")
    ctx.node("Add", [scaled, ctx.const("one", _one(1.0))], [shifted], step="shifted")
    ctx.node("Pow", [shifted, ctx.const("neg_beta", _one(-beta))], [factor], step="factor")
    ctx.node("Mul", [ctx.inputs[0], factor], [top])
    ctx.site(Family.CAFFE_WITHIN, size, alpha, beta, 1.0, ctx.inputs[0], top)
    return [(top, x)]


# --------------------------------------------------------------------------------------
# normalisation and scaling


def batch_norm(ctx: LayerContext) -> Outputs:
    p = ctx.layer.batch_norm_param
    x = ctx.shape
    if len(x) < 2:
        raise ctx.bad(f"needs an input with a channel axis, got shape {shape_text(x)}")
    c = x[1]
    mean, var, factor = ctx.params([ParamSpec("mean", (c,), "mean"),
                                    ParamSpec("variance", (c,), "var"),
                                    ParamSpec("moving_average_factor", (1,), "one")])
    eps = float(p.eps)
    top = ctx.top()
    use_global = p.use_global_stats if p.HasField("use_global_stats") else True
    if use_global:
        f = np.float32(factor.reshape(-1)[0])
        scale = np.float32(0.0) if f == 0 else np.float32(1.0) / f
        ctx.node("BatchNormalization",
                 [ctx.inputs[0], ctx.const("scale", np.ones(c, np.float32)),
                  ctx.const("bias", np.zeros(c, np.float32)),
                  ctx.const("mean", mean * scale), ctx.const("variance", var * scale)],
                 [top], epsilon=eps)
        return [(top, x)]
    ctx.note(f"layer '{ctx.name}' (BatchNorm) has use_global_stats: false, so Caffe "
             f"normalises by the statistics of each input batch; the import does the same")
    axes = [0] + list(range(2, len(x)))
    names = {s: ctx.tmp(s) for s in ("mean", "centered", "square", "variance", "shifted",
                                     "std")}
    ctx.node("ReduceMean", [ctx.inputs[0]], [names["mean"]], step="mean", axes=axes,
             keepdims=1)
    ctx.node("Sub", [ctx.inputs[0], names["mean"]], [names["centered"]], step="centered")
    ctx.node("Mul", [names["centered"], names["centered"]], [names["square"]], step="square")
    ctx.node("ReduceMean", [names["square"]], [names["variance"]], step="variance",
             axes=axes, keepdims=1)
    ctx.node("Add", [names["variance"], ctx.const("eps", _one(eps))], [names["shifted"]],
             step="shifted")
    ctx.node("Sqrt", [names["shifted"]], [names["std"]], step="std")
    ctx.node("Div", [names["centered"], names["std"]], [top])
    return [(top, x)]


def _operand_range(ctx: LayerContext, param, two_bottoms: bool):
    """(axis, shape) of the Scale/Bias operand along bottom 0 (Caffe's Scale/Bias setup)."""
    x = ctx.shape
    if two_bottoms:
        operand = ctx.shapes[1]
        axis = 0 if len(operand) == 0 else axis_index(ctx, int(param.axis), len(x))
        if tuple(x[axis:axis + len(operand)]) != tuple(operand):
            raise ctx.bad(f"bottom 1 of shape {shape_text(operand)} does not match bottom 0 "
                          f"{shape_text(x)} from axis {axis}")
        return axis, tuple(operand)
    num_axes = int(param.num_axes)
    if num_axes == 0:
        return 0, ()
    axis = axis_index(ctx, int(param.axis), len(x))
    if num_axes < -1 or (num_axes > 0 and axis + num_axes > len(x)):
        raise ctx.bad(f"num_axes {num_axes} from axis {axis} does not fit the input "
                      f"{shape_text(x)}")
    end = len(x) if num_axes == -1 else axis + num_axes
    if axis == 0:
        ctx.pin_batch("has a parameter over the batch axis (axis: 0)")
    return axis, tuple(x[axis:end])


def _broadcast_dims(ctx: LayerContext, axis: int, operand: Shape) -> Tuple[int, ...]:
    """The operand's dims followed by ones up to the input's rank (ONNX aligns right)."""
    if not operand:
        return ()
    return tuple(operand) + (1,) * (len(ctx.shape) - axis - len(operand))


def _operand_input(ctx: LayerContext, axis: int, operand: Shape) -> str:
    """Bottom 1, reshaped to broadcast against bottom 0 from ``axis``."""
    trailing = len(ctx.shape) - axis - len(operand)
    if not operand or trailing == 0:
        return ctx.inputs[1]
    reshaped = ctx.tmp("broadcast")
    target = _int64([0] * len(operand) + [1] * trailing)
    ctx.node("Reshape", [ctx.inputs[1], ctx.const("broadcast_shape", target)], [reshaped],
             step="broadcast")
    return reshaped


def scale(ctx: LayerContext) -> Outputs:
    p = ctx.layer.scale_param
    two = len(ctx.inputs) == 2
    axis, operand = _operand_range(ctx, p, two)
    dims = _broadcast_dims(ctx, axis, operand)
    specs = [] if two else [ParamSpec("scale", operand, "scale")]
    if p.bias_term:
        specs.append(ParamSpec("bias", operand, "bias"))
    blobs = ctx.params(specs)
    factor = _operand_input(ctx, axis, operand) if two else ctx.const("scale", blobs[0], dims)
    top = ctx.top()
    if not p.bias_term:
        ctx.node("Mul", [ctx.inputs[0], factor], [top])
        return [(top, ctx.shape)]
    scaled = ctx.tmp("scaled")
    ctx.node("Mul", [ctx.inputs[0], factor], [scaled], step="scaled")
    ctx.node("Add", [scaled, ctx.const("bias", blobs[-1], dims)], [top])
    return [(top, ctx.shape)]


def bias(ctx: LayerContext) -> Outputs:
    p = ctx.layer.bias_param
    two = len(ctx.inputs) == 2
    axis, operand = _operand_range(ctx, p, two)
    if two:
        term = _operand_input(ctx, axis, operand)
    else:
        (blob,) = ctx.params([ParamSpec("bias", operand, "bias")])
        term = ctx.const("bias", blob, _broadcast_dims(ctx, axis, operand))
    ctx.node("Add", [ctx.inputs[0], term], [ctx.top()])
    return [(ctx.top(), ctx.shape)]


# --------------------------------------------------------------------------------------
# shape layers


def softmax(ctx: LayerContext) -> Outputs:
    axis = axis_index(ctx, int(ctx.layer.softmax_param.axis), len(ctx.shape))
    ctx.node("Softmax", ctx.inputs, [ctx.top()], axis=axis)
    return [(ctx.top(), ctx.shape)]


def _axis_or_legacy_dim(ctx: LayerContext, param, legacy: str) -> int:
    """Concat/Slice axis: the legacy ``concat_dim``/``slice_dim`` (non-negative) wins over ``axis``."""
    rank = len(ctx.shape)
    if param.HasField(legacy):
        axis = int(getattr(param, legacy))
        if axis >= rank:
            raise ctx.bad(f"{legacy} {axis} is out of range for shape {shape_text(ctx.shape)}")
        return axis
    return axis_index(ctx, int(param.axis), rank)


def concat(ctx: LayerContext) -> Outputs:
    p = ctx.layer.concat_param
    x = ctx.shape
    axis = _axis_or_legacy_dim(ctx, p, "concat_dim")
    for other in ctx.shapes[1:]:
        if len(other) != len(x) or any(a != b for i, (a, b) in enumerate(zip(x, other))
                                       if i != axis):
            raise ctx.bad(f"cannot concatenate {shape_text(x)} and {shape_text(other)} "
                          f"along axis {axis}")
    if axis == 0:
        ctx.keeps_batch = False
    out = list(x)
    out[axis] = sum(s[axis] for s in ctx.shapes)
    ctx.node("Concat", ctx.inputs, [ctx.top()], axis=axis)
    return [(ctx.top(), tuple(out))]


def slice_(ctx: LayerContext) -> Outputs:
    p = ctx.layer.slice_param
    x = ctx.shape
    axis = _axis_or_legacy_dim(ctx, p, "slice_dim")
    n, dim = len(ctx.layer.top), x[axis]
    points = [int(v) for v in p.slice_point]
    if points:
        if len(points) != n - 1 or points != sorted(set(points)) or not 0 < points[0] or \
                points[-1] >= dim:
            raise ctx.bad(f"slice_point {points} must be {n - 1} increasing values inside "
                          f"(0, {dim}) for {n} tops")
        bounds = [0] + points + [dim]
        sizes = [b - a for a, b in zip(bounds, bounds[1:])]
    else:
        if dim % n:
            raise ctx.bad(f"axis {axis} of size {dim} does not split evenly into {n} tops")
        sizes = [dim // n] * n
    if axis == 0:
        ctx.pin_batch("slices the batch axis at fixed points")
        ctx.keeps_batch = False
    tops = [ctx.top(i) for i in range(n)]
    ctx.node("Split", [ctx.inputs[0], ctx.const("split", _int64(sizes))], tops, axis=axis)
    outs = []
    for name, size in zip(tops, sizes):
        shape = list(x)
        shape[axis] = size
        outs.append((name, tuple(shape)))
    return outs


def flatten(ctx: LayerContext) -> Outputs:
    p = ctx.layer.flatten_param
    x = ctx.shape
    start = axis_index(ctx, int(p.axis), len(x))
    end = axis_index(ctx, int(p.end_axis), len(x), what="end_axis")
    if end < start - 1:
        raise ctx.bad(f"end_axis {p.end_axis} comes before axis {p.axis}")
    out = tuple(x[:start]) + (_prod(x[start:end + 1]),) + tuple(x[end + 1:])
    top = ctx.top()
    if start == 1 and end == len(x) - 1:
        ctx.node("Flatten", ctx.inputs, [top], axis=1)
        return [(top, out)]
    if start == 0:
        ctx.keeps_batch = False
    target = _int64([0] * start + [-1] + list(x[end + 1:]))
    ctx.node("Reshape", [ctx.inputs[0], ctx.const("shape", target)], [top])
    return [(top, out)]


def reshape(ctx: LayerContext) -> Outputs:
    p = ctx.layer.reshape_param
    x = ctx.shape
    rank = len(x)
    spec = [int(d) for d in p.shape.dim]
    axis = int(p.axis)
    start = axis if axis >= 0 else rank + axis + 1
    num_axes = int(p.num_axes)
    if not 0 <= start <= rank:
        raise ctx.bad(f"axis {axis} is out of range for shape {shape_text(x)}")
    if num_axes < -1 or (num_axes >= 0 and start + num_axes > rank):
        raise ctx.bad(f"num_axes {num_axes} from axis {start} does not fit shape "
                      f"{shape_text(x)}")
    end = rank if num_axes == -1 else start + num_axes
    if spec.count(-1) > 1 or any(d < -1 for d in spec):
        raise ctx.bad(f"shape {spec}: at most one -1 and no other negative dims")
    middle = []
    for i, d in enumerate(spec):
        if d == 0:
            if start + i >= rank:
                raise ctx.bad(f"shape dim {i} is 0 (copy) but the input {shape_text(x)} has "
                              f"no axis {start + i}")
            middle.append(x[start + i])
        else:
            middle.append(d)
    total = _prod(x)
    known = _prod(x[:start]) * _prod([d for d in middle if d != -1]) * _prod(x[end:])
    if -1 in middle:
        if known == 0 or total % known:
            raise ctx.bad(f"shape {spec} cannot be inferred from input {shape_text(x)}")
        middle[middle.index(-1)] = total // known
    elif known != total:
        raise ctx.bad(f"shape {spec} holds {known} values, input {shape_text(x)} holds {total}")
    out = tuple(x[:start]) + tuple(middle) + tuple(x[end:])

    trailing = list(x[end:])
    if start == 0 and not (spec and spec[0] == 0):
        ctx.keeps_batch = False
        if end == 0 and trailing and -1 not in spec:
            trailing[0] = -1           # the batch axis moves right: let ONNX infer it
        elif -1 not in spec:
            ctx.pin_batch("reshapes the batch axis to fixed sizes")
    target = _int64([0] * start + spec + trailing)
    ctx.node("Reshape", [ctx.inputs[0], ctx.const("shape", target)], [ctx.top()])
    return [(ctx.top(), out)]


# --------------------------------------------------------------------------------------
# layers without computation


def input_layer(ctx: LayerContext) -> Outputs:
    shapes = [tuple(int(d) for d in s.dim) for s in ctx.layer.input_param.shape]
    n = len(ctx.layer.top)
    if len(shapes) not in (1, n):
        raise ctx.bad(f"gives {len(shapes)} shapes for {n} tops; give 1 or {n}")
    outs = []
    for i in range(n):
        shape = shapes[0] if len(shapes) == 1 else shapes[i]
        if any(d <= 0 for d in shape):
            raise ctx.bad(f"input shape {shape_text(shape)} must be positive")
        outs.append((ctx.builder.add_input(ctx.layer.top[i], shape, ctx.top(i)), shape))
    return outs


def passthrough(ctx: LayerContext) -> Outputs:
    """Dropout (identity at inference) and Split: every top is the bottom's tensor."""
    return [(ctx.inputs[0], ctx.shape) for _ in ctx.layer.top]


def silence(ctx: LayerContext) -> Outputs:
    """Silence consumes its bottoms so that they are not net outputs."""
    return []


CONVERTERS: Dict[str, Converter] = {
    "BatchNorm": Converter(batch_norm),
    "Bias": Converter(bias, bottoms=(1, 2)),
    "Concat": Converter(concat, bottoms=(1, None)),
    "Convolution": Converter(convolution),
    "Deconvolution": Converter(deconvolution),
    "Dropout": Converter(passthrough),
    "Eltwise": Converter(eltwise, bottoms=(2, None)),
    "Flatten": Converter(flatten),
    "InnerProduct": Converter(inner_product),
    "Input": Converter(input_layer, bottoms=(0, 0), tops=(1, None)),
    "LRN": Converter(lrn),
    "Pooling": Converter(pooling, tops=(1, 2)),
    "Power": Converter(power),
    "PReLU": Converter(prelu),
    "ReLU": Converter(relu),
    "Reshape": Converter(reshape),
    "Scale": Converter(scale, bottoms=(1, 2)),
    "Sigmoid": Converter(_unary("Sigmoid")),
    "Silence": Converter(silence, bottoms=(1, None), tops=(0, 0)),
    "Slice": Converter(slice_, tops=(1, None)),
    "Softmax": Converter(softmax),
    "Split": Converter(passthrough, tops=(1, None)),
    "TanH": Converter(_unary("Tanh")),
}


def supported_types() -> List[str]:
    """The Caffe layer types the importer converts, sorted."""
    return sorted(CONVERTERS)
