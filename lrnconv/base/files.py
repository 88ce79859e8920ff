"""The one write path: every file lrnconv writes (models, external data, reports) goes through here.

What it guarantees:

* **Never a command's own input.** An ``OutputGuard`` holds the files a command reads (model,
  weights, prototxt, data); a target that is one of them — by path, symbolic link or hard
  link — is refused before anything is written (``--in-place`` leaves the model off the list).
* **Only regular files are replaced**, keeping their mode (and owner, where permitted); a
  device, a FIFO, a folder or a symbolic link is refused, and so is a target whose folder
  does not exist.
* **Atomic, together.** Each file is written under a hidden staging folder beside its target
  (``.lrnconv-<host>-<pid>-XXXX/``, same file system) and renamed onto it; files written
  together (a report and its model) are renamed in order only once all are complete, and if a
  rename fails the ones already moved are rolled back: both land or neither does.
* **Nothing left behind.** On an error, SIGINT or SIGTERM the staging folders are removed. A
  staging folder of a run that was killed (SIGKILL) is recognised by its name (this host, a
  process that no longer exists) and removed by the next write into that folder.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import tempfile
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

from .errors import OutputError

STAGING_PREFIX = ".lrnconv-"
"""Name prefix of the staging folders (what a killed run can leave behind)."""

Writer = Callable[[str], None]
"""Writes a file's content to the path it is given (companions may go beside it)."""


def _host() -> str:
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname())[:32] or "host"


def same_file(a: str, b: str) -> bool:
    """True when two paths name the same file (also through links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


class OutputGuard:
    """The files a command reads, which nothing it writes may replace.

    Args:
        protected: paths of the command's inputs (None entries are ignored).
    """

    def __init__(self, protected: Iterable[Optional[str]] = ()):
        self.protected = [os.fspath(p) for p in protected if p]

    def check(self, target: str) -> None:
        """Refuse a target that is an input, or that exists and is not a regular file.

        Raises:
            OutputError: naming the target and the reason.
        """
        folder = os.path.dirname(os.path.abspath(target))
        if not os.path.isdir(folder):
            raise OutputError(f"{target}: cannot write: folder '{folder}' does not exist")
        if os.path.islink(target):
            raise OutputError(f"{target}: is a symbolic link; lrnconv replaces regular files only")
        if os.path.lexists(target):
            mode = os.stat(target).st_mode
            if not stat.S_ISREG(mode):
                kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
                raise OutputError(f"{target}: is {kind}; lrnconv replaces regular files only")
        for source in self.protected:
            if os.path.lexists(target) and os.path.exists(source) and same_file(target, source):
                raise OutputError(f"{target}: is an input of this command ('{source}'); refusing to overwrite it")

    def check_all(self, targets: Sequence[str]) -> None:
        """``check`` every target, and refuse two targets that are the same file."""
        for i, target in enumerate(targets):
            self.check(target)
            for other in targets[:i]:
                if os.path.abspath(other) == os.path.abspath(target) or (
                        os.path.exists(target) and os.path.exists(other) and same_file(other, target)):
                    raise OutputError(f"{target}: two outputs of this command would be the same file")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(folder: str) -> List[str]:
    """Remove staging folders that runs killed on this host left in ``folder``; returns them."""
    removed = []
    prefix = f"{STAGING_PREFIX}{_host()}-"
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    for name in entries:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            removed.append(name)
    return removed


def _keep_mode(source: str, target: str) -> None:
    """Give ``target`` the mode (and owner, where permitted) of the file it will replace."""
    try:
        st = os.stat(source)
    except FileNotFoundError:
        return
    os.chmod(target, stat.S_IMODE(st.st_mode))
    with contextlib.suppress(PermissionError):
        os.chown(target, st.st_uid, st.st_gid)


class _Stage:
    """One target being written: its staging folder and the temporary path inside it."""

    def __init__(self, target: str):
        self.target = target
        self.folder = os.path.dirname(os.path.abspath(target))
        remove_stale_staging(self.folder)
        self.staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{_host()}-{os.getpid()}-", dir=self.folder)
        self.temporary = os.path.join(self.staging, os.path.basename(target))
        self.backup: Optional[str] = None
        self.moved: List[str] = []

    def companions(self) -> List[str]:
        return [n for n in sorted(os.listdir(self.staging)) if os.path.join(self.staging, n) != self.temporary]

    def place(self, guard: OutputGuard) -> None:
        """Move the written file (and its companions) into place, keeping a link to what it replaces."""
        companions = self.companions()
        for name in companions:
            guard.check(os.path.join(self.folder, name))
        if os.path.exists(self.target):
            _keep_mode(self.target, self.temporary)
            self.backup = os.path.join(self.staging, ".previous")
            os.link(self.target, self.backup)
        for name in companions:
            os.replace(os.path.join(self.staging, name), os.path.join(self.folder, name))
            self.moved.append(os.path.join(self.folder, name))
        os.replace(self.temporary, self.target)

    def roll_back(self) -> None:
        """Undo ``place``: the previous file back, the new ones gone."""
        with contextlib.suppress(OSError):
            if self.backup is not None:
                os.replace(self.backup, self.target)
            else:
                os.unlink(self.target)
        for companion in self.moved:
            with contextlib.suppress(OSError):
                os.unlink(companion)

    def clean(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


@contextlib.contextmanager
def _staging(targets: Sequence[str], guard: OutputGuard) -> Iterator[List[_Stage]]:
    """Stages for the targets; on a clean exit they are placed in order, all or none."""
    guard.check_all(targets)
    stages: List[_Stage] = []
    placed: List[_Stage] = []
    try:
        try:
            for target in targets:
                stages.append(_Stage(target))
            yield stages
            for stage in stages:
                stage.place(guard)
                placed.append(stage)
        except OSError as exc:
            raise OutputError(f"{exc.filename or targets[0]}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        for stage in reversed(placed):
            stage.roll_back()
        raise
    finally:
        for stage in stages:
            stage.clean()


def write_files(items: Sequence[Tuple[str, Writer]], guard: Optional[OutputGuard] = None) -> None:
    """Write several files so that all of them land, in order, or none does.

    Args:
        items: (target path, writer) pairs; each writer writes its file to the path it is given.
        guard: the command's inputs. Defaults to None (nothing protected beyond the rules above).

    Raises:
        OutputError: a target is refused, two targets are the same file, or a write or rename
            failed (nothing is left of this call's files).
    """
    with _staging([os.fspath(t) for t, _ in items], guard or OutputGuard()) as stages:
        for stage, (_, writer) in zip(stages, items):
            writer(stage.temporary)


def bytes_writer(data: bytes) -> Writer:
    """A writer of fixed content."""
    def write(path: str) -> None:
        with open(path, "wb") as handle:
            handle.write(data)
    return write


def write_bytes(path: str, data: bytes, guard: Optional[OutputGuard] = None) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    write_files([(path, bytes_writer(data))], guard)


def write_text(path: str, text: str, guard: Optional[OutputGuard] = None) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see the module docstring)."""
    write_bytes(path, text.encode("utf-8"), guard)
