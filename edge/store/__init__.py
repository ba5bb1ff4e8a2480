"""The store: one LMDB environment, read on the event loop thread, written by one writer thread.

Every write is a function ``fn(txn)`` handed to :meth:`Store.write`. The writer thread drains
whatever functions are waiting into one LMDB transaction and one fsync (group commit), then
hands the loop thread, in one callback, every ``txn.after_commit`` hook of the batch (in
commit order) and every waiter to wake (asyncio tasks, trio tasks or threads alike). A function
that raises is rolled back alone (it runs in a nested transaction); the rest of its batch
commits, and the hooks it registered are dropped with it.

The map grows by itself; growth waits until no read transaction is open (LMDB forbids
``set_mapsize`` while one is), and reads that start meanwhile wait for it.

A process that dies inside a read transaction (``kill -9`` or the OOM killer during an
offline ``edge dlq list``) leaves its slot in ``lock.mdb``, and LMDB reuses no page freed after
that reader's snapshot: the file grows with every write until each process lets go. The writer
clears such slots (``mdb_reader_check``) before its first commit and then before a commit at
most every :data:`READER_CHECK_INTERVAL` seconds (no writes, no growth), and says so when it
found one.

Only this package imports ``lmdb``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import queue
import shlex
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import lmdb
import trio

from .._format import mib, user_name
from .._loops import Completion
from ..errors import StorageFull, StoreError

__all__ = ["Store", "Txn", "TABLES", "backup", "compact", "remove_stopped_compaction", "COMPACT_DIR"]

T = TypeVar("T")

#: Named LMDB databases. Adding one is cheap; renaming one loses its data.
TABLES = ("meta", "state", "queue", "dlq", "streams", "cron", "logs", "spans")

#: First map size. LMDB's own default (10 MiB) is "set low to encourage a crash"; the map is
#: virtual address space, not disk, and doubles whenever it fills.
INITIAL_MAP_SIZE = 64 << 20
#: Map size beyond the file's when a store is opened.
OPEN_HEADROOM = 8 << 20
#: Largest single growth step, so a big store does not reserve gigabytes at once.
MAX_GROWTH = 1 << 30
#: Free bytes on the data directory's disk before a full disk counts as recovered (logged once).
RECOVERED_FREE = 2 << 20
#: Upper bound of functions per transaction: keeps one batch's latency bounded under load.
MAX_BATCH = 2048
#: Seconds between looks for reader slots of processes that died while reading.
READER_CHECK_INTERVAL = 5.0

_STOP = object()


class Txn:
    """A transaction over the named tables; what write and read functions receive."""

    __slots__ = ("_txn", "_dbs", "_after")

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, Any], after: list | None = None):
        self._txn = txn
        self._dbs = dbs
        self._after = after

    def after_commit(self, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` on the loop thread once this write is durable (never if it is rolled
        back). Hooks run once per batch, in commit order, before the writers are woken."""
        if self._after is None:
            raise StoreError("after_commit is only available inside Store.write functions")
        self._after.append(fn)

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._dbs[table])

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self._dbs[table])

    def delete(self, table: str, key: bytes) -> bool:
        return self._txn.delete(key, db=self._dbs[table])

    def scan(
        self, table: str, prefix: bytes = b"", *, start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield ``(key, value)`` for keys starting with ``prefix``, in key order.

        ``start`` (forward only) skips to the first key ``>= start`` within the prefix.
        """
        cursor = self._txn.cursor(db=self._dbs[table])
        if reverse:
            end = _prefix_end(prefix)
            positioned = cursor.set_range(end) if end is not None else cursor.last()
            if positioned and end is not None:
                positioned = cursor.prev()
            elif not positioned:
                positioned = cursor.last()
            while positioned:
                key = cursor.key()
                if not key.startswith(prefix):
                    if key < prefix:
                        return
                else:
                    yield key, cursor.value()
                positioned = cursor.prev()
            return
        if not cursor.set_range(start if start is not None and start > prefix else prefix):
            return
        for key, value in cursor:
            if not key.startswith(prefix):
                return
            yield key, value

    def groups(self, table: str, prefix: bytes = b"", sep: bytes = b"\x00") -> Iterator[bytes]:
        """The distinct key segments between ``prefix`` and the next ``sep``, in key order.

        Jumps past each group with one cursor seek instead of reading its keys: for
        ``group + sep + key`` layouts (state, streams), listing groups costs one seek per group.
        """
        after_sep = bytes([sep[0] + 1])
        start = prefix
        while True:
            item = next(self.scan(table, prefix, start=start), None)
            if item is None:
                return
            group = item[0][len(prefix):].split(sep, 1)[0]
            yield group
            start = prefix + group + after_sep

    def first(self, table: str, prefix: bytes = b"") -> tuple[bytes, bytes] | None:
        for item in self.scan(table, prefix):
            return item
        return None

    def count(self, table: str) -> int:
        return self._txn.stat(self._dbs[table])["entries"]

    def count_prefix(self, table: str, prefix: bytes, limit: float = float("inf")) -> int:
        """How many keys start with ``prefix``, counting no further than ``limit`` (keys only:
        no value is read)."""
        cursor = self._txn.cursor(db=self._dbs[table])
        if not cursor.set_range(prefix):
            return 0
        n = 0
        for key in cursor.iternext(keys=True, values=False):
            if n >= limit or not key.startswith(prefix):
                break
            n += 1
        return n


def _prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class _OpFailed(Exception):
    """An op of a batch raised: the batch is run again with one child transaction per op."""


class _Op:
    __slots__ = ("fn", "done", "result", "error", "after", "blocking")

    def __init__(self, fn: Callable[[Txn], Any], done: Completion | None = None,
                 blocking: threading.Event | None = None):
        self.fn = fn
        self.done = done  # woken on the loop thread
        self.blocking = blocking  # woken on the writer thread (a caller blocking the loop thread)
        self.result: Any = None
        self.error: BaseException | None = None
        self.after: list = []


#: Where :func:`compact` writes its copy, beside data.mdb.
COMPACT_DIR = ".compact"
#: LMDB's files in the data directory, which it opens read-write.
_LMDB_FILES = ("data.mdb", "lock.mdb")


def _unopenable_files(path: Path) -> str | None:
    """Which of LMDB's files this process may not open read-write, and the fix (None: all open).

    A folder the service user owns may hold files made by root (``sudo edge start`` once):
    then the fix is chown. A file of this user's that is read-only needs chmod.
    """
    denied = []
    for name in _LMDB_FILES:
        file = path / name
        try:
            os.close(os.open(file, os.O_RDWR))
        except PermissionError:
            denied.append((file, file.stat()))
        except OSError:
            continue
    if not denied:
        return None
    files = " and ".join(str(file) for file, _ in denied)
    them = "them" if len(denied) > 1 else "it"
    me = os.geteuid()
    others = {st.st_uid for _, st in denied if st.st_uid != me}
    if others:
        owner = " and ".join(user_name(uid) for uid in sorted(others))
        user = user_name(me)
        return (f"{files} {'belong' if len(denied) > 1 else 'belongs'} to {owner}, and edge runs as {user}, "
                f"who may not write {them}; give the data directory to {user} "
                f"(sudo chown -R {shlex.quote(user)} {shlex.quote(str(path))}) or run edge as {owner}")
    modes = {f"{st.st_mode & 0o7777:04o}" for _, st in denied}
    if len(modes) == 1:
        what = f"{files} {'are' if len(denied) > 1 else 'is'} read-only (mode {modes.pop()})"
    else:
        what = " and ".join(f"{file} (mode {st.st_mode & 0o7777:04o})" for file, st in denied) + " are read-only"
    return (f"{what}; make {them} writable "
            f"(chmod u+rw {' '.join(shlex.quote(str(file)) for file, _ in denied)})")


class Store:
    """The LMDB environment under the data directory, with its writer thread.

    Use :meth:`open`; call :meth:`start_writer` from inside trio before :meth:`write`.
    """

    def __init__(self, env: lmdb.Environment, path: Path, durability: str, *, readonly: bool = False):
        self.path = path
        self.durability = durability
        self._env = env
        self._dbs = {name: env.open_db(name.encode(), create=not readonly) for name in TABLES}
        self._ops: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        #: ``fn(callback, *args)`` that runs ``callback`` soon on the loop thread, from any thread.
        self._notify: Callable | None = None
        #: ``fn(message, exc)`` for an after_commit hook that raised (logged, never fatal).
        self.on_hook_error: Callable[[str, BaseException], None] | None = None
        #: ``fn(level, message)``: said once when the disk fills up, once when writes work again.
        self.on_notice: Callable[[str, str], None] | None = None
        #: True from a write that found the disk full until one succeeds with RECOVERED_FREE
        #: free (small writes fit in reused pages on a disk that is still full).
        self.full = False
        #: While ``full``: a write succeeded since the last that found the disk full (a disk whose
        #: data.mdb grew into its space may never free RECOVERED_FREE, yet take writes again).
        self.wrote_while_full = False
        # Map growth and readers: growth waits for open reads, new reads wait for growth.
        self._readers = 0
        self._growing = False
        self._gate = threading.Condition()
        #: Figures for `GET /__edge/health` and the benchmarks.
        self.commits = 0
        self.ops_committed = 0
        #: Seconds between looks for dead readers' slots (see the module's docstring).
        self.reader_check_interval = READER_CHECK_INTERVAL
        self._readers_checked = 0.0  # time.monotonic() of the last look (0: at the first commit)

    @classmethod
    def open(cls, path: str | os.PathLike, durability: str = "durable", *, readonly: bool = False) -> "Store":
        """Open (creating if needed) the store in directory ``path``.

        ``readonly``: only for reading a store on a filesystem mounted read-only (``edge
        backup`` from a failing card): no lock file is written, which is safe only because
        nothing can be writing there.

        Raises:
            StoreError: the directory cannot be created or written, or is not an edge store.
        """
        if durability not in ("durable", "relaxed"):
            raise StoreError(f'--durability: expected "durable" or "relaxed", got "{durability}"')
        path = Path(path)
        fix = "pass --data-dir (or EDGE_DATA_DIR) naming a writable directory"
        if not readonly:  # (read-only: nothing to create, nothing to probe)
            try:
                path.mkdir(parents=True, exist_ok=True)
                probe = path / ".write-test"
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                raise StoreError(f"cannot write to the data directory {path}: {exc.strerror}; {fix}") from None
        data_file = path / "data.mdb"
        # Room beyond the file: a table this version adds is created at once (MDB_MAP_FULL else).
        size = data_file.stat().st_size if data_file.exists() else 0
        map_size = max(INITIAL_MAP_SIZE, size + OPEN_HEADROOM)
        try:
            env = lmdb.open(
                str(path),
                map_size=map_size,
                max_dbs=len(TABLES) + 2,
                # durable: fsync data and meta on each commit; relaxed keeps LMDB's integrity
                # (no corruption) but a power cut may undo the last committed batch.
                sync=True,
                metasync=durability == "durable",
                readahead=False,  # random access on small RAM: do not pull pages we never read
                lock=not readonly,
                readonly=readonly,
            )
        except (lmdb.InvalidError, lmdb.VersionMismatchError) as exc:
            raise StoreError(f"the store in {path} is damaged: data.mdb is not a store edge can read ({exc}). "
                             f"Restore a copy made with `edge backup` into {path}, or move {path} aside to "
                             "start with an empty store") from None
        except lmdb.Error as exc:
            # LMDB says "<dir>: Permission denied" when a file inside it is the problem (a
            # folder it could not write was refused above)
            reason = _unopenable_files(path) if isinstance(exc, lmdb.ReadonlyError) else None
            raise StoreError(f"cannot open the store in {path}: {reason or f'{exc}; {fix}'}") from None
        # A damaged file must stop edge with a message, not a traceback; a cut-off one would
        # not even get that far: LMDB maps the file, and reading a page past its end is SIGBUS.
        problem = _cut_off(env, data_file)
        if problem is None:
            try:
                return cls(env, path, durability, readonly=readonly)
            except lmdb.Error as exc:  # a page of the table index is not what it should be
                problem = f"its tables cannot be read ({exc})"
        env.close()
        raise StoreError(f"the store in {path} is damaged: {problem}. Restore a copy made with `edge backup` "
                         f"into {path}, or move {path} aside to start with an empty store") from None

    # -- reads ----------------------------------------------------------------------------

    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a read transaction on the calling thread and return its result."""
        gate = self._gate
        with gate:
            while self._growing:
                gate.wait()
            self._readers += 1
        try:
            with self._env.begin(buffers=False) as txn:
                return fn(Txn(txn, self._dbs))
        finally:
            with gate:
                self._readers -= 1
                if not self._readers:
                    gate.notify_all()

    # -- writes ---------------------------------------------------------------------------

    def start_writer(self, notify: Callable | None = None) -> None:
        """Start the writer thread.

        Args:
            notify: ``fn(callback, *args)`` that runs ``callback(*args)`` soon on the loop
                thread and may be called from any thread (the host loop's
                ``call_soon_threadsafe``). Default: trio's, so call this from inside trio.
        """
        if self._thread is not None:
            return
        self._notify = notify or trio.lowlevel.current_trio_token().run_sync_soon
        self._thread = threading.Thread(target=self._writer_loop, name="edge-store-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Txn], Any], *, blockable: bool = False) -> Completion:
        """Queue ``fn`` for the next group commit now; the completion is set (on the loop
        thread) with its result, or failed with its error, once the batch is durable.

        ``blockable``: the loop thread may also block until the batch is durable, with
        ``completion.blocking.wait()`` (set on the writer thread, so waiting on the loop thread
        cannot deadlock): Motia 1.0.4's synchronous writes are queued, and only a read that
        needs one waits for it (``motia._runtime``)."""
        op = _Op(fn, Completion())
        if blockable and self._thread is not None:
            op.blocking = op.done.blocking = threading.Event()
        if self._thread is None:
            self._commit([op])
            self._finish([op])
        else:
            self._ops.put(op)
        return op.done

    async def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in the next group commit; return its result once it is durable.

        Works from an asyncio task and from a trio task. ``fn`` must be synchronous and may run
        more than once (a batch is replayed after the map grows), so it must not have side
        effects outside the transaction (use ``txn.after_commit``). Cancelling the caller does
        not cancel the write: it completes, the caller just stops waiting.
        """
        return await self.submit(fn).wait()

    def write_blocking(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in the next group commit and block the calling thread until it is durable.

        For callers that cannot await: sync handlers in their threads, and Motia's synchronous
        calls made on the loop thread itself (that blocks every request for one commit)."""
        if self._thread is None or self._thread is threading.current_thread():
            return self.write_sync(fn)
        op = _Op(fn, None, threading.Event())
        self._ops.put(op)
        self.wait_durable(op.blocking)
        if op.error is not None:
            raise op.error
        return op.result

    def wait_durable(self, event: threading.Event) -> None:
        """Block the calling thread until the writer thread sets ``event`` (a write's
        ``blocking`` event: its batch is committed). A writer that has died never will: that is
        a StoreError, not a hang of the loop thread.

        Raises:
            StoreError: the writer thread stopped before committing the write.
        """
        while not event.wait(1.0):
            thread = self._thread
            if (thread is None or not thread.is_alive()) and not event.is_set():
                raise StoreError(f"the store's writer thread for {self.path} stopped before the write was committed")

    def write_nowait(self, fn: Callable[[Txn], Any]) -> None:
        """Queue ``fn`` for the next group commit without waiting (logs, spans)."""
        if self._thread is None:
            self.write_sync(fn)
            return
        self._ops.put(_Op(fn))

    def write_sync(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in its own transaction on the calling thread (CLI, tests, no writer);
        its after_commit hooks run before this returns."""
        op = _Op(fn)
        self._commit([op])
        self._run_hooks([op])
        if op.error is not None:
            raise op.error
        return op.result

    def _writer_loop(self) -> None:
        ops = self._ops
        while True:
            first = ops.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    op = ops.get_nowait()
                except queue.Empty:
                    break
                if op is _STOP:
                    stop = True
                    break
                batch.append(op)
            self._commit(batch)
            for op in batch:
                if op.blocking is not None:
                    op.blocking.set()
            if any(op.done is not None or op.after for op in batch):
                try:
                    self._notify(self._finish, batch)
                except (trio.RunFinishedError, RuntimeError):
                    pass  # the loop is gone (stopping): nobody is left to wake
            if stop:
                return

    def _finish(self, batch: list[_Op]) -> None:
        """On the loop thread, once ``batch`` is durable: its hooks in order, then its waiters."""
        self._run_hooks(batch)
        for op in batch:
            if op.done is not None:
                if op.error is not None:
                    op.done.fail(op.error)
                else:
                    op.done.set(op.result)

    def _run_hooks(self, batch: list[_Op]) -> None:
        for op in batch:
            if op.error is not None:
                continue
            for hook in op.after:
                try:
                    hook()
                except Exception as exc:  # a hook must not stop the others (or the loop)
                    if self.on_hook_error is not None:
                        self.on_hook_error(f"an after-commit hook failed: {type(exc).__name__}: {exc}", exc)

    def _commit(self, batch: list[_Op]) -> None:
        if time.monotonic() - self._readers_checked >= self.reader_check_interval:
            self._clear_dead_readers()
        isolated = len(batch) == 1  # (alone, an op that fails would otherwise run twice)
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    (self._apply_isolated if isolated else self._apply)(txn, batch)
                self.commits += 1
                self.ops_committed += len(batch)
                if self.full:
                    self.wrote_while_full = True
                    if self.has_room_again():
                        # (on a nearly full disk small commits fit in freed pages while big ones
                        # do not: without the margin the log would flap between full and not)
                        self.full = False
                        self._notice("info", f"the disk holding {self.path} has space again; writes succeed")
                return
            except _OpFailed:
                isolated = True  # (the batch's writes were aborted) redo it, so the op fails alone
            except lmdb.MapFullError:
                self._grow()
            except lmdb.Error as exc:
                error = self._describe(exc)
                for op in batch:
                    op.error = error
                    op.after = []
                if isinstance(error, StorageFull):
                    self.wrote_while_full = False
                    if not self.full:
                        self.full = True
                        self._notice("error", f"{error}. Until then writes answer 507 and queue messages "
                                              "wait; reads go on")
                return

    def _apply(self, txn, batch: list[_Op]) -> None:
        """Run every op of ``batch`` in ``txn``; raises :class:`_OpFailed` as soon as one raises.
        The common case: one transaction and no nested ones (a child transaction per op, which
        :meth:`_apply_isolated` needs, costs ~3 µs of the writer's time, as much as a small op)."""
        dbs = self._dbs
        for op in batch:
            op.error = None
            op.after = []
            try:
                op.result = op.fn(Txn(txn, dbs, op.after))
            except lmdb.MapFullError:
                raise
            except Exception:
                raise _OpFailed from None

    def _apply_isolated(self, txn, batch: list[_Op]) -> None:
        """Run each op of ``batch`` in its own child transaction of ``txn``: an op that raises
        is rolled back and fails alone (``op.error``); the others commit."""
        for op in batch:
            op.error = None
            op.after = []
            child = self._env.begin(write=True, parent=txn)
            try:
                op.result = op.fn(Txn(child, self._dbs, op.after))
            except lmdb.MapFullError:
                child.abort()
                raise
            except Exception as exc:  # the op fails alone; its batch commits
                child.abort()
                op.error = self._describe(exc) if isinstance(exc, lmdb.Error) else exc
                op.after = []
            else:
                child.commit()

    def _clear_dead_readers(self) -> None:
        self._readers_checked = time.monotonic()
        try:
            cleared = self._env.reader_check()
        except lmdb.Error:
            return
        if cleared:
            self._notice("warn", f"{self.path}: cleared {cleared} read slot(s) left by a process that died while "
                                 "reading the store (killed during an `edge` command?); until then no space freed "
                                 "since it began was reused, so data.mdb grew with every write")

    def _notice(self, level: str, message: str) -> None:
        """Tell ``on_notice``, on the loop thread when there is one (the tracer is not thread-safe)."""
        if self.on_notice is None:
            return
        try:
            if self._notify is not None and self._thread is threading.current_thread():
                self._notify(self.on_notice, level, message)
            else:
                self.on_notice(level, message)
        except Exception:
            pass  # telling must never stop the writer

    def _grow(self) -> None:
        """Enlarge the map, once no read transaction is open (LMDB's rule for set_mapsize)."""
        gate = self._gate
        with gate:
            self._growing = True
            while self._readers:
                gate.wait()
        try:
            size = self._env.info()["map_size"]
            self._env.set_mapsize(size + min(size, MAX_GROWTH))
        finally:
            with gate:
                self._growing = False
                gate.notify_all()

    def _describe(self, exc: lmdb.Error) -> StoreError:
        text = str(exc)
        code = getattr(exc, "errno", None)
        if "No space left" in text or code == errno.ENOSPC or (
                ("Input/output error" in text or code == errno.EIO) and self._disk_nearly_full()):
            return StorageFull(
                f"the disk holding {self.path} is full; nothing was written. "
                "Free space on that disk or move --data-dir", str(self.path)
            )
        return StoreError(f"writing to the store in {self.path} failed: {text}")

    def _free_bytes(self) -> int | None:
        """Free bytes on the disk holding the data directory (None: cannot tell)."""
        try:
            return shutil.disk_usage(self.path).free
        except OSError:
            return None

    def has_room_again(self) -> bool:
        """Enough free space to call the disk recovered (0 free is full, not "cannot tell")."""
        free = self._free_bytes()
        return free is None or free >= RECOVERED_FREE

    def _disk_nearly_full(self) -> bool:
        """LMDB reports a full tmpfs as an I/O error when its pages cannot be written back."""
        free = self._free_bytes()
        return free is not None and free < 4 * self._env.stat()["psize"] * 64

    # -- lifecycle ------------------------------------------------------------------------

    def stop_writer(self) -> None:
        """Commit what is queued and stop the writer thread (blocks until it has)."""
        if self._thread is not None:
            self._ops.put(_STOP)
            self._thread.join()
            self._thread = None

    def close(self) -> None:
        self.stop_writer()
        self._env.close()

    def info(self) -> dict[str, Any]:
        info = self._env.info()
        return {"path": str(self.path.absolute()), "map_size": info["map_size"], "durability": self.durability}

    # -- copies ---------------------------------------------------------------------------

    def copy_to(self, directory: str | os.PathLike) -> int:
        """Write a compacted copy of the store as ``directory``/data.mdb; return its size.

        The copy is one read transaction: consistent, and safe while a server writes (it
        sees the last commit before it began). Free pages are left out, so the copy holds
        only live data. ``directory`` must exist and hold no data.mdb. The file is fsynced.
        """
        directory = Path(directory)

        def write_copy(txn):
            self._env.copy(str(directory), compact=True, txn=txn._txn)

        try:
            self.read(write_copy)
        except lmdb.Error as exc:
            raise self._copy_error(exc, directory) from None
        copy = directory / "data.mdb"
        _fsync(copy)
        _fsync(directory)
        return copy.stat().st_size

    def _copy_error(self, exc: lmdb.Error, directory: Path) -> StoreError:
        text = str(exc)
        if "No space left" in text or getattr(exc, "errno", None) == errno.ENOSPC:
            return StorageFull(f"the disk holding {directory} has no room for a copy of the store "
                               f"({mib(self.live_bytes())} or less); free space there or copy to another "
                               "disk", str(directory))
        return StoreError(f"copying the store in {self.path} to {directory} failed: {text}")

    def live_bytes(self) -> int:
        """An upper bound of what the store holds: its pages up to the last one in use."""
        return _used_bytes(self._env)


def backup(path: str | os.PathLike, dest: str | os.PathLike, durability: str = "durable") -> int:
    """Write a compacted copy of the store in ``path`` as ``dest``/data.mdb (``dest``: a new
    or empty directory); return its size. Safe while edge serves (:meth:`Store.copy_to`).
    ``data.mdb`` appears only once whole, and a power cut after the return keeps it."""
    dest = Path(dest)
    created = not dest.exists()
    partial = dest / ".partial"
    try:
        dest.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)  # what a backup killed halfway left
        partial.mkdir()
    except OSError as exc:
        raise StoreError(f"cannot write the backup to {dest}: {_reason(exc, dest)}") from None
    readonly = _read_only_fs(Path(path))
    if not readonly and not os.access(path, os.W_OK):  # a reader registers in lock.mdb: it writes
        owner = user_name(Path(path).stat().st_uid)
        raise StoreError(f"{user_name(os.geteuid())} may not write {path}, and reading the store writes its lock "
                         f"file: run the backup as {owner} (sudo -u {shlex.quote(owner)} ...)")
    store = Store.open(path, durability, readonly=readonly)
    try:
        size = store.copy_to(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        store.close()
    try:  # a `sudo edge backup` restored later must not hand the service's store to root
        _same_owner(partial / "data.mdb", Path(path) / "data.mdb")
    except OSError:
        pass  # a disk without owners (a FAT stick): the restore's chown is on the operator
    os.replace(partial / "data.mdb", dest / "data.mdb")
    partial.rmdir()
    _fsync(dest)
    if created:
        _fsync(dest.parent)
    return size


def compact(path: str | os.PathLike, durability: str = "durable") -> tuple[int, int]:
    """Shrink the store in ``path`` to its live data; return the file's (old, new) size.

    ``data.mdb`` never shrinks by itself: pages freed by deletes are reused, but the file
    keeps the size of its busiest day (or of the weeks a dead reader held old pages). This
    writes a compacted copy next to it and renames it over the original, so a crash at any
    point leaves one complete store. The caller holds the data directory's lock (no edge
    serves it); this also makes sure no other process has LMDB's environment open (an
    offline ``edge dlq list`` in another shell): it would go on reading the old file.

    Raises:
        StoreError: another process has the store open, or the copy failed (the store is
            as it was). StorageFull: no room on that disk for the copy.
    """
    path = Path(path)
    data_file = path / "data.mdb"
    if not data_file.exists():
        raise StoreError(f"no store in {path} (no data.mdb): pass the --data-dir edge runs with")
    before = data_file.stat().st_size
    work = path / COMPACT_DIR
    shutil.rmtree(work, ignore_errors=True)  # what a compaction killed halfway left
    try:
        work.mkdir()
    except OSError as exc:
        raise StoreError(f"cannot compact the store in {path}: {_reason(exc, path)}; compact writes its copy "
                         "beside data.mdb: `edge backup DEST` copies the store to another disk instead") from None
    try:
        store = Store.open(path, durability)
        try:
            after = store.copy_to(work)
        finally:
            store.close()
        # LMDB keeps its reader table and last transaction id in lock.mdb; the compacted copy
        # restarts the ids at 1. The first process to open an environment resets lock.mdb;
        # holding the byte LMDB locks to find out (fcntl, byte 0) proves that nobody has it
        # open, and whoever opens it next is first: it resets lock.mdb for the new file.
        lock_fd = os.open(path / "lock.mdb", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.lockf(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
            except OSError:
                raise StoreError(f"another process has the store in {path} open (an edge command in another "
                                 "shell?); let it finish, then compact again. Nothing was changed") from None
            _same_owner(work / "data.mdb", data_file)
            os.replace(work / "data.mdb", data_file)
            _fsync(path)
            # Opened here while the byte is held, LMDB sees itself first (fcntl locks are per
            # process) and resets lock.mdb now, before anyone waiting for the byte gets in.
            Store.open(path, durability).close()
        finally:
            os.close(lock_fd)  # (after close(): closing any descriptor of a file drops the locks)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return before, after


def remove_stopped_compaction(path: str | os.PathLike) -> int | None:
    """Remove the copy a :func:`compact` stopped partway left beside data.mdb (the store itself
    is whole); the bytes it held, or None when there was none. Call it holding the data dir's
    lock (compaction holds it too, so none is running)."""
    work = Path(path) / COMPACT_DIR
    if not work.is_dir():
        return None
    size = sum(f.stat().st_size for f in work.rglob("*") if f.is_file())
    shutil.rmtree(work, ignore_errors=True)
    return size


def _cut_off(env: lmdb.Environment, data_file: Path) -> str | None:
    """What is wrong when ``data.mdb`` is shorter than the pages its last commit uses (a copy
    that did not finish, a full disk while copying); None when it is whole."""
    needed = _used_bytes(env)
    size = data_file.stat().st_size
    if size >= needed:
        return None
    return (f"data.mdb is {mib(size)} but its last commit uses {mib(needed)}: the file was cut off "
            "(a copy that did not finish, or a full disk while copying)")


def _reason(exc: OSError, path: Path) -> str:
    """What an OSError about ``path`` means, in a few words."""
    if exc.errno == errno.EROFS:
        return "that filesystem is mounted read-only"
    if isinstance(exc, PermissionError):
        return f"{user_name(os.geteuid())} may not write there"
    if isinstance(exc, FileExistsError) and path.is_symlink():
        return f"it is a link to {os.readlink(path)}, which does not exist (a disk that is not mounted?)"
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return "a file is in the way of that directory"
    return exc.strerror or str(exc)


def _read_only_fs(path: Path) -> bool:
    """Whether ``path`` is on a filesystem mounted read-only (a card the kernel remounted
    after errors): then no process can be writing the store."""
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _used_bytes(env: lmdb.Environment) -> int:
    """The bytes of the pages the last commit uses (up to its last page; free ones included)."""
    return (env.info()["last_pgno"] + 1) * env.stat()["psize"]


def _same_owner(copy: Path, original: Path) -> None:
    """Give ``copy`` the owner and mode of ``original``: a ``sudo edge compact`` must not hand
    the service's store to root (it would then refuse to start)."""
    st = original.stat()
    os.chmod(copy, st.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(copy, st.st_uid, st.st_gid)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

