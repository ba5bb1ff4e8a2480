"""edge imports Granian's embedded server without Granian's CLI machinery (edge/server/_embed.py):
what it leaves out is 2.5 MiB of an idle process, and code elsewhere that uses those modules
still gets them whole. Each test runs a fresh interpreter: the modules a process has loaded are
the point."""

from __future__ import annotations

import subprocess
import sys

from .conftest import wait_for

LEFT_OUT = ("granian.server.mp", "granian.server.mt", "granian._loops", "logging.handlers", "socketserver")


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_edge_serves_without_loading_granians_process_servers_or_logging_config():
    # Before: importing the bridge ran granian/__init__.py and granian/server/__init__.py, which
    # loaded all of these, and Granian's Server() ran logging.config.dictConfig.
    out = _python(f"""
import sys
import edge.server.bridge
from edge.server._embed import Server
Server(lambda *a: None, port=0, log_enabled=False)  # what edge's serve() builds: configures logging
print(sorted(m for m in {LEFT_OUT!r} if m in sys.modules), "dictConfig" in vars(sys.modules["logging.config"]))
""")
    assert out == "[] False"


def test_code_that_uses_granian_or_logging_config_gets_them_whole():
    out = _python("""
import edge.server.bridge
import granian, logging, logging.config
from logging.config import fileConfig
logging.config.dictConfig({"version": 1, "handlers": {"h": {"class": "logging.handlers.MemoryHandler", "capacity": 1}},
                           "loggers": {"step": {"handlers": ["h"]}}})
print(granian.Granian.__name__, isinstance(granian.__version__, str), fileConfig.__name__,
      type(logging.getLogger("step").handlers[0]).__name__)
""")
    assert out == "MPServer True fileConfig MemoryHandler"


def test_granians_own_log_stays_silent_in_a_running_server(edge_server):
    # Granian logs "Embedded server is experimental!" and "Starting granian (embedded)" through
    # its "_granian" logger; edge keeps it above every level, as Granian's dictConfig did.
    server = edge_server({"steps/ping_step.py": """
        config = {"name": "Ping", "triggers": [{"type": "http", "method": "GET", "path": "/ping"}]}

        async def handler(req, ctx):
            return {"status": 200, "body": {"pong": True}}
    """})
    with server.client() as client:
        assert client.get("/ping").json() == {"pong": True}
    server.proc.terminate()
    wait_for(lambda: server.proc.poll() is not None)
    assert "edge listening on" in server.output
    for line in ("Embedded server is experimental!", "Starting granian (embedded)", "Shutting down granian"):
        assert line not in server.output
