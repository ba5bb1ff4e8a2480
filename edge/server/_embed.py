"""Granian's embedded server, imported without what Granian loads for its own CLI.

``import granian.server.embed`` first runs ``granian/__init__.py`` and
``granian/server/__init__.py``: they import Granian's process and thread servers (its
multiprocessing supervisor, file watcher and signal plumbing) and probe every event loop it
knows (uvloop, rloop, winloop), none of which the embedded server edge runs uses. And the
server's constructor configures Granian's loggers through ``logging.config.dictConfig``, whose
module (with ``logging.handlers`` and ``socketserver``) weighs 0.8 MiB, only to silence them:
edge passes ``log_enabled=False``. Together that was 2.5 MiB of an idle edge's RSS on
asyncio's loop (``docs/architecture.md``, "Idle memory").

So those modules are entered as *shells*: a module object made from the module's own spec,
whose code runs only when something reads a name it defines (PEP 562 ``__getattr__``). A
package's ``__path__`` is set, so its submodules import as usual. Any other code in the
process that uses them (``granian.Granian``, ``logging.config.dictConfig`` in a step) gets
the whole module at its first use, as if imported normally.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading

__all__ = ["HTTP1Settings", "HTTPModes", "Interfaces", "Server"]

_loading = threading.RLock()


def _shell(name: str) -> None:
    if name in sys.modules:
        return  # already imported whole (or shelled before): nothing to save
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return  # a module we cannot load later: the plain import does the rest
    module = importlib.util.module_from_spec(spec)
    running = False

    def __getattr__(attr: str):
        nonlocal running
        with _loading:
            if not running:  # the first name the module defines: run its code now, in place
                running = True
                del module.__getattr__
                spec.loader.exec_module(module)
        return getattr(module, attr)  # now the module's own lookup (its own __getattr__ if any)

    module.__getattr__ = __getattr__
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


_shell("granian")
_shell("granian.server")
_shell("logging.config")

from granian.constants import HTTPModes, Interfaces  # noqa: E402
from granian.http import HTTP1Settings  # noqa: E402
import granian.server.common as _common  # noqa: E402  (not `from granian.server import`: it reads the shell)
from granian.server.embed import Server  # noqa: E402

_configure_logging = _common.configure_logging


def _configure_quietly(level, config=None, enabled: bool = True) -> None:
    """What Granian's ``configure_logging`` leaves behind when logging is off (its logger above
    every level: edge logs the server's events itself), without ``dictConfig``."""
    if enabled or config:
        _configure_logging(level, config, enabled)
    else:
        logging.getLogger("_granian").setLevel(logging.CRITICAL + 1)


_common.configure_logging = _configure_quietly
