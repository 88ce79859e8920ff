"""lrnconv: find and rewrite Local Response Normalization in legacy CNNs, and prove the drift.

    import lrnconv
    model = lrnconv.load("alexnet.onnx")
    sites = lrnconv.find_lrn(model)
    result = lrnconv.convert(model, "decompose", verify=lrnconv.VerifyOptions())
    lrnconv.save(result.model, "alexnet.nolrn.onnx")
"""
from .convert import ConversionResult, VerifyOptions, convert, strategies
from .drift import Drift, compare
from .errors import (BadInput, InvalidSite, LrnConvError, OutputError, ProviderUnavailable,
                     UnsupportedModel, UsageError)
from .modelio import load, save
from .sites import LrnSite, find_lrn
from .verify import DriftReport, verify

__version__ = "0.1.0"
__all__ = ["load", "save", "find_lrn", "convert", "verify", "strategies", "LrnSite",
           "ConversionResult", "VerifyOptions", "DriftReport", "Drift", "compare",
           "LrnConvError", "BadInput", "InvalidSite", "UnsupportedModel", "ProviderUnavailable",
           "UsageError", "OutputError"]
