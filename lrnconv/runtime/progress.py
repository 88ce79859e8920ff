"""Progress of the long sample loops (calibration, verification, ``auto``'s trials, importance).

The loops in ``lrnconv.measure`` wrap their chunk iterators in ``tracked``; nothing is shown
unless a caller installed a watcher with ``watching`` (the CLI does, on a terminal: a tqdm
bar that appears once a stage has run a second). The library itself never prints. The
watcher lives in a context variable, so threads and embedding hosts each see their own.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterable, Iterator, Optional, Protocol

from .inputs import Chunk


class Watcher(Protocol):
    """Told where a sample loop stands: one stage at a time."""

    def begin(self, stage: str, total: int) -> None:
        """A loop named ``stage`` starts over ``total`` samples."""

    def advance(self, samples: int) -> None:
        """``samples`` more samples of the current loop are done."""

    def end(self) -> None:
        """The current loop finished (or was left by an exception)."""


_WATCHER: ContextVar[Optional[Watcher]] = ContextVar("lrnconv_progress_watcher", default=None)


@contextlib.contextmanager
def watching(watcher: Optional[Watcher]) -> Iterator[None]:
    """Report every tracked loop inside the block to ``watcher`` (None: to nobody)."""
    token = _WATCHER.set(watcher)
    try:
        yield
    finally:
        _WATCHER.reset(token)


def tracked(chunks: Iterable[Chunk], stage: str, total: int) -> Iterator[Chunk]:
    """``chunks`` as they are, each counted (its real samples) once the loop body is done with it."""
    watcher = _WATCHER.get()
    if watcher is None:
        yield from chunks
        return
    watcher.begin(stage, total)
    try:
        for chunk in chunks:
            yield chunk
            watcher.advance(chunk.real)
    finally:
        watcher.end()
