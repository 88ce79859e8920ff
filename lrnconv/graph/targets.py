"""Whether a site could stay a native LRN on common deployment targets (from their documented limits).

Reported by ``inspect`` so that an engineer sees, per site, whether a rewrite is needed at
all for the runtime they ship to:

* TensorRT's LRN layer: odd window in [1, 15], beta >= 0.01, bias >= 1e-5;
  on DLA only windows 3, 5, 7 and 9.
* TFLite / NNAPI ``LOCAL_RESPONSE_NORMALIZATION``: TensorFlow's conventions, a radius
  (so an odd window, radius = (size-1)/2) and alpha not divided by the window
  (alpha_tf = alpha / size).

Caffe WITHIN_CHANNEL normalization has no LRN op anywhere.
"""
from __future__ import annotations

from typing import Dict, List

from .families import Family
from .sites import LrnSite


def _tensorrt_problems(site: LrnSite, windows) -> List[str]:
    problems = []
    if site.size not in windows:
        problems.append(f"window {site.size} not in {{{', '.join(map(str, windows))}}}"
                        if len(windows) < 8 else f"window {site.size} must be odd and in [1, 15]")
    if site.beta < 0.01:
        problems.append(f"beta {site.beta:g} < 0.01")
    if site.bias < 1e-5:
        problems.append(f"bias {site.bias:g} < 1e-5")
    return problems


def target_support(site: LrnSite) -> Dict[str, str]:
    """Target name -> 'native LRN: ...' or 'rewrite needed: <why>'."""
    if site.family is Family.CAFFE_WITHIN:
        return {t: "rewrite needed: WITHIN_CHANNEL has no LRN op" for t in ("tensorrt", "tensorrt-dla", "tflite")}
    support = {}
    for target, windows in (("tensorrt", range(1, 16, 2)), ("tensorrt-dla", (3, 5, 7, 9))):
        problems = _tensorrt_problems(site, tuple(windows))
        support[target] = "rewrite needed: " + "; ".join(problems) if problems else "native LRN"
    if site.size % 2:
        support["tflite"] = (f"native LRN: depth_radius={(site.size - 1) // 2}, bias={site.bias:g}, "
                             f"alpha={site.alpha / site.size:.6g}, beta={site.beta:g}")
    else:
        support["tflite"] = f"rewrite needed: even window {site.size} has no radius"
    return support
