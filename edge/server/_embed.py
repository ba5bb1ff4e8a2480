"""Granian's embedded server, imported without what Granian loads for its own CLI.

``import granian.server.embed`` first runs ``granian/__init__.py`` and
``granian/server/__init__.py``: they import Granian's process and thread servers (its
multiprocessing supervisor, file watcher and signal plumbing) and probe every event loop it
knows (uvloop, rloop, winloop), none of which the embedded server edge runs uses. And the
server's constructor configures Granian's loggers through ``logging.config.dictConfig``, whose
module (with ``logging.handlers`` and ``socketserver``) weighs 0.8 MiB, only to silence them:
edge's server runs with ``log_enabled=False`` (:func:`quiet_server`). Together that was 2.5 MiB
of an idle edge's RSS on asyncio's loop (``docs/architecture.md``, "Idle memory").

So those modules are entered as *shells*: a module object made from the module's own spec,
whose code runs only when something reads a name it defines (PEP 562 ``__getattr__``). A
package's ``__path__`` is set, so its submodules import as usual. Any other code in the
process that uses them (``granian.Granian``, ``logging.config.dictConfig`` in a step) gets
the whole module at its first use, as if imported normally: threads that read from a shell
while its code runs wait for it; a module whose code fails is dropped, as a failed import is.
"""

from __future__ import annotations

import contextvars
import importlib.util
import logging
import os
import sys
import threading

__all__ = ["HTTP1Settings", "HTTPModes", "Interfaces", "quiet_server"]


def _shell(name: str) -> None:
    """Enter module ``name`` as a shell. Only for modules that, like these three, no submodule
    of theirs reads a name from while importing: a thread importing such a submodule would
    hold its import lock while it waits for the shell's code, which may wait for that lock
    (Python's import detects that deadlock between its own locks only). And not for a
    package whose submodules replace themselves in ``sys.modules`` with other objects (the
    package would then look run: :func:`_ran`)."""
    if name in sys.modules:
        return  # already imported whole (or shelled before): nothing to save
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return  # a module we cannot load later: the plain import does the rest
    module = importlib.util.module_from_spec(spec)
    lock = threading.RLock()
    loader = None  # the thread running the module's code

    def __getattr__(attr: str):
        nonlocal loader
        with lock:  # other threads wait here while the code runs
            if module.__dict__.get("__getattr__") is __getattr__:
                if loader == threading.get_ident():  # the module's own code, mid-run
                    raise AttributeError(f"partially initialized module {name!r} has no attribute {attr!r}")
                if not _ran(module):  # (importlib.reload may have run it already)
                    loader = threading.get_ident()
                    try:
                        spec.loader.exec_module(module)
                    except BaseException:
                        _forget(name)  # as a failed import: the next `import` starts afresh
                        raise
                    finally:
                        loader = None
                if module.__dict__.get("__getattr__") is __getattr__:
                    del module.__getattr__  # a plain module from now on
        return getattr(module, attr)

    module.__getattr__ = __getattr__
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _ran(module) -> bool:
    """Whether the module's code has run: it defined a name of its own (a shell has only the
    import system's dunders, its ``__getattr__`` and the submodules imported since)."""
    names = list(vars(module).items())  # a snapshot: another thread may import a submodule meanwhile
    return any(not key.startswith("__") and not isinstance(value, type(sys)) for key, value in names)


def _forget(name: str) -> None:
    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        sys.modules[parent].__dict__.pop(child, None)


class _Multiprocessing:
    """What ``import multiprocessing`` gives Granian's server modules while they import: all
    they use of it is ``multiprocessing.cpu_count()`` (a check when the server starts), and
    the real package (with ``pickle`` and the process machinery) is 0.5 MiB of an idle
    process. Any other name read from it imports the real one. Only those modules see it: it
    is taken out of ``sys.modules`` as soon as they are in."""

    __spec__ = None  # what `import multiprocessing` reads of a module it finds in sys.modules

    @staticmethod
    def cpu_count() -> int:
        count = os.cpu_count()  # (what multiprocessing.cpu_count() answers)
        if count is None:
            raise NotImplementedError("cannot determine number of cpus")
        return count

    def __getattr__(self, attr: str):
        if sys.modules.get("multiprocessing") is self:  # read while Granian imports: out first
            del sys.modules["multiprocessing"]
        return getattr(importlib.import_module("multiprocessing"), attr)


_shell("granian")
_shell("granian.server")
_shell("logging.config")

_deferred = None if "multiprocessing" in sys.modules else _Multiprocessing()
if _deferred is not None:
    sys.modules["multiprocessing"] = _deferred
try:
    from granian.constants import HTTPModes, Interfaces  # noqa: E402
    from granian.http import HTTP1Settings  # noqa: E402
    import granian.server.common as _common  # noqa: E402  (not `from granian.server import`: it reads the shell)
    from granian.server.embed import Server  # noqa: E402
finally:
    if _deferred is not None and sys.modules.get("multiprocessing") is _deferred:
        del sys.modules["multiprocessing"]


_quiet = contextvars.ContextVar("edge_quiet_granian", default=False)
_configure_logging = _common.configure_logging


def _configure(level, config=None, enabled: bool = True) -> None:
    """Granian's ``configure_logging`` for every server, except for the one
    :func:`quiet_server` builds (in its thread and task only)."""
    if _quiet.get():
        logging.getLogger("_granian").setLevel(logging.CRITICAL + 1)
    else:
        _configure_logging(level, config, enabled)


_common.configure_logging = _configure


def quiet_server(target, **options) -> Server:
    """Granian's embedded ``Server(target, log_enabled=False, ...)``, built without
    ``logging.config``: with logging off its constructor's ``configure_logging`` only leaves
    Granian's logger above every level (edge logs the server's events itself), and that is
    what it does here. Other Granian servers in the process configure their logging as usual,
    built at the same time or not."""
    token = _quiet.set(True)
    try:
        return Server(target, log_enabled=False, **options)
    finally:
        _quiet.reset(token)
