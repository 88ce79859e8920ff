"""What a zoo run leaves under its output folder so that a rerun can skip finished work.

Every model that finished (converted, or failed with its reason) gets a *completion
record*, ``OUT/<model>/zoo-record.json``, written after all of the model's files and
through the one write path (so it is whole or absent). It holds:

- ``input_sha256``: the model file's hash (and its ``.caffemodel``'s); a built-in replica
  is identified by its name and variant (and the lrnconv version below);
- ``fingerprint``: the lrnconv / onnx / onnxruntime versions and every option that changes a
  result (strategies, providers, samples, seed, tolerances, timing runs);
- ``entries``: the model's report entries (the result), and ``outputs``: the file each
  strategy wrote with its size.

A rerun skips a model whose record has the same hash and fingerprint and whose output
files are still there with the recorded sizes, and redoes every other one. A model whose
worker died (a killed process, a lost Dask worker) gets no record, so it is redone.

A run holds an advisory lock on the output folder (``flock``; released by the kernel when
the process dies, even by SIGKILL) and, holding it, removes the staging folders
(``lrnconv.base.files.STAGING_PREFIX``) that a killed run left behind.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
from typing import Dict, Iterator, List, Mapping, Optional, Sequence

try:
    import fcntl
except ImportError:  # not POSIX: no lock, the rest works
    fcntl = None

from ..base.errors import OutputError
from ..base.files import STAGING_PREFIX, write_text
from ..base.text import json_text

log = logging.getLogger(__name__)

RECORD_NAME = "zoo-record.json"
RECORD_VERSION = 1
_CHUNK = 1 << 20


def versions() -> Dict[str, str]:
    """The versions that a result depends on (lrnconv, onnx, onnxruntime)."""
    found = {}
    for key, dists in (("lrnconv", ("lrnconv",)), ("onnx", ("onnx",)),
                       ("onnxruntime", ("onnxruntime", "onnxruntime-gpu"))):
        found[key] = "unknown"
        for dist in dists:
            try:
                found[key] = importlib.metadata.version(dist)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def fingerprint(options: Mapping[str, object]) -> Dict[str, object]:
    """What two runs must share for one's results to stand for the other's."""
    return {"versions": versions(), "options": dict(options)}


def file_sha256(paths: Sequence[str]) -> str:
    """sha256 over the files' bytes (each preceded by its length, so boundaries count)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(os.path.getsize(path)).encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


def record_path(outdir: str, name: str) -> str:
    return os.path.join(outdir, name, RECORD_NAME)


def write_record(outdir: str, name: str, record: Mapping[str, object]) -> None:
    """Write a model's completion record (after its model files)."""
    path = record_path(outdir, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_text(path, json_text({"record_version": RECORD_VERSION, **record}))


def read_record(outdir: str, name: str) -> Optional[Dict[str, object]]:
    """A model's completion record, or None (absent, unreadable or of another version)."""
    try:
        with open(record_path(outdir, name), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("record_version") != RECORD_VERSION:
        return None
    return record


def stale_reason(record: Optional[Mapping[str, object]], outdir: str, name: str, input_sha256: str,
                 expected: Mapping[str, object]) -> Optional[str]:
    """Why ``record`` does not stand for a fresh conversion of the model, or None when it does."""
    if record is None:
        return "no completion record"
    if record.get("input_sha256") != input_sha256:
        return "the input changed"
    if record.get("fingerprint") != expected:
        return "made with other options or versions"
    for file, size in (record.get("outputs") or {}).items():
        path = os.path.join(outdir, name, file)
        if not os.path.isfile(path) or os.path.getsize(path) != size:
            return f"{file} is missing or changed"
    return None


def output_sizes(outdir: str, name: str, entries: Sequence[Mapping[str, object]]) -> Dict[str, int]:
    """The files a model's entries point at (relative to its folder) with their sizes."""
    sizes = {}
    for entry in entries:
        for output in (entry.get("output"), (entry.get("int8") or {}).get("output")):
            if output:
                file = os.path.basename(str(output))
                sizes[file] = os.path.getsize(os.path.join(outdir, name, file))
    return sizes


def remove_staging(outdir: str) -> List[str]:
    """Remove the staging folders that a killed run left anywhere under ``outdir``.

    Only call it while holding ``locked(outdir)``: a live run's staging folders look the same.
    """
    removed = []
    for folder, dirs, _ in os.walk(outdir):
        for name in list(dirs):
            if name.startswith(STAGING_PREFIX):
                path = os.path.join(folder, name)
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
                dirs.remove(name)
    for path in removed:
        log.info("removed %s, left by an interrupted run", path)
    return removed


@contextlib.contextmanager
def locked(outdir: str) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``outdir`` (one zoo run per output folder).

    Raises:
        OutputError: another live process holds it.
    """
    if fcntl is None:
        yield
        return
    fd = os.open(outdir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"{outdir}: another lrnconv zoo run is writing to this folder; "
                              "give each run (each shard) its own -o folder") from None
        yield
    finally:
        os.close(fd)
