"""``bn``: the LRN site as one per-channel affine ``BatchNormalization``.

    before:  x -> LRN -> y          after:  x -> BatchNormalization(a, b, 0, 1 - eps) -> y

Maths: ``y ~ a_c * x + b_c`` per channel c, ``(a_c, b_c)`` the ordinary least-squares
fit on calibration data (``SiteStats.affine``). BatchNormalization computes
``(x - mean) / sqrt(var + eps) * scale + B``; with ``scale = a``, ``B = b``, ``mean = 0``
and ``var = 1 - eps`` it is ``a x + b`` exactly: ``eps`` is a power of two
(2^-16 for float32/float64, 2^-11 for float16, 2^-8 for bfloat16) so ``1 - eps`` is
representable in the site's type and ``var + eps`` rounds to exactly 1, whose square root
is 1. (``eps`` is not 0 because cuDNN, behind ONNX Runtime's CUDA kernel, clamps it to at
least 1e-5, which would scale everything by 1/sqrt(1 + 1e-5).)

Exact when the LRN is a constant scale: ``alpha == 0`` gives ``(a, b) = (bias^-beta, 0)``
and ``beta == 0`` gives ``(1, 0)``, no calibration needed. Otherwise approximate; the
report gives the fitted ranges and the relative residual on the calibration data.

Any rank >= 2. Opset-aware: BatchNormalization-6 takes ``is_test = 1``, -7 and -8 the
``spatial = 1`` they default to, 9 and later neither (14 and 15 add ``training_mode``,
whose default 0 is inference). The node writes the LRN output tensor, so the name and
every consumer stay. A Caffe WITHIN_CHANNEL decomposition is replaced as a whole.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx

from lrnconv.errors import UnsupportedModel
from lrnconv.nodes import OpBuilder
from lrnconv.sites import LrnSite
from lrnconv.strategy import RewriteContext, SiteRecord, Verdict

from ._rewire import SiteSpan, constant_factor, numpy_dtype, scale_verdict, site_stats, summary

log = logging.getLogger(__name__)

MIN_OPSET = 6
_EPSILON_EXPONENT = {onnx.TensorProto.FLOAT16: 11, onnx.TensorProto.BFLOAT16: 8}


def unit_epsilon(elem_type: int) -> float:
    """A power of two eps >= 1e-5 such that ``(1 - eps) + eps == 1`` exactly in ``elem_type``."""
    return 2.0 ** -_EPSILON_EXPONENT.get(elem_type, 16)


class BatchNorm:
    """LRN -> BatchNormalization with a fitted per-channel scale and shift."""

    name = "bn"
    cost = 30
    needs_calibration = True

    def needs_stats(self, site: LrnSite) -> bool:
        """Whether rewriting this site needs calibration statistics (not for constant scales)."""
        return constant_factor(site) is None

    def check(self, site: LrnSite) -> Verdict:
        return scale_verdict(site, ", a BatchNormalization with shift 0",
                             "per-channel scale and shift fitted by least squares on calibration data")

    def rewrite(self, ctx: RewriteContext, site: LrnSite) -> SiteRecord:
        verdict = self.check(site)
        if ctx.opset < MIN_OPSET:
            raise UnsupportedModel(f"strategy 'bn' cannot rewrite LRN '{site.name}': the model "
                                   f"imports opset {ctx.opset}; BatchNormalization needs {MIN_OPSET} or later")
        details = {}
        factor = constant_factor(site)
        if factor is not None:
            if site.channels is None:
                raise UnsupportedModel(f"strategy 'bn' cannot rewrite LRN '{site.name}': the channel "
                                       f"count of '{site.input}' is unknown")
            scale = np.full(site.channels, factor)
            shift = np.zeros(site.channels)
        else:
            stats = site_stats(ctx, site, self.name)
            scale, shift = stats.affine()
            details["residual_rms"] = stats.residual_rms(scale, shift)
        details.update({"scale": summary(scale), "shift": summary(shift)})

        dtype = numpy_dtype(site)
        epsilon = unit_epsilon(site.elem_type)
        attrs = {"epsilon": epsilon}
        if ctx.opset < 7:
            attrs["is_test"] = 1
        elif ctx.opset < 9:
            attrs["spatial"] = 1
        span = SiteSpan.locate(ctx, site, self.name)
        position = span.detach()
        b = OpBuilder(ctx.names, site.name, ctx.opset, dtype)
        b.op("BatchNormalization", "affine",
             [span.x, b.const("scale", scale), b.const("shift", shift),
              b.const("mean", np.zeros(len(scale))), b.const("var", np.full(len(scale), 1.0 - epsilon))],
             attrs, output=span.y)
        span.insert(position, b.nodes)
        details.update({"tensor": span.y.name, "epsilon": epsilon,
                        "replaced": [n.name for n in span.nodes]})
        log.debug("bn %s: %s, scale %s", site.name, verdict.status, details["scale"])
        return SiteRecord(site, self.name, verdict.status, verdict.reason, details)


batch_norm = BatchNorm()
