"""Built-in legacy LRN model replicas: published layer configurations, seeded random weights.

``BUILTIN`` is the explicit registry (name -> builder, in zoo order); :func:`build` is
the one entry point that tests, benchmarks and ``lrnconv zoo`` use::

    from lrnconv import models
    model = models.build("alexnet", variant="small", seed=0)

Every replica has one input ``data`` (float32 [N, 3, H, W], N symbolic) and one output
``prob`` (softmax over [N, classes]); its LRN nodes keep the published parameters and the
Caffe layer names. Variants: ``full`` keeps the published widths (and parameter
counts); ``small`` divides channels by 8 and fully connected widths by 16 and has 100
classes, for fast tests, with the same structure and every LRN site unchanged.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import onnx

from lrnconv.base.errors import UsageError

from . import alexnet, caffenet, googlenet, vgg_cnn_m, zfnet
from ._layers import Widths

VARIANTS = Widths.VARIANTS

BUILTIN: "OrderedDict[str, Callable[..., onnx.ModelProto]]" = OrderedDict([
    ("alexnet", alexnet.build),
    ("caffenet", caffenet.build),
    ("googlenet", googlenet.build),
    ("zfnet", zfnet.build),
    ("vgg_cnn_m", vgg_cnn_m.build),
])


def build(name: str, *, variant: str = "full", seed: int = 0, opset: int = 13) -> onnx.ModelProto:
    """Build a built-in replica.

    Args:
        name: one of ``BUILTIN`` (alexnet, caffenet, googlenet, zfnet, vgg_cnn_m).
        variant: ``"full"`` (published widths) or ``"small"`` (channels // 8, fc widths // 16,
            100 classes; the same structure and LRN parameters). Defaults to "full".
        seed: seed of the random weights; the same seed gives the same bytes. Defaults to 0.
        opset: default-domain opset, 7 to the newest ``onnx`` knows. Defaults to 13.

    Returns:
        A checker-valid ``onnx.ModelProto`` (IR version the minimum that fits ``opset``).

    Raises:
        UsageError: unknown name, variant or opset (the message lists the valid choices).
    """
    try:
        builder = BUILTIN[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown built-in model '{name}'; valid: {', '.join(BUILTIN)}") from None
    return builder(variant=variant, seed=seed, opset=opset)


__all__ = ["BUILTIN", "VARIANTS", "build"]
