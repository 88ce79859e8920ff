"""Exception hierarchy.

Library code raises these and never prints or exits; the CLI turns every
``LrnConvError`` into one stderr line and exit code 2 (a failed verification is exit 1,
which is a result, not an error).
Messages name the file, node or layer, the value seen and what would be valid.
"""


class LrnConvError(Exception):
    """Base class of every error lrnconv raises on purpose."""

    exit_code = 2


class BadInput(LrnConvError):
    """The model file or data file cannot be read or is malformed."""


class UnsupportedModel(LrnConvError):
    """The model is well formed but holds something lrnconv cannot handle (named)."""


class RunFailed(UnsupportedModel):
    """ONNX Runtime cannot run one of the models compared; ``role`` says which ("reference" or
    "candidate"), so that the one error line can name the right file."""

    def __init__(self, message: str, role: str):
        super().__init__(message)
        self.role = role


class InvalidSite(UnsupportedModel):
    """An LRN node whose attributes are illegal (missing or non-positive size, ...)."""


class ProviderUnavailable(LrnConvError):
    """A requested ONNX Runtime execution provider is missing or was silently replaced."""


class UsageError(LrnConvError):
    """An option value that is not valid (unknown strategy, bad tolerance, ...)."""


class OutputError(LrnConvError):
    """The output path cannot be written."""
