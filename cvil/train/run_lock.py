"""One writer per run folder: an advisory `flock` on `<output_dir>/run.lock` that names its holder's pid.

Why: an orphaned grid child (its grid was SIGKILLed), a second grid started on the same runs, or a user resuming by
hand while a run is still going would otherwise write the same checkpoints and `metrics.jsonl` at once. `cvil train`
holds the lock for the whole run (`cvil.train.api.run`), so every entry point is covered; the grid runner takes it
briefly too, to close a cell's stale MLflow runs while nobody trains it.

The kernel drops a `flock` when its holder dies (SIGKILL included), so a lock file left behind by a dead process is
simply taken over; the file is removed on a clean release. (On NFS, Linux maps `flock` onto POSIX locks, which NFSv4
servers honour.)
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path

from cvil.errors import CvilError

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
HELD_MARKER = "is in use by pid"  # the grid runner recognises a refused child by this phrase


class RunFolderLocked(CvilError):
    """Another live process holds the run folder's lock."""

    def __init__(self, folder: Path, pid: int | None):
        self.folder, self.pid = folder, pid
        super().__init__(f"run folder {folder} {HELD_MARKER} {pid or '?'} (another cvil train or grid writes there); "
                         "wait for it or stop it, or use another output_dir")


class RunLock:
    """`with RunLock(folder):` or `lock = RunLock(folder).acquire(); ...; lock.release()`; refuses with
    `RunFolderLocked` (naming the holder's pid) instead of waiting."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            try:  # O_NOFOLLOW: a symlink planted as run.lock must not make the pid land in the file it names
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                raise CvilError(f"{self.path} is a symbolic link (cvil never makes one): remove it") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise RunFolderLocked(self.folder, read_pid(self.path)) from None
            if _same_file(fd, self.path):  # not a file its last holder unlinked while we opened it
                break
            os.close(fd)
        previous = _read_fd(fd)
        if previous and previous != os.getpid():
            log.info("%s: taking over the lock of pid %d, which is gone", self.folder, previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if _same_file(fd, self.path):
                self.path.unlink()
        except OSError:
            pass
        os.close(fd)  # closing drops the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # an exception between acquire and release must not keep an in-process lock
        try:
            self.release()
        except Exception:  # interpreter shutdown: the kernel drops the lock with the process anyway
            pass


def holder(folder: str | Path) -> int | None:
    """The pid holding `folder`'s lock, or None when nobody does (a leftover file of a dead pid counts as free).

    For reports and tests: the probe holds a shared lock for an instant, so do not poll it while a trainer starts."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except OSError:
        return read_pid(path) or -1
    finally:
        os.close(fd)


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _read_fd(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)
