"""lrnconv: find and rewrite Local Response Normalization in legacy CNNs, and prove the drift.

    import lrnconv
    model = lrnconv.load("alexnet.onnx")
    sites = lrnconv.find_lrn(model)
    result = lrnconv.convert(model, "decompose", verify=lrnconv.VerifyOptions())
    lrnconv.save(result.model, "alexnet.nolrn.onnx")

The package is layered, bottom up, each layer importing only from those below: ``base``
(errors, the write path) → ``maths`` → ``graph`` → ``formats`` and ``models`` → ``engine`` and
``passes`` → ``runtime`` → ``measure`` → ``app`` (conversion, inspection, zoo, CLI). This module
is the public API, gathered from all of them. Its names are loaded on first use (PEP 562), so
``import lrnconv`` and the command's start-up stay light, and a Ctrl-C while the command starts
is still handled as one line.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_API = {
    "lrnconv.app.conversion": ("ConversionResult", "VerifyOptions", "convert", "strategies"),
    "lrnconv.app.inspection": ("Inspection", "inspect"),
    "lrnconv.base.errors": ("BadInput", "InvalidSite", "LrnConvError", "OutputError", "ProviderUnavailable",
                            "RunFailed", "UnsupportedModel", "UsageError"),
    "lrnconv.engine.plan": ("rewrite", "rewrite_graph"),
    "lrnconv.engine.protocol": ("SiteRecord", "Status", "Verdict"),
    "lrnconv.formats.modelio": ("load", "save"),
    "lrnconv.graph.families": ("Family",),
    "lrnconv.graph.sites": ("LrnSite", "find_lrn"),
    "lrnconv.maths.drift": ("Drift", "Tolerance", "compare"),
    "lrnconv.measure.importance": ("Importance",),
    "lrnconv.measure.quantization": ("FloatIsland", "Int8Options", "Int8Report"),
    "lrnconv.measure.verification": ("DriftReport", "verify"),
}
_HOME = {name: module for module, names in _API.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'lrnconv' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOME))
