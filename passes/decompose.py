"""``decompose``: LRN as primitive ONNX ops, same maths (exact up to float rounding).

    y = x / (bias + alpha/size * S(c))^beta,   S(c) = sum of x^2 over [c - lo, c + hi]
    lo = floor((size-1)/2), hi = ceil((size-1)/2), zero padded (ONNX's asymmetric window)

The window sum has three exact formulations (``window`` option):

* ``pool``   — AveragePool over an unsqueezed channel axis: x -> [N,1,C,...], squared
  there, -> AveragePool(kernel [size,1,..], pads [lo,..,hi,..], count_include_pad=1)
  gives S/size. Works for every rank >= 2 and unknown C (ranks other than 3 and 4 are
  flattened to [N,C,L] first, and reshaped back with Shape(x)). The square comes after
  the lift so that ONNX Runtime, whose NCHWc transformer would otherwise compute x^2 in
  its blocked layout, reorders one tensor (x) back to plain NCHW instead of two (x, x^2).
* ``conv``   — a banded 1x1 Conv with weight alpha/size on the window band and bias as
  its Conv bias: one op for the whole denominator. Needs C and the rank known.
* ``cumsum`` — CumSum along C of the zero-padded squares, minus itself shifted by
  size. Needs opset >= 11 and the rank known. (Cancellation costs precision for wide C.)

The power (``power`` option): ONNX Runtime's ``Pow`` is slow, so for beta = q/4
(q = 0..8: 0.25, 0.5, 0.75, 1, ...) it is built from Sqrt, Mul and one division, each
op correctly rounded:

* ``roots``    — y = x / d^beta; beta = 0.75 is x / (sqrt(d) * sqrt(sqrt(d))).
* ``inverse``  — y = x * d^-beta, d^-beta in the fewest ops: either 1 / d^(q/4) or
  d^(r/4) / d^k with k = ceil(q/4), r = 4k - q; beta = 0.75 is x * (sqrt(sqrt(d)) / d),
  three ops for d^-beta where ``roots`` needs three for d^beta and the Div.
* ``blocked``  — ``inverse`` with d^-beta passed through a 1x1 MaxPool (an identity) on
  rank-4 float32 sites. ONNX Runtime's NCHWc transformer moves an op into its blocked
  layout only when every input is blocked and only Conv and Pool pull a plain tensor in;
  the MaxPool brings d^-beta in, so the product with x (blocked, from the Conv before the
  LRN) stays blocked: one ReorderInput of d^-beta replaces the ReorderOutput of x and the
  ReorderInput of y. Elsewhere (other ranks, float16) it is ``inverse``.

Other betas use ``Pow(d, -beta)`` (``pow``) or ``Exp(-beta * Log(d))`` (``explog``, what
``roots``, ``inverse`` and ``blocked`` fall back to).

float16 / bfloat16 sites are computed in float32 between two Casts (x^2 of Caffe-scale
activations overflows float16). The last op writes the LRN's own output tensor, so the
output name (and every consumer) is unchanged. Sites that arrive already decomposed
(Caffe WITHIN_CHANNEL) are left as they are; PyTorch's exported chain (``torch-pattern``:
Shape/Gather/If/Reshape around a ``Pow``) is replaced by this form, with PyTorch's window.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from lrnconv.nodes import OpBuilder
from lrnconv.patterns import TORCH_FAMILY
from lrnconv.sites import LrnSite
from lrnconv.strategy import EXACT, NOT_APPLICABLE, RewriteContext, SiteRecord, Verdict

from ._rewire import SiteSpan

WINDOWS = ("pool", "conv", "cumsum")
POWERS = ("roots", "inverse", "blocked", "pow", "explog")
QUARTER_POWERS = ("roots", "inverse", "blocked")
"""The powers built from Sqrt for beta = q/4."""
DEFAULT_WINDOW = "pool"
DEFAULT_POWER = "roots"
DEFAULT_GENERAL_POWER = "explog"
"""What the quarter-step powers fall back to for betas that are not a multiple of 1/4."""

_WIDE_TYPES = {onnx.TensorProto.FLOAT16: onnx.TensorProto.FLOAT,
               onnx.TensorProto.BFLOAT16: onnx.TensorProto.FLOAT}


def quarter_steps(beta: float) -> Optional[int]:
    """q with beta == q/4 for q in 0..8, else None."""
    q = beta * 4.0
    rounded = round(q)
    if abs(q - rounded) < 1e-9 and 0 <= rounded <= 8:
        return int(rounded)
    return None


def root_power_ops(q: int) -> int:
    """Ops that ``root_power`` emits for d^(q/4): the Sqrts and the Muls of the factors."""
    roots = 0 if q % 4 == 0 else (1 if q % 4 == 2 else 2)
    factors = q // 4 + (q % 4 >= 2) + (q % 2)
    return roots + max(factors - 1, 0)


def root_power(b: OpBuilder, base: gs.Tensor, q: int, label: str) -> gs.Tensor:
    """d^(q/4) for q >= 1 from Sqrt and Mul: d^(q//4) * sqrt(d)^[q%4 >= 2] * sqrt(sqrt(d))^[q odd]."""
    factors = [base] * (q // 4)
    if q % 4:
        root = b.op("Sqrt", f"{label}_sqrt", [base])
        if q % 4 >= 2:
            factors.append(root)
        if q % 2:
            factors.append(b.op("Sqrt", f"{label}_fourth_root", [root]))
    product = factors[0]
    for i, factor in enumerate(factors[1:]):
        product = b.op("Mul", f"{label}_product_{i}", [product, factor])
    return product


def inverse_root_power(b: OpBuilder, base: gs.Tensor, q: int) -> gs.Variable:
    """d^(-q/4) for q >= 1 in the fewest ops.

    Either 1 / d^(q/4) (``Reciprocal``), or d^(r/4) / d^k with k = ceil(q/4) and
    r = 4k - q (one ``Div``): for q = 3 (beta = 0.75) the second is sqrt(sqrt(d)) / d,
    three ops against four. Both are one correctly rounded division of products of
    correctly rounded roots.
    """
    k = -(-q // 4)
    r = 4 * k - q
    if r and root_power_ops(r) + root_power_ops(4 * k) < root_power_ops(q):
        numerator = root_power(b, base, r, "numerator")
        denominator = root_power(b, base, 4 * k, "denominator")
        return b.op("Div", "inverse_power", [numerator, denominator])
    return b.op("Reciprocal", "inverse_power", [root_power(b, base, q, "power")])


class Decompose:
    """LRN -> Mul, window sum, Sqrt/Div (or Pow) — see the module docstring."""

    name = "decompose"
    cost = 50

    def check(self, site: LrnSite) -> Verdict:
        if site.family == TORCH_FAMILY:
            return Verdict(EXACT, "the exported op chain re-emitted in the faster form (no Pow, no shape ops)")
        if not site.is_node:
            return Verdict(EXACT, "already primitive ops (imported decomposition)")
        if site.rank is not None and site.rank < 2:
            return Verdict(NOT_APPLICABLE, f"LRN input '{site.input}' has rank {site.rank}; "
                                           "LRN needs at least [N, C]")
        return Verdict(EXACT, "primitive ops computing the same maths")

    def rewrite(self, ctx: RewriteContext, site: LrnSite) -> SiteRecord:
        verdict = self.check(site)
        if not site.is_node and site.family != TORCH_FAMILY:
            return SiteRecord(site, self.name, verdict.status, verdict.reason)
        window = str(ctx.options.get("window", DEFAULT_WINDOW))
        power = str(ctx.options.get("power", DEFAULT_POWER))
        window_used = self._feasible_window(window, site, ctx.opset)

        span = SiteSpan.locate(ctx, site, self.name)
        x, y = span.x, span.y
        position = span.detach()
        wide = _WIDE_TYPES.get(site.elem_type)
        dtype = np.float64 if site.elem_type == onnx.TensorProto.DOUBLE else np.float32
        b = OpBuilder(ctx.names, site.name, ctx.opset, dtype)

        x_in = b.cast(x, wide, "to_float32") if wide else x
        denominator_base = getattr(self, f"_window_{window_used}")(b, site, x_in)
        result_slot = None if wide else y
        blockable = site.rank == 4 and not wide
        power_used = self._power(b, site, power, x_in, denominator_base, result_slot, blockable)
        if wide:
            b.cast(b.nodes[-1].outputs[0], site.elem_type, "to_input_type", output=y)

        span.insert(position, b.nodes)
        details = {"window": window_used, "power": power_used, "ops": [n.op for n in b.nodes]}
        if window_used != window:
            details["window_requested"] = window
        if power_used != power and power_used != "identity":
            details["power_requested"] = power
        return SiteRecord(site, self.name, EXACT, verdict.reason, details)

    @staticmethod
    def _feasible_window(window: str, site: LrnSite, opset: int) -> str:
        if window not in WINDOWS:
            raise ValueError(f"unknown window formulation '{window}'; choose from {WINDOWS}")
        if window == "conv" and (site.channels is None or site.rank is None or site.rank < 3):
            return "pool"
        if window == "cumsum" and (opset < 11 or site.rank is None):
            return "pool"
        return window

    @staticmethod
    def _scale_and_shift(b: OpBuilder, site: LrnSite, window_mean: gs.Tensor) -> gs.Variable:
        """bias + alpha * mean  (mean = S/size)."""
        scaled = b.op("Mul", "scaled_mean", [window_mean, b.const("alpha", site.alpha)])
        return b.op("Add", "denominator_base", [scaled, b.const("bias", site.bias)])

    def _window_pool(self, b: OpBuilder, site: LrnSite, x_in: gs.Tensor) -> gs.Variable:
        lo, hi = site.window
        direct = site.rank in (3, 4)
        flat = x_in if direct else b.op(
            "Reshape", "flatten", [x_in, b.const("flat_shape", [0, 0, -1], np.int64)])
        spatial = site.rank - 2 if direct else 1
        lifted = b.unsqueeze(flat, [1], "lift_channels")
        squares = b.op("Mul", "square", [lifted, lifted])
        pooled = b.op("AveragePool", "window_mean", [squares], {
            "kernel_shape": [site.size] + [1] * spatial,
            "pads": [lo] + [0] * spatial + [hi] + [0] * spatial,
            "count_include_pad": 1,
        })
        mean = b.squeeze(pooled, [1], "drop_lift")
        if not direct:
            mean = b.op("Reshape", "unflatten", [mean, b.op("Shape", "input_shape", [x_in])])
        return self._scale_and_shift(b, site, mean)

    def _window_conv(self, b: OpBuilder, site: LrnSite, x_in: gs.Tensor) -> gs.Variable:
        lo, hi = site.window
        squares = b.op("Mul", "square", [x_in, x_in])
        channels = site.channels
        band = np.zeros((channels, channels), dtype=b.dtype)
        for c in range(channels):
            band[c, max(0, c - lo):min(channels, c + hi + 1)] = site.alpha / site.size
        weight = band.reshape((channels, channels) + (1,) * (site.rank - 2))
        bias = np.full(channels, site.bias, dtype=b.dtype)
        return b.op("Conv", "denominator_base", [squares, b.const("band", weight), b.const("bias", bias)])

    def _window_cumsum(self, b: OpBuilder, site: LrnSite, x_in: gs.Tensor) -> gs.Variable:
        lo, hi = site.window
        squares = b.op("Mul", "square", [x_in, x_in])
        rank = site.rank
        pads = [0] * (2 * rank)
        pads[1], pads[rank + 1] = lo + 1, hi
        padded = b.pad(squares, pads, "pad_channels")
        running = b.op("CumSum", "running_sum", [padded, b.const("channel_axis", 1, np.int64)])
        upper = b.slice(running, site.size, np.iinfo(np.int64).max, 1, "window_end")
        lower = b.slice(running, 0, -site.size, 1, "window_start")
        total = b.op("Sub", "window_sum", [upper, lower])
        scaled = b.op("Mul", "scaled_sum", [total, b.const("alpha_over_size", site.alpha / site.size)])
        return b.op("Add", "denominator_base", [scaled, b.const("bias", site.bias)])

    @staticmethod
    def _power(b: OpBuilder, site: LrnSite, power: str, x_in: gs.Tensor, base: gs.Tensor,
               output: Optional[gs.Variable], blockable: bool) -> str:
        """y = x * base^-beta; returns the power formulation used (see the module docstring)."""
        if power not in POWERS:
            raise ValueError(f"unknown power formulation '{power}'; choose from {POWERS}")
        q = quarter_steps(site.beta) if power in QUARTER_POWERS else None
        if power in QUARTER_POWERS and q is None:
            power = DEFAULT_GENERAL_POWER
        if q == 0:
            b.op("Identity", "unscaled", [x_in], output=output)
            return "identity"
        if power == "roots":
            b.op("Div", "normalized", [x_in, root_power(b, base, q, "power")], output=output)
            return power
        if power in ("inverse", "blocked"):
            scale = inverse_root_power(b, base, q)
            if power == "blocked" and not blockable:
                power = "inverse"
            if power == "blocked":
                scale = b.op("MaxPool", "to_blocked_layout", [scale], {"kernel_shape": [1, 1]})
        elif power == "pow":
            scale = b.op("Pow", "inverse_power", [base, b.const("minus_beta", -site.beta)])
        else:
            logs = b.op("Log", "log_base", [base])
            scaled = b.op("Mul", "scaled_log", [logs, b.const("minus_beta", -site.beta)])
            scale = b.op("Exp", "inverse_power", [scaled])
        b.op("Mul", "normalized", [x_in, scale], output=output)
        return power


decompose = Decompose()
