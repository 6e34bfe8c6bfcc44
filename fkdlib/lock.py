"""One writer per output folder: a lock file held while ``fkd reproduce`` writes there.

The lock is ``fcntl.flock`` on ``<folder>/.fkd-reproduce.lock``, which holds the holder's pid
for the message a second writer gets. The operating system releases a flock when its holder
exits, however it exits (even ``kill -9``), so a lock file left behind by a dead process is
not a lock: the next writer takes it over without anyone deleting it by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import FolderInUse

LOCK_NAME = ".fkd-reproduce.lock"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, option: str = "--results-dir") -> Iterator[Path]:
    """Hold the lock of ``folder`` (made if missing) for the ``with`` block; yields the lock
    file's path. Raises :class:`~fkdlib.errors.FolderInUse` naming the holder's pid when
    another process holds it; ``option`` is the command-line option that picks another
    folder, for that message."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = _acquire(path, option)
    try:
        yield path
    finally:
        # unlink while still holding the lock, so a waiting writer cannot lock a file that is
        # about to vanish (_acquire checks that the file it locked is still the one at path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _acquire(path: Path, option: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            stop = f"kill {holder}" if holder else "stop it"
            raise FolderInUse(
                f"{path.parent} is being written by another fkd reproduce ({who}, lock file "
                f"{path}); wait for it to finish, stop it (Ctrl-C in its terminal, or {stop}), "
                f"or pass another {option}. A lock whose process has ended frees itself"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        opened = os.fstat(fd)
        if current is None or (current.st_dev, current.st_ino) != (opened.st_dev, opened.st_ino):
            os.close(fd)  # the previous holder removed this file as we opened it: start again
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd


def _read_pid(fd: int) -> int | None:
    """The pid a lock file names, or None if it names none (being written, or damaged)."""
    text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else None
