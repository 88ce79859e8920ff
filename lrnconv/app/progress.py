"""What a person watching a zoo run sees: a progress bar on a terminal, plain lines elsewhere.

``BarProgress`` (tqdm): models done / failed / left, the model being converted and its
stage (with more than one worker: the first running one, and how many more), elapsed time
and ETA; a failure is printed above the bar with its reason. ``LineProgress``: one line
per finished model with the same counts and an ETA, for logs (Slurm, Kubernetes, CI) and
``--json``. The CLI picks one (``--quiet``: neither); the library prints nothing itself.

``SampleBar``: the same kind of bar for the sample loops of one conversion or verification
(calibrating, verifying on a provider, ``auto``'s trials; ``lrnconv.runtime.progress``),
shown only once a stage has run for a second and removed when it ends.
"""
from __future__ import annotations

import time
from typing import Dict, Mapping, Optional, Sequence, TextIO

from tqdm import tqdm

from ..runtime.progress import Watcher
from .zoo import ZooProgress

SAMPLE_BAR_DELAY = 1.0
"""Seconds a sample loop runs before its bar appears: short runs stay quiet."""


def _clock(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}:" if hours else "") + f"{rest // 60:0{2 if hours else 1}d}:{rest % 60:02d}"


def _outcome(entries: Sequence[Mapping[str, object]]) -> str:
    parts = []
    for e in entries:
        if e.get("error"):
            parts.append(f"{e['strategy']} ERROR ({e['error']})")
        else:
            int8 = e.get("int8")
            parts.append(f"{e['strategy']} {'PASSED' if e.get('status') == 'passed' else 'FAILED'}"
                         + (f" (INT8 {'PASSED' if int8['passed'] else 'FAILED'})" if int8 else ""))
    return ", ".join(parts)


def _failed(entries: Sequence[Mapping[str, object]]) -> bool:
    return any(e.get("error") or not e.get("passed") for e in entries)


class _Counts(ZooProgress):
    def start(self, total: int, reused: int, workers: int) -> None:
        self.total, self.workers = total, workers
        self.done_count = self.failed_count = self.converted = 0
        self.started = time.monotonic()

    def reused(self, name: str, entries) -> None:
        self.done_count += 1
        self.failed_count += _failed(entries)

    def done(self, name: str, entries) -> None:
        self.done_count += 1
        self.converted += 1
        self.failed_count += _failed(entries)

    @property
    def left(self) -> int:
        return self.total - self.done_count

    def eta(self) -> Optional[float]:
        if not self.converted:
            return None
        return (time.monotonic() - self.started) / self.converted * self.left


class LineProgress(_Counts):
    """Plain lines on ``stream``: the plan, then one line per finished model."""

    def __init__(self, stream: TextIO):
        self.stream = stream

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, total: int, reused: int, workers: int) -> None:
        super().start(total, reused, workers)
        self._say(f"zoo: {total} model(s): {reused} finished before (completion records match), "
                  f"{total - reused} to convert on {workers} worker(s)")

    def done(self, name: str, entries) -> None:
        super().done(name, entries)
        self._say(f"[{self.done_count}/{self.total}] {name}: {_outcome(entries)} "
                  f"(done {self.done_count}, failed {self.failed_count}, left {self.left}, "
                  f"ETA {_clock(self.eta())})")


class BarProgress(_Counts):
    """A tqdm bar on ``stream`` (a terminal)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.bar: Optional[tqdm] = None
        self.running: Dict[str, str] = {}

    def start(self, total: int, reused: int, workers: int) -> None:
        super().start(total, reused, workers)
        self.bar = tqdm(total=total, initial=reused, unit="model", file=self.stream, dynamic_ncols=True,
                        desc="zoo", bar_format="{desc} {bar} {n_fmt}/{total_fmt} [{elapsed}<{remaining}]{postfix}")
        self._refresh()

    def _refresh(self) -> None:
        current = ""
        if self.running:
            name, stage = next(iter(self.running.items()))
            more = f" +{len(self.running) - 1} more" if len(self.running) > 1 else ""
            current = f" | {name}: {stage}{more}"
        self.bar.set_postfix_str(f"done {self.done_count}, failed {self.failed_count}, left {self.left}{current}")

    def stage(self, name: str, text: str) -> None:
        self.running[name] = text
        self._refresh()

    def done(self, name: str, entries) -> None:
        super().done(name, entries)
        self.running.pop(name, None)
        if _failed(entries):
            self.bar.write(f"{name}: {_outcome(entries)}", file=self.stream)
        self.bar.update(1)
        self._refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class SampleBar(Watcher):
    """A tqdm bar per sample loop on ``stream`` (a terminal): the stage, samples done of all, ETA."""

    def __init__(self, stream: TextIO, delay: float = SAMPLE_BAR_DELAY):
        self.stream, self.delay = stream, delay
        self.bar: Optional[tqdm] = None

    def begin(self, stage: str, total: int) -> None:
        self.end()
        self.bar = tqdm(total=total, desc=stage, unit="sample", file=self.stream, dynamic_ncols=True,
                        delay=self.delay, leave=False)

    def advance(self, samples: int) -> None:
        if self.bar is not None:
            self.bar.update(samples)

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
