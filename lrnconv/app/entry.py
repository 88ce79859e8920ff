"""The ``lrnconv`` console command's entry point.

It imports the command line inside ``main`` on purpose: a start-up that loads onnx and ONNX
Runtime takes a moment, and a Ctrl-C or SIGTERM during it must still be one line and exit 130
or 143, not a traceback. (The one function-level import of lrnconv's own code;
``tests/test_layers.py`` names it.)
"""
from __future__ import annotations

import signal
import sys

from ..base.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, interruption_behind, raise_terminated


def main() -> None:
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        from .cli import main as command
    except BaseException as exc:
        stop = interruption_behind(exc)
        if stop is None:
            raise
        how = "interrupted" if isinstance(stop, KeyboardInterrupt) else "terminated"
        sys.stderr.write(f"lrnconv: {how}; nothing was written\n")
        sys.exit(EXIT_INTERRUPTED if isinstance(stop, KeyboardInterrupt) else EXIT_TERMINATED)
    command()
