"""``edge new NAME``: the files of a new project (steps, a test, requirements, README).

The project is a small todo service, the same shape as the example app: an HTTP step that
stores a todo and enqueues ``todo.created``, a queue step that processes it, an HTTP step
that reads it back; and a test of the whole flow written with ``edge.testing``.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["write_scaffold", "FILES"]

_CREATE = '''\
"""POST /todos: store a todo and announce it on the todo.created topic."""

import uuid

config = {
    "name": "CreateTodo",
    "description": "Store a todo and announce it",
    "flows": ["todos"],
    "triggers": [{
        "type": "http", "method": "POST", "path": "/todos",
        "bodySchema": {
            "type": "object",
            "properties": {"title": {"type": "string", "minLength": 1}},
            "required": ["title"],
        },
    }],
    "enqueues": ["todo.created"],
}


async def handler(request, ctx):
    todo = {"id": uuid.uuid4().hex[:12], "title": request.body["title"], "status": "open"}
    await ctx.state.set("todos", todo["id"], todo)
    await ctx.enqueue({"topic": "todo.created", "data": todo})
    ctx.logger.info("todo created", {"id": todo["id"]})
    return {"status": 201, "body": todo}
'''

_PROCESS = '''\
"""Runs for every message on todo.created (retried on failure, then dead-lettered)."""

config = {
    "name": "ProcessTodo",
    "description": "Mark a new todo as processed",
    "flows": ["todos"],
    "triggers": [{"type": "queue", "topic": "todo.created", "config": {"maxRetries": 3}}],
}


async def handler(todo, ctx):
    await ctx.state.update("todos", todo["id"], [{"type": "set", "path": "status", "value": "processed"}])
    ctx.logger.info("todo processed", {"id": todo["id"]})
'''

_GET = '''\
"""GET /todos/:id: read a todo back."""

config = {
    "name": "GetTodo",
    "flows": ["todos"],
    "triggers": [{"type": "http", "method": "GET", "path": "/todos/:id"}],
}


async def handler(request, ctx):
    todo = await ctx.state.get("todos", request.path_params["id"])
    if todo is None:
        return {"status": 404, "body": {"error": "no such todo"}}
    return {"status": 200, "body": todo}
'''

_TEST = '''\
"""The whole flow in-process, on a temporary store: python -m pytest"""

from pathlib import Path

from edge.testing import App

STEPS = str(Path(__file__).resolve().parent.parent / "steps")


async def test_create_todo(tmp_path):
    async with App(STEPS, data_dir=tmp_path) as app:
        r = await app.http("POST", "/todos", json={"title": "water the tomatoes"})
        assert r.status == 201
        assert app.enqueued("todo.created")[0]["title"] == "water the tomatoes"
        await app.drain()  # run the queue work to quiet
        assert (await app.state.get("todos", r.json["id"]))["status"] == "processed"


async def test_a_todo_needs_a_title(tmp_path):
    async with App(STEPS, data_dir=tmp_path) as app:
        r = await app.http("POST", "/todos", json={})
        assert r.status == 400
        assert app.enqueued("todo.created") == []
'''

_REQUIREMENTS = '''\
# Packages your steps import go here: `edge build` bundles what is installed where it runs.
# edge itself is installed from its checkout: pip install -e '{edge}[build]'
pytest>=8
pytest-trio>=0.8
'''

_PYPROJECT = '''\
# Settings for the tests of this edge project (its packages are in requirements.txt).
[tool.pytest.ini_options]
trio_mode = true
testpaths = ["tests"]
'''

_GITIGNORE = '''\
# edge's data directory (LMDB: state, queues, logs), from `edge dev` / `edge start`
.edge/
# `edge build` output: the binary and its systemd unit
dist/
# PyInstaller's work folder when `edge build --work-dir build/...` points it here
# (by default it is ~/.cache/edge/build/, outside the project)
build/
__pycache__/
*.pyc
.venv/
.pytest_cache/
'''

_README = '''\
# {name}

An edge app: Python steps served by one process, with state and queues on local disk.

```sh
edge dev              # serve on http://localhost:3000, reload when a file changes
python -m pytest      # run the tests in tests/ (once: pip install -r requirements.txt)
```

Try it while `edge dev` runs:

```sh
curl -s -X POST localhost:3000/todos -H 'content-type: application/json' -d '{{"title": "water the tomatoes"}}'
curl -s localhost:3000/todos/<id from the answer>     # "status": "processed" a moment later
edge logs                                             # what the steps logged
```

- `steps/create_todo_step.py` — `POST /todos`: stores the todo, enqueues `todo.created`
- `steps/process_todo_step.py` — runs for each `todo.created` message (retried when it fails)
- `steps/get_todo_step.py` — `GET /todos/:id`
- `tests/test_todos.py` — the flow, in-process on a temporary store (`edge.testing`)

`edge steps` lists what edge found; `edge build` makes one executable in `dist/` with a
systemd unit beside it.
'''

#: relative path -> content (``{name}`` and ``{edge}`` are filled in for README.md and requirements.txt)
FILES = {
    "steps/create_todo_step.py": _CREATE,
    "steps/process_todo_step.py": _PROCESS,
    "steps/get_todo_step.py": _GET,
    "tests/test_todos.py": _TEST,
    "requirements.txt": _REQUIREMENTS,
    "pyproject.toml": _PYPROJECT,
    ".gitignore": _GITIGNORE,
    "README.md": _README,
}


def write_scaffold(target: Path) -> list[str]:
    """Write the project's files under ``target`` (created); return their relative paths."""
    fill = {"name": re.sub(r"\s+", "-", target.resolve().name) or "app", "edge": _edge_checkout()}
    for rel, text in FILES.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(**fill) if rel in ("README.md", "requirements.txt") else text)
    return list(FILES)


def _edge_checkout() -> str:
    """The edge checkout this edge runs from (an editable install), else a placeholder."""
    root = Path(__file__).resolve().parent.parent
    return str(root) if (root / "pyproject.toml").is_file() and (root / "build" / "edge.spec").is_file() \
        else "/path/to/edge"
