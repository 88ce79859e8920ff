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
every consumer stay. A site that exists as an op chain is replaced as a whole.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx

from lrnconv.engine.protocol import NOT_APPLICABLE, RewriteContext, SiteRecord, Verdict
from lrnconv.graph.nodes import OpBuilder, numpy_dtype
from lrnconv.graph.preserve import EditableGraphs
from lrnconv.graph.sites import LrnSite
from lrnconv.graph.span import SiteSpan
from lrnconv.maths.stats import summarize

from ._scale import scale_verdict

log = logging.getLogger(__name__)

MIN_OPSET = 6
_EPSILON_EXPONENT = {onnx.TensorProto.FLOAT16: 11, onnx.TensorProto.BFLOAT16: 8}


def unit_epsilon(elem_type: int) -> float:
    """A power of two eps >= 1e-5 such that ``(1 - eps) + eps == 1`` exactly in ``elem_type``."""
    return 2.0 ** -_EPSILON_EXPONENT.get(elem_type, 16)


class BatchNorm:
    """LRN -> BatchNormalization with a fitted per-channel scale and shift."""

    name = "bn"

    def needs_stats(self, site: LrnSite) -> bool:
        """Whether rewriting this site needs calibration statistics (not for constant scales)."""
        return site.constant_factor is None

    def check(self, site: LrnSite, graphs: EditableGraphs) -> Verdict:
        verdict = scale_verdict(site, ", a BatchNormalization with shift 0",
                                "per-channel scale and shift fitted by least squares on calibration data")
        if not verdict.applicable:
            return verdict
        if graphs.opset < MIN_OPSET:
            return Verdict(NOT_APPLICABLE, f"the model imports opset {graphs.opset}; "
                                           f"BatchNormalization needs {MIN_OPSET} or later")
        if site.constant_factor is not None and site.channels is None:
            return Verdict(NOT_APPLICABLE, f"the channel count of '{site.input}' is unknown, so the "
                                           "constant scale cannot be written per channel")
        span = SiteSpan.locate(graphs, site)
        if isinstance(span, str):
            return Verdict(NOT_APPLICABLE, f"the op chain cannot be replaced as a whole: {span}")
        return verdict

    def rewrite(self, ctx: RewriteContext, site: LrnSite) -> SiteRecord:
        verdict = self.check(site, ctx.graphs)
        details = {}
        factor = site.constant_factor
        if factor is not None:
            scale = np.full(site.channels, factor)
            shift = np.zeros(site.channels)
        else:
            stats = ctx.stats_for(site)
            scale, shift = stats.affine()
            details["residual_rms"] = stats.residual_rms(scale, shift)
        details.update({"scale": summarize(scale), "shift": summarize(shift)})

        dtype = numpy_dtype(site.elem_type)
        epsilon = unit_epsilon(site.elem_type)
        attrs = {"epsilon": epsilon}
        if ctx.opset < 7:
            attrs["is_test"] = 1
        elif ctx.opset < 9:
            attrs["spatial"] = 1
        span = ctx.span(site)
        position = span.detach()
        b = OpBuilder(ctx.names, site.name, ctx.opset, dtype)
        b.op("BatchNormalization", "affine",
             [span.x, b.const("scale", scale), b.const("shift", shift),
              b.const("mean", np.zeros(len(scale))), b.const("var", np.full(len(scale), 1.0 - epsilon))],
             attrs, output=span.y)
        span.insert(position, b.nodes)
        details.update({"epsilon": epsilon, "replaced": [n.name for n in span.nodes]})
        log.debug("bn %s: %s, scale %s", site.name, verdict.status, details["scale"])
        return SiteRecord(site, self.name, verdict.status, verdict.reason, tensor=span.y.name, details=details)


batch_norm = BatchNorm()
