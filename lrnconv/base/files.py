"""The one write path: every file lrnconv writes (models, external data, reports) goes through here.

A file is first written under a hidden staging folder beside its target (``.lrnconv-XXXX/``,
same file system) and then renamed onto the target, so a crash or a full disk never leaves
a half-written file where the target should be. Companion files written into the same
staging folder (a model's external ``.data``) are moved beside the target just before it.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from .errors import OutputError

STAGING_PREFIX = ".lrnconv-"
"""Name prefix of the staging folders (what a killed run can leave behind)."""


@contextlib.contextmanager
def staged(path: str) -> Iterator[str]:
    """A temporary path to write ``path``'s content to; renamed onto ``path`` when the block ends.

    Args:
        path: the target file.

    Yields:
        A path in a fresh staging folder in the target's folder. Anything else the block
        writes into that folder lands beside the target too.

    Raises:
        OutputError: the target's folder does not exist or a write or rename failed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"{path}: cannot write: folder '{folder}' does not exist")
    try:
        staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    name = os.path.basename(path)
    try:
        yield os.path.join(staging, name)
        for companion in sorted(os.listdir(staging)):
            if companion != name:
                os.replace(os.path.join(staging, companion), os.path.join(folder, companion))
        os.replace(os.path.join(staging, name), path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``staged``)."""
    with staged(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see ``staged``)."""
    write_bytes(path, text.encode("utf-8"))


def same_file(a: str, b: str) -> bool:
    """True when two paths name the same file (also through links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
