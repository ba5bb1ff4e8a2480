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

from ._format import user_name
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

    def __init__(self, path: Path, fd: int, writable: bool = True):
        self.path = path
        self._fd: int | None = fd
        self._writable = writable

    @classmethod
    def acquire(cls, data_dir: str | os.PathLike) -> "DataDirLock | None":
        """Take the lock of ``data_dir`` (created if missing), or raise :class:`DataDirInUse`.

        Returns None when the directory cannot be created or written: the store's own
        error then says what is wrong with it. A lock file this user may only read (``sudo
        edge ...`` made it) still locks (``flock`` needs no write access); it just cannot
        hold this process's pid. One it may not even read is a :class:`StoreError` naming it.
        """
        directory = Path(os.path.abspath(data_dir))
        path = directory / LOCK_FILE
        writable = True
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # Not O_TRUNC: the file may hold the pid of the process that has the lock.
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError:
            try:
                if not path.exists():
                    return None  # the directory is not writable: the store says so
            except OSError:
                return None  # nor searchable: the store says so
            try:
                fd, writable = os.open(path, os.O_RDONLY), False
            except OSError:
                raise StoreError(_unreadable(path)) from None
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
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd, writable)

    def release(self) -> None:
        if self._fd is not None:
            if self._writable:
                os.ftruncate(self._fd, 0)  # the pid no longer names the holder
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    """The holder's pid as its file says, if that process exists (a holder that could not
    write the file leaves the pid of an earlier one, which may be gone)."""
    try:
        pid = int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None
    if pid <= 0:  # (kill(0) and kill(-1) mean process groups)
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # it exists, as another user
    return pid


def _unreadable(path: Path) -> str:
    stat = path.stat()
    owner, me = user_name(stat.st_uid), user_name(os.geteuid())
    return (f"cannot open the lock file {path}: it belongs to {owner} (mode {stat.st_mode & 0o777:04o}) and edge "
            f"runs as {me}; give it to {me} (sudo chown {me} {path}) or delete it while no edge runs")
