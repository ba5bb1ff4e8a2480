"""One data directory, one process (SPEC §3 item 8): an exclusive lock held while edge serves.

LMDB itself lets several processes share an environment, so two ``edge start`` on one
``--data-dir`` would both deliver every queue message and both fire every cron slot. The
lock is ``flock`` on ``<data dir>/edge.lock``: the kernel drops it when the process ends,
however it ends (``kill -9``, a power cut), so a stale lock file never blocks a restart. The
file holds the holder's pid, for the message the second process prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import StoreError

__all__ = ["DataDirLock", "DataDirInUse", "LOCK_FILE"]

#: The lock file's name inside the data directory (next to LMDB's data.mdb and lock.mdb).
LOCK_FILE = "edge.lock"


class DataDirInUse(StoreError):
    """Another edge process holds the data directory's lock."""

    def __init__(self, message: str, pid: int | None):
        super().__init__(message)
        self.pid = pid


class DataDirLock:
    """The lock on one data directory; released by :meth:`release` or when the process ends."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: str | os.PathLike) -> "DataDirLock | None":
        """Take the lock of ``data_dir`` (created if missing), or raise :class:`DataDirInUse`.

        Returns None when the directory cannot be created or written: the store's own
        error then says what is wrong with it.
        """
        directory = Path(os.path.abspath(data_dir))
        path = directory / LOCK_FILE
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # Not O_TRUNC: the file may hold the pid of the process that has the lock.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = _read_pid(fd)
            os.close(fd)
            holder = f"pid {pid}" if pid is not None else "pid unknown"
            raise DataDirInUse(
                f"the data directory {directory} is in use by another edge ({holder}); "
                "stop that one first, or pass another --data-dir (or EDGE_DATA_DIR)", pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None
