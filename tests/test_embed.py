"""edge imports Granian's embedded server without Granian's CLI machinery (edge/server/_embed.py):
what it leaves out is 2.5 MiB of an idle process, and code elsewhere that uses those modules
still gets them whole. Each test runs a fresh interpreter: the modules a process has loaded are
the point."""

from __future__ import annotations

import subprocess
import sys

from .conftest import wait_for

LEFT_OUT = ("granian.server.mp", "granian.server.mt", "granian._loops", "logging.handlers", "socketserver",
            "multiprocessing")


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
from edge.server._embed import quiet_server
quiet_server(lambda *a: None, port=0)  # what edge's serve() builds
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
import multiprocessing, multiprocessing.pool, granian.server.common, granian.server.embed
print(multiprocessing.cpu_count() == granian.server.common.multiprocessing.cpu_count()
      == granian.server.embed.multiprocessing.cpu_count(), multiprocessing.pool.ThreadPool.__name__)
""")
    assert out == "MPServer True fileConfig MemoryHandler\nTrue ThreadPool"


def test_another_granian_server_in_the_process_configures_its_logging_as_usual():
    # Before: edge's quiet configure_logging replaced Granian's for every server in the process,
    # and one built with log_access=True lost its access log's handler.
    out = _python("""
import logging
from edge.server._embed import quiet_server
from granian.server.embed import Server
quiet_server(lambda *a: None, port=0)
Server(lambda *a: None, port=0, log_enabled=False, log_access=True)
print([type(h).__name__ for h in logging.getLogger("granian.access").handlers])
""")
    assert out == "['StreamHandler']"


def test_a_granian_server_built_while_edge_builds_its_own_configures_its_logging_as_usual():
    # Before: quiet_server swapped Granian's configure_logging for the whole process while it
    # built edge's server, so another thread's server built meanwhile lost its access log.
    out = _python("""
import logging, threading
from edge.server._embed import quiet_server
from granian.server.embed import Server

inside, release = threading.Event(), threading.Event()
granian_log = logging.getLogger("_granian")
set_level = granian_log.setLevel

def held(level):  # the first call, from edge's server: held there while the other one is built
    granian_log.setLevel = set_level
    inside.set()
    release.wait(30)
    set_level(level)

granian_log.setLevel = held
edge = threading.Thread(target=quiet_server, args=(lambda *a: None,), kwargs={"port": 0})
edge.start()
inside.wait(30)
Server(lambda *a: None, port=0, log_enabled=False, log_access=True)
release.set()
edge.join(30)
print([type(h).__name__ for h in logging.getLogger("granian.access").handlers], granian_log.level > logging.CRITICAL)
""")
    assert out == "['StreamHandler'] True"


def test_threads_that_read_a_module_while_its_code_runs_wait_for_it():
    # Before: the shell let go of its __getattr__ before the code ran, so a second thread got
    # "module 'logging.config' has no attribute 'fileConfig'" meanwhile.
    out = _python("""
import importlib.abc, sys, threading
import edge.server.bridge

running, release = threading.Event(), threading.Event()

class Held(importlib.abc.MetaPathFinder):  # logging.config's code imports socketserver: hold it there
    def find_spec(self, name, path=None, target=None):
        if name == "socketserver":
            running.set()
            release.wait(30)

sys.meta_path.insert(0, Held())
import logging.config
got = {}

def use(key, read):
    try:
        got[key] = read().__name__
    except Exception as exc:
        got[key] = repr(exc)

first = threading.Thread(target=use, args=("first", lambda: logging.config.dictConfig))
first.start()
running.wait(30)  # the first reader runs the module's code, held mid-way
others = [threading.Thread(target=use, args=(key, read)) for key, read in (
    ("attribute", lambda: logging.config.fileConfig),
    ("from-import", lambda: __import__("logging.config", fromlist=["listen"]).listen))]
for t in others:
    t.start()
for t in others:
    t.join(1)  # (they wait for the code: on the earlier shell they failed at once)
release.set()
for t in [first, *others]:
    t.join(30)
print(sorted(got.items()))
""")
    assert out == "[('attribute', 'fileConfig'), ('first', 'dictConfig'), ('from-import', 'listen')]"


def test_a_module_whose_code_fails_is_imported_afresh_next_time():
    out = _python("""
import importlib.abc, sys
import edge.server.bridge

class Once(importlib.abc.MetaPathFinder):
    failed = False

    def find_spec(self, name, path=None, target=None):
        if name == "socketserver" and not Once.failed:
            Once.failed = True
            raise ImportError("no socketserver this once")

sys.meta_path.insert(0, Once())
import logging.config
try:
    logging.config.dictConfig
except ImportError as exc:
    print("first:", exc)
import logging.config
print("then:", logging.config.dictConfig.__name__)
""")
    assert out == "first: no socketserver this once\nthen: dictConfig"


def test_a_reloaded_shell_runs_its_code_once():
    out = _python("""
import importlib
import edge.server.bridge
import logging.config
importlib.reload(logging.config)
kept = logging.config.DictConfigurator
print(hasattr(logging.config, "nope"), logging.config.DictConfigurator is kept, "__getattr__" in vars(logging.config))
""")
    assert out == "False True False"


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


def test_a_serving_edge_has_not_loaded_multiprocessing(tmp_path):
    # Granian's server modules import multiprocessing for one cpu_count() when the server
    # starts: the whole package (with pickle) was 0.5 MiB of an idle edge.
    (tmp_path / "steps").mkdir()
    out = _python(f"""
import os, signal, sys
from edge.server import run_server
from edge.settings import Settings
from edge.steps import discover

def ready(handle):
    print("multiprocessing" in sys.modules, sorted(m for m in sys.modules if m.startswith("multiprocessing")),
          flush=True)
    os.kill(os.getpid(), signal.SIGTERM)

settings = Settings(dir={str(tmp_path)!r}, data_dir={str(tmp_path / "data")!r}, port=0)
code = run_server(settings, discover({str(tmp_path)!r}), out=open(os.devnull, "w"), on_ready=ready)
sys.stdout.flush()
os._exit(code)
""")
    assert out == "False []"


def test_what_imports_multiprocessing_while_granian_imports_gets_the_real_one():
    # A review: while the stand-in was in sys.modules, reading any other name from it (a
    # module imported meanwhile, another thread) recursed for good.
    out = _python("""
import sys
from edge.server._embed import _Multiprocessing
sys.modules["multiprocessing"] = _Multiprocessing()  # as during Granian's import
import multiprocessing.connection
from multiprocessing import Pool
print(type(sys.modules["multiprocessing"]).__name__, Pool.__name__)
""")
    assert out == "module Pool"
