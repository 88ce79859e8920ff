"""Which models a zoo shard converts: a stable hash of each model's name.

A model belongs to shard ``int(sha256(name)[:8]) mod N``: its shard depends on its own name
and on N only, so adding or removing a model moves that model and no other, and a rerun
of shard I (a Kubernetes pod retried with the same index, a Slurm task requeued) takes
exactly the models it took before.

``--shard auto`` reads the index from the scheduler's environment:

- Slurm job array: ``SLURM_ARRAY_TASK_ID`` and ``SLURM_ARRAY_TASK_COUNT`` (with
  ``SLURM_ARRAY_TASK_MIN`` and ``SLURM_ARRAY_TASK_STEP`` when Slurm sets them, so
  ``--array=1-4`` and ``--array=0-6:2`` map onto shards 0..N-1 too);
- Kubernetes Indexed Job: ``JOB_COMPLETION_INDEX``, with the count in
  ``LRNCONV_SHARD_COUNT`` (Kubernetes does not export ``completions``; the Job spec sets
  the variable next to it, see the README's recipe).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, TypeVar

from ..base.errors import UsageError

SHARD_COUNT_VARIABLE = "LRNCONV_SHARD_COUNT"
"""Environment variable holding the shard count for a Kubernetes Indexed Job."""

_EXPECTED = "expected I/N with 0 <= I < N (e.g. 0/4), or auto"
T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``, and where the numbers came from."""

    index: int
    count: int
    origin: str = "--shard"
    """'--shard', 'slurm' or 'kubernetes'."""

    def to_dict(self):
        return {"index": self.index, "count": self.count, "origin": self.origin}

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(name: str, count: int) -> int:
    """The shard (0..count-1) that the model called ``name`` belongs to."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select(items: Sequence[T], shard: Optional[Shard], name=lambda item: item.name) -> list:
    """The items of ``shard`` (all of them without one), order kept."""
    if shard is None:
        return list(items)
    return [item for item in items if shard_of(name(item), shard.count) == shard.index]


def _integer(environ: Mapping[str, str], variable: str) -> Optional[int]:
    text = environ.get(variable)
    if text is None or text.strip() == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--shard auto: {variable}='{text}' is not an integer") from None


def _checked(index: int, count: int, origin: str, where: str) -> Shard:
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard auto: {where} gives shard {index} of {count}; expected 0 <= index < count")
    return Shard(index, count, origin)


def shard_from_environment(environ: Mapping[str, str]) -> Shard:
    """The shard a Slurm array task or a Kubernetes Indexed Job pod runs (see the module doc).

    Raises:
        UsageError: neither scheduler's variables are set, or they are inconsistent.
    """
    task = _integer(environ, "SLURM_ARRAY_TASK_ID")
    if task is not None:
        count = _integer(environ, "SLURM_ARRAY_TASK_COUNT")
        if count is None:
            raise UsageError("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not")
        low = _integer(environ, "SLURM_ARRAY_TASK_MIN") or 0
        step = _integer(environ, "SLURM_ARRAY_TASK_STEP") or 1
        if step < 1 or (task - low) % step:
            raise UsageError(f"--shard auto: SLURM_ARRAY_TASK_ID={task} is not on the array's grid "
                             f"(min {low}, step {step})")
        return _checked((task - low) // step, count, "slurm",
                        f"SLURM_ARRAY_TASK_ID={task} (min {low}, step {step}), SLURM_ARRAY_TASK_COUNT={count}")
    index = _integer(environ, "JOB_COMPLETION_INDEX")
    if index is not None:
        count = _integer(environ, SHARD_COUNT_VARIABLE)
        if count is None:
            raise UsageError(f"--shard auto: JOB_COMPLETION_INDEX is set but {SHARD_COUNT_VARIABLE} is not; "
                             "set it to the Job's completions")
        return _checked(index, count, "kubernetes", f"JOB_COMPLETION_INDEX={index}, {SHARD_COUNT_VARIABLE}={count}")
    raise UsageError("--shard auto: no shard index in the environment; set SLURM_ARRAY_TASK_ID and "
                     "SLURM_ARRAY_TASK_COUNT (Slurm array), or JOB_COMPLETION_INDEX and "
                     f"{SHARD_COUNT_VARIABLE} (Kubernetes Indexed Job), or pass --shard I/N")


def parse_shard(text: Optional[str], environ: Optional[Mapping[str, str]] = None) -> Optional[Shard]:
    """'I/N' (0-based I) or 'auto' (read from ``environ``) -> Shard; None or '' -> None.

    Args:
        environ: where 'auto' reads the scheduler's variables. Defaults to ``os.environ``.

    Raises:
        UsageError: a malformed value, or 'auto' without a scheduler's variables.
    """
    if not text:
        return None
    if text.strip().lower() == "auto":
        return shard_from_environment(os.environ if environ is None else environ)
    try:
        index, count = (int(p) for p in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard '{text}': {_EXPECTED}") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard '{text}': {_EXPECTED}")
    return Shard(index, count)
