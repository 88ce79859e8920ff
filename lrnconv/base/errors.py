"""Exception hierarchy.

Library code raises these and never prints or exits; the CLI turns every
``LrnConvError`` into one stderr line and exit code 2 (a failed verification is exit 1,
which is a result, not an error).
Messages name the file, node or layer, the value seen and what would be valid.
"""
from __future__ import annotations

from typing import Optional

EXIT_DRIFT = 1
"""A verification over tolerance (or a zoo model that failed)."""
EXIT_BAD_INPUT = 2
"""Bad input or usage: one line on stderr, nothing written."""
EXIT_NOT_VERIFIABLE = 3
"""The model was written but ONNX Runtime cannot run it on a provider, so nothing was verified."""
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class LrnConvError(Exception):
    """Base class of every error lrnconv raises on purpose."""

    exit_code = EXIT_BAD_INPUT


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


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that every write in progress cleans up after itself."""


def raise_terminated(signum, frame) -> None:
    """A SIGTERM handler: turn the signal into ``Terminated``."""
    raise Terminated()


def interruption_behind(exc: BaseException) -> Optional[BaseException]:
    """The Ctrl-C or SIGTERM that caused ``exc``, if one did.

    A signal that lands while a compiled module initialises (ONNX Runtime's, at start-up) comes
    out as that module's ``ImportError``, with the ``KeyboardInterrupt`` only in its chain.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (KeyboardInterrupt, Terminated)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
