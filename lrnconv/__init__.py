"""lrnconv: find and rewrite Local Response Normalization in legacy CNNs, and prove the drift.

    import lrnconv
    model = lrnconv.load("alexnet.onnx")
    sites = lrnconv.find_lrn(model)
    result = lrnconv.convert(model, "decompose", verify=lrnconv.VerifyOptions())
    lrnconv.save(result.model, "alexnet.nolrn.onnx")

The package is layered, bottom up, each layer importing only from those below: ``base``
(errors, the write path) → ``maths`` → ``graph`` → ``formats`` and ``models`` → ``engine`` and
``passes`` → ``runtime`` → ``measure`` → ``app`` (conversion, inspection, zoo, CLI). This module
is the public API, gathered from all of them.
"""
from .app.conversion import ConversionResult, VerifyOptions, convert, strategies
from .app.inspection import Inspection, inspect
from .base.errors import (BadInput, InvalidSite, LrnConvError, OutputError, ProviderUnavailable,
                          UnsupportedModel, UsageError)
from .engine.plan import rewrite, rewrite_graph
from .engine.protocol import SiteRecord, Status, Verdict
from .formats.modelio import load, save
from .graph.families import Family
from .graph.sites import LrnSite, find_lrn
from .maths.drift import Drift, Tolerance, compare
from .measure.verification import DriftReport, verify

__version__ = "0.1.0"
__all__ = ["load", "save", "find_lrn", "inspect", "convert", "verify", "rewrite", "rewrite_graph",
           "strategies", "LrnSite", "Family", "Inspection", "SiteRecord", "Status", "Verdict",
           "ConversionResult", "VerifyOptions", "DriftReport", "Drift", "Tolerance", "compare",
           "LrnConvError", "BadInput", "InvalidSite", "UnsupportedModel", "ProviderUnavailable",
           "UsageError", "OutputError"]
