"""Shared test helpers: real edge server processes on port 0, and small project folders."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"edge listening on http://[^:]+:(\d+)")


def write_project(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: source}`` under ``root`` (sources are dedented)."""
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())
    return root


class EdgeServer:
    """``edge start`` (or another command) in a subprocess, listening on a port it chose."""

    def __init__(self, project: Path, data_dir: Path, *, command: str = "start", args=(), env=None,
                 host: str = "127.0.0.1"):
        self.project = project
        #: --host; tests that reach the server from another address pass "0.0.0.0".
        self.host = host
        self.data_dir = data_dir
        self.command = command
        self.args = list(args)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env.pop("EDGE_PORT", None)
        self.lines: list[str] = []
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._port_seen = threading.Event()

    def start(self, timeout: float = 20) -> "EdgeServer":
        cmd = [sys.executable, "-m", "edge", self.command, "--dir", str(self.project),
               "--data-dir", str(self.data_dir), "--port", "0", "--host", self.host, *self.args]
        self.lines = []
        self._port_seen.clear()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=self.env, cwd=str(self.project))
        threading.Thread(target=self._drain, args=(self.proc,), daemon=True).start()
        if not self._port_seen.wait(timeout):
            self.proc.kill()
            raise AssertionError("edge did not start listening:\n" + self.output)
        return self

    def _drain(self, proc) -> None:
        for line in proc.stdout:
            self.lines.append(line)
            match = _LISTENING.search(line)
            if match and not self._port_seen.is_set():
                self.port = int(match.group(1))
                self._port_seen.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kw)

    def logs(self) -> list[dict]:
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def stop(self, sig=signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("edge did not stop on " + str(sig) + ":\n" + self.output)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def edge_server(tmp_path):
    """Factory: ``edge_server(files)`` writes a project and starts ``edge start`` on it."""
    servers = []

    def start(files: dict[str, str], **kw) -> EdgeServer:
        project = write_project(tmp_path / f"app{len(servers)}", files)
        server = EdgeServer(project, tmp_path / f"data{len(servers)}", **kw).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@contextmanager
def served(tmp_path_factory, name: str, files: dict[str, str], **options):
    """A test module's server: ``files`` written as a project under a fresh ``name`` folder,
    ``edge start`` on it (``options`` as for :class:`EdgeServer`), killed at the end."""
    root = tmp_path_factory.mktemp(name)
    server = EdgeServer(write_project(root / "app", files), root / "data", **options).start()
    try:
        yield server
    finally:
        server.kill()


def free_port() -> int:
    """A loopback port free now (for a server that must be told its port up front)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def wait_for(predicate, timeout: float = 10, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met within %.1fs" % timeout)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Tests marked ``anyio`` run under anyio's plugin (asyncio and trio backends), not under
    pytest-trio's trio_mode, which marks every async test for trio."""
    for item in items:
        if item.get_closest_marker("anyio") is not None:
            item.own_markers[:] = [m for m in item.own_markers if m.name != "trio"]


def state_value(client, group: str, key: str):
    """The value stored at ``group``/``key`` through the runtime's endpoint, or None."""
    r = client.get("/__edge/state", params={"group": group, "key": key})
    return r.json()["value"] if r.status_code == 200 else None
