"""The ``lrnconv`` console command's entry point.

It imports the command line inside ``main`` on purpose: a start-up that loads onnx and ONNX
Runtime takes a moment, and a Ctrl-C or SIGTERM during it must still be one line and exit 130
or 143, not a traceback. (The one function-level import of lrnconv's own code;
``tests/test_layers.py`` names it.)
"""
from __future__ import annotations

import signal
import sys

from ..base.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, raise_terminated


def main() -> None:
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        from .cli import main as command
    except KeyboardInterrupt:
        sys.stderr.write("lrnconv: interrupted; nothing was written\n")
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        sys.stderr.write("lrnconv: terminated; nothing was written\n")
        sys.exit(EXIT_TERMINATED)
    command()
