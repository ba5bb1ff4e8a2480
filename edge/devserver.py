"""``edge dev``: a small supervisor that runs the server in a child process and restarts it
when a project file changes.

It watches the whole project through discovery's own walk (``edge.steps.discovery._walk``:
the same folders skipped, ``.``-folders such as ``.edge`` and ``.venv`` among them), so a
helper module that a step imports from anywhere in the project reloads the app too.

A child process (rather than re-importing in place) gives every reload a clean interpreter:
step modules, Granian and the LMDB environment are opened once per process (STACK-NOTES 12).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .steps.discovery import _walk

__all__ = ["supervise", "snapshot"]

#: How often the project is scanned; polling needs no extra dependency or inotify limit.
POLL_INTERVAL = 0.5
WATCHED_SUFFIXES = (".py", ".json", ".yaml", ".yml", ".toml")


def snapshot(project: Path) -> dict[str, float]:
    """``{path: mtime}`` of the files under ``project`` that can change what the app does."""
    seen = {}
    for path in _walk(project):
        if path.suffix in WATCHED_SUFFIXES:
            try:
                seen[str(path)] = path.stat().st_mtime
            except OSError:
                pass
    return seen


def _child_command(argv: list[str]) -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable, *argv]
    return [sys.executable, "-m", "edge", *argv]


def supervise(argv: list[str], settings) -> int:
    project = Path(settings.dir)
    env = {**os.environ, "EDGE_DEV_CHILD": "1"}
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    state = snapshot(project)
    child = subprocess.Popen(_child_command(argv), env=env)
    while True:
        time.sleep(POLL_INTERVAL)
        if stopping:
            child.send_signal(signal.SIGTERM)
            return child.wait()
        current = snapshot(project)
        if current != state:
            changed = sorted(set(current) ^ set(state) | {p for p in current if current.get(p) != state.get(p)})
            print(f"edge dev: {', '.join(os.path.relpath(p) for p in changed[:3])} changed; reloading", flush=True)
            state = current
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            child = subprocess.Popen(_child_command(argv), env=env)
        elif child.poll() is not None and child.returncode not in (0,):
            # The child failed (a port in use, a broken store): wait for a change, then retry.
            pass
