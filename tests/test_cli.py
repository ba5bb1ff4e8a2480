"""The `edge` command: inspection, state, logs and traces online and offline, dev reload, errors."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
from importlib import metadata

import httpx
import pytest

from edge._format import access_line
from edge.cli import run
from edge.devserver import snapshot

from .conftest import EdgeServer, free_port, wait_for, write_project

GOOD = {
    "steps/hello_step.py": """
        config = {"name": "Hello", "flows": ["demo"],
                  "triggers": [{"type": "http", "method": "GET", "path": "/hello/:name"}]}

        async def handler(req, ctx):
            ctx.logger.info("said hello", {"to": req.path_params["name"]})
            await ctx.state.set("greeted", req.path_params["name"], {"times": 1})
            return {"status": 200, "body": {"hello": req.path_params["name"]}}
    """,
}
STREAM = {
    "steps/live_stream.py": """
        config = {"name": "live", "baseConfig": {"storageType": "memory"}}
    """,
}
BROKEN = {
    **GOOD,
    "steps/broken_step.py": """
        config = {"name": "Broken", "triggers": [{"type": "http", "method": "GET", "path": "/b", "bodySchem": {}}]}

        async def handler(req, ctx):
            return {"status": 200}
    """,
}


def edge(*args, cwd=None, env=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "edge", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)


def test_steps_lists_steps_triggers_and_streams(tmp_path):
    project = write_project(tmp_path, {**GOOD, **STREAM, "steps/watch_step.py": """
        config = {"name": "Watch", "triggers": [{"type": "stream", "streamName": "live", "groupId": "w"},
                                                {"type": "state", "group": "g"}]}

        async def handler(event, ctx):
            pass
    """})
    result = edge("steps", "--dir", project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Hello  (steps/hello_step.py)  [demo]",
        "    http   GET /hello/:name",
        "Watch  (steps/watch_step.py)",
        "    stream live group=w",  # the filter was not shown
        "    state  group=g",
        "stream live  (steps/live_stream.py)  [in memory]",
        "2 steps, 1 stream, 0 errors",
    ]
    listed = json.loads(edge("steps", "--json", "--dir", project).stdout)
    assert listed["streams"] == [{"name": "live", "file": "steps/live_stream.py", "storage": "memory", "guarded": False}]


def test_version():
    result = edge("--version")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (f"edge {metadata.version('edge')} (Python {platform.python_version()} "
                             f"on {platform.system()} {platform.machine()})\n")


def test_help_says_what_host_and_port_mean():
    client = edge("state", "get", "--help").stdout
    assert "--host HOST          address of the running edge server to talk to" in client
    server = edge("start", "--help").stdout
    assert "address to listen on (EDGE_HOST, default 0.0.0.0: every interface)" in " ".join(server.split())
    logs = " ".join(edge("logs", "--help").stdout.split())
    assert "--limit N show the N most recent log records, oldest first (default 50)" in logs
    assert "--json one JSON object per line" in logs
    assert "--host" not in edge("steps", "--help").stdout  # reads the project only


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    project = write_project(tmp_path, GOOD)
    proc = subprocess.Popen([sys.executable, "-m", "edge", "openapi", "--dir", str(project)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # like `| head` that has read enough, before edge writes a byte
    assert proc.wait(30) == 141
    assert proc.stderr.read() == b""


def test_steps_reports_config_errors_verbatim(tmp_path):
    project = write_project(tmp_path, BROKEN)
    result = edge("steps", "--dir", project)
    assert result.returncode == 1
    assert 'error: steps/broken_step.py: triggers[0].bodySchem: unknown key; did you mean "bodySchema"?' in result.stdout


BAD_SCHEMA = {
    **GOOD,
    "steps/typed_step.py": """
        config = {"name": "Typed", "triggers": [{"type": "http", "method": "POST", "path": "/t",
                                                 "bodySchema": {"type": "objekt"}}]}

        async def handler(req, ctx):
            return {"status": 200}
    """,
}
BAD_SCHEMA_ERROR = 'steps/typed_step.py: triggers[0].bodySchema.type: unknown type "objekt"; did you mean "object"?'


def test_a_bad_body_schema_is_an_error_of_its_file(tmp_path):
    # Before: `edge steps` listed the step as fine (0 errors), and `edge start` and `edge dev`
    # both stopped on it, naming "triggers[0].type" (the trigger's "http") for the field.
    project = write_project(tmp_path, BAD_SCHEMA)
    listed = edge("steps", "--dir", project)
    assert listed.returncode == 1
    assert f"error: {BAD_SCHEMA_ERROR}" in listed.stdout
    started = edge("start", "--dir", project, "--port", "0", "--data-dir", tmp_path / "data")
    assert started.returncode == 1
    assert f"error: {BAD_SCHEMA_ERROR}" in started.stderr
    server = EdgeServer(project, tmp_path / "dev-data", command="dev", args=["--no-reload"]).start()
    try:  # edge dev serves the rest
        with server.client() as client:
            assert client.get("/hello/ada").status_code == 200
            assert client.post("/t", json={}).status_code == 404
    finally:
        server.stop()


def test_start_refuses_broken_steps(tmp_path):
    project = write_project(tmp_path, BROKEN)
    result = edge("start", "--dir", project, "--port", "0")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "edge start: 1 step file failed to load; fix them (`edge steps` lists them) "
        "or run `edge dev` to serve the rest"
    )


@pytest.mark.parametrize("command", ["start", "dev"])
def test_a_project_folder_that_is_not_there_is_refused(tmp_path, command):
    # Before: "no steps found", then a healthy-looking empty server on the port.
    missing = tmp_path / "typo"
    result = edge(command, "--dir", missing, "--port", "0", "--data-dir", tmp_path / "data")
    assert result.returncode == 1
    assert result.stderr == (f"edge {command}: the project folder {missing} does not exist (--dir / EDGE_DIR); "
                             "point it at the folder that holds steps/\n")
    assert not (tmp_path / "data").exists()


def test_a_cli_write_never_goes_behind_a_server_that_did_not_answer(tmp_path):
    # Before: `edge emit` with the wrong --port wrote into the served data dir directly and said
    # "delivered when the server starts".
    project = write_project(tmp_path / "app", {**GOOD, "steps/sink_step.py": """
        config = {"name": "Sink", "triggers": [{"type": "queue", "topic": "t"}]}

        async def handler(data, ctx):
            pass
    """})
    server = EdgeServer(project, tmp_path / "data").start()
    try:
        wrong = free_port()
        for command in (["emit", "--topic", "t", "--message", "{}"], ["state", "set", "g", "k", "1"]):
            result = edge(*command, "--dir", project, "--data-dir", tmp_path / "data", "--port", wrong)
            assert (result.returncode, result.stderr) == (1, (
                f"edge {command[0]}: {tmp_path / 'data'} is in use by another edge process (pid {server.proc.pid}); "
                f"if it is the server, it did not answer on port {wrong}: pass its --port (or EDGE_PORT) and the "
                "change goes through it\n"))
        result = edge("emit", "--topic", "t", "--message", "{}", "--dir", project, "--port", server.port)
        assert result.returncode == 0 and result.stdout.startswith('enqueued to "t" for Sink')
    finally:
        server.stop()


def test_unwritable_data_dir_is_a_clear_error(tmp_path):
    project = write_project(tmp_path / "app", GOOD)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = edge("start", "--dir", project, "--port", "0", "--data-dir", blocker / "data")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"edge start: cannot write to the data directory {blocker / 'data'}: Not a directory; "
        "pass --data-dir (or EDGE_DATA_DIR) naming a writable directory"
    )


def test_usage_errors_exit_2(tmp_path):
    result = edge("start", "--no-such-flag")
    assert result.returncode == 2  # with start's usage (it printed the top level's)
    assert result.stderr.startswith("usage: edge start [-h]")
    assert result.stderr.endswith("edge start: error: unrecognized arguments: --no-such-flag\n")
    assert edge("state", "--dir", tmp_path).returncode == 2
    result = edge("state", "set", "g", "k", "not json", "--dir", tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("edge state: VALUE must be JSON (quote strings: '\"on\"'): ")
    result = edge("start", "--port", "many", "--dir", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == 'edge start: --port: expected an integer, got "many"'
    result = edge("start", "--dir", tmp_path, env={"EDGE_LOG_LEVEL": "verbose"})
    assert (result.returncode, result.stderr.strip()) == (
        2, 'edge start: EDGE_LOG_LEVEL: expected one of debug, info, warn, error, got "verbose"')


def test_an_unknown_option_of_an_extension_command_shows_that_commands_usage(capsys):
    # `build` is added by edge.build through the extension hook, not by build_parser itself
    assert run(["build", "--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: edge build [-h] [--dir DIR] [--name NAME] [--out OUT]")
    assert err.endswith("edge build: error: unrecognized arguments: --no-such-flag\n")
    assert run(["state", "get", "g", "k", "--no-such-flag"]) == 2  # a nested command: its command's usage
    err = capsys.readouterr().err
    assert err.startswith("usage: edge state [-h] ACTION ...\n")
    assert err.endswith("edge state: error: unrecognized arguments: --no-such-flag\n")


@pytest.mark.parametrize("env, message", [
    # the message names the variable that was set, not the flag (it named --port before)
    ({"EDGE_PORT": "70000"}, "EDGE_PORT: expected 0..65535, got 70000"),
    ({"EDGE_THREADS": "0"}, "EDGE_THREADS: expected at least 1, got 0"),
    ({"EDGE_GRACE": "-1"}, "EDGE_GRACE: expected seconds (0 or more), got -1.0"),
    ({"EDGE_LOOP": "tokio"}, 'EDGE_LOOP: expected "uvloop" or "asyncio", got "tokio"'),
])
def test_a_bad_environment_value_names_the_variable(tmp_path, env, message):
    result = edge("start", "--dir", tmp_path, env=env)
    assert (result.returncode, result.stderr) == (2, f"edge start: {message}\n")


def test_state_offline_set_get_list(tmp_path):
    args = ("--dir", tmp_path, "--data-dir", tmp_path / "data", "--port", "1")
    assert edge("state", "set", "devices", "pump", '{"on": true}', *args).returncode == 0
    got = edge("state", "get", "devices", "pump", *args)
    assert (got.returncode, got.stdout.strip()) == (0, '{"on": true}')
    listed = edge("state", "list", *args, "--json")
    assert json.loads(listed.stdout) == ["devices"]
    items = edge("state", "list", "devices", *args)
    assert items.stdout.strip() == 'pump\t{"on": true}'
    missing = edge("state", "get", "devices", "fan", *args)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "edge state get: no value at group 'devices' key 'fan'"


ON_STATE = {
    "steps/watch_step.py": """
        config = {"name": "Watch", "triggers": [{"type": "state", "group": "devices"}]}

        async def handler(change, ctx):
            await ctx.state.set("seen", change["item_id"], {"event": change["event_type"], "new": change["new_value"]})
    """,
}


def test_state_set_without_a_server_fires_the_state_triggers_when_it_starts(tmp_path):
    # Before: the change was stored and its triggers never ran (the server's own set fires them).
    project = write_project(tmp_path / "app", ON_STATE)
    args = ("--dir", project, "--data-dir", tmp_path / "data", "--port", free_port())
    assert edge("state", "set", "devices", "pump", '{"on": true}', *args).returncode == 0
    server = EdgeServer(project, tmp_path / "data").start()
    try:
        def seen():
            answer = httpx.get(f"{server.url}/__edge/state", params={"group": "seen", "key": "pump"})
            return answer.status_code == 200 and answer.json()["value"]

        assert wait_for(seen, timeout=5) == {"event": "created", "new": {"on": True}}
    finally:
        assert server.stop() == 0


def test_state_logs_traces_through_running_server_then_offline(tmp_path):
    project = write_project(tmp_path / "app", GOOD)
    server = EdgeServer(project, tmp_path / "data").start()
    try:
        httpx.get(f"{server.url}/hello/ada", headers={"x-trace-id": "cli-trace"})
        args = ("--dir", project, "--data-dir", tmp_path / "data", "--port", server.port)
        got = edge("state", "get", "greeted", "ada", *args)
        assert got.stdout.strip() == '{"times": 1}'
        assert edge("state", "set", "greeted", "bob", "2", *args).returncode == 0
        assert httpx.get(f"{server.url}/__edge/state", params={"group": "greeted", "key": "bob"}).json()["value"] == 2

        def traced():
            out = edge("traces", "--trace", "cli-trace", "--json", *args).stdout
            return [json.loads(line) for line in out.splitlines()]

        spans = wait_for(traced, timeout=5)
        assert [(s["step"], s["status"]) for s in spans] == [("Hello", "ok")]
    finally:
        assert server.stop() == 0
    # The server is gone: the same commands read the data directory.
    args = ("--dir", project, "--data-dir", tmp_path / "data", "--port", server.port)
    logs = edge("logs", "--trace", "cli-trace", "--json", *args)
    assert [json.loads(line)["msg"] for line in logs.stdout.splitlines()] == ["said hello"]
    text = edge("logs", "--trace", "cli-trace", *args).stdout
    assert "INFO  [Hello] (cli-trace) said hello {\"to\": \"ada\"}" in text
    assert edge("state", "get", "greeted", "bob", *args).stdout.strip() == "2"


def test_openapi_command(tmp_path):
    project = write_project(tmp_path, GOOD)
    doc = json.loads(edge("openapi", "--dir", project).stdout)
    assert list(doc["paths"]) == ["/hello/{name}"]


DEV = {
    "helpers.py": """
        def greeting(name):
            return {"hello": name}
    """,
    "steps/hello_step.py": """
        import helpers

        config = {"name": "Hello", "triggers": [{"type": "http", "method": "GET", "path": "/hello/:name"}]}

        async def handler(req, ctx):
            return {"status": 200, "body": helpers.greeting(req.path_params["name"])}
    """,
}


def test_dev_reloads_when_a_helper_outside_steps_changes_and_keeps_serving_with_a_broken_step(tmp_path):
    project = write_project(tmp_path / "app", DEV)
    server = EdgeServer(project, tmp_path / "data", command="dev").start()
    try:
        assert httpx.get(f"{server.url}/__edge/health").status_code == 200
        assert httpx.get(f"{server.url}/hello/x", headers={"x-trace-id": "0f9d9d0eea0c99a3"}).json() == {"hello": "x"}
        access = re.compile(r"\d\d:\d\d:\d\d\.\d{3} INFO  \(0f9d9d0e\) GET     /hello/x 200 \d+(\.\d)? ms\n")
        wait_for(lambda: any(access.fullmatch(line) for line in server.lines), timeout=5)
        assert not [line for line in server.lines if "/__edge/" in line]  # the CLI's own polls stay quiet
        (project / "helpers.py").write_text('def greeting(name):\n    return {"hi": name}\n')
        (project / "steps" / "broken_step.py").write_text(
            "config = {'name': 'Broken', 'triggers': [{'type': 'http', 'method': 'GET', 'path': '/b'}]}\n"
            "def handler(:\n")
        lines_before = len(server.lines)

        def reloaded():
            for line in server.lines[lines_before:]:
                if "edge listening on" in line:
                    port = int(line.rsplit(":", 1)[1].split()[0].split("/")[0])
                    try:
                        return httpx.get(f"http://127.0.0.1:{port}/hello/x").json()
                    except httpx.TransportError:
                        return None
            return None

        assert wait_for(reloaded, timeout=20) == {"hi": "x"}
        assert "error: steps/broken_step.py: line 2: SyntaxError: invalid syntax\n" in server.output
        assert "edge dev: helpers.py, steps/broken_step.py changed; reloading\n" in server.output
    finally:
        assert server.stop() == 0


def test_dev_watches_what_discovery_walks(tmp_path):
    project = write_project(tmp_path, {
        **DEV, "lib/db.py": "", "config.json": "{}", ".edge/data.json": "{}", ".venv/lib/x.py": "",
        "steps/__pycache__/hello_step.cpython-311.py": "", "node_modules/m/index.py": "", "notes.txt": "",
    })
    assert sorted(os.path.relpath(p, project) for p in snapshot(project)) == [
        "config.json", "helpers.py", "lib/db.py", "steps/hello_step.py"]


def test_access_line():
    assert access_line("POST", "/todos", 201, 3.42) == "POST    /todos 201 3.4 ms"
    assert access_line("OPTIONS", "/todos?x=1", 204, 12.6) == "OPTIONS /todos?x=1 204 13 ms"


def test_logs_follow_prints_new_records_and_stops_on_ctrl_c(tmp_path):
    project = write_project(tmp_path / "app", GOOD)
    server = EdgeServer(project, tmp_path / "data").start()
    follower = None
    try:
        httpx.get(f"{server.url}/hello/ada", headers={"x-trace-id": "before"})
        follower = subprocess.Popen(
            [sys.executable, "-m", "edge", "logs", "--follow", "--step", "Hello", "--port", str(server.port),
             "--dir", str(project), "--data-dir", str(tmp_path / "data")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True).start()
        wait_for(lambda: any("(before) said hello" in line for line in lines), timeout=10)
        httpx.get(f"{server.url}/hello/bob", headers={"x-trace-id": "after"})
        wait_for(lambda: any("(after) said hello" in line for line in lines), timeout=5)
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0
        assert follower.stderr.read() == ""
        assert [line.split("] ", 1)[1] for line in lines] == [
            '(before) said hello {"to": "ada"}\n', '(after) said hello {"to": "bob"}\n']
    finally:
        if follower is not None and follower.poll() is None:
            follower.kill()
        server.kill()


def test_new_scaffolds_a_project_that_serves(tmp_path):
    result = edge("new", "todo-app", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        "created todo-app/ with steps/create_todo_step.py, steps/process_todo_step.py, steps/get_todo_step.py, "
        "tests/test_todos.py, requirements.txt, pyproject.toml, .gitignore, README.md")
    project = tmp_path / "todo-app"
    ignored = (project / ".gitignore").read_text().splitlines()
    assert {".edge/", "dist/", "build/"} <= set(ignored)
    readme = (project / "README.md").read_text()
    assert readme.startswith("# todo-app\n")
    assert "edge dev              # serve on http://localhost:3000" in readme
    assert "python -m pytest      # run the tests in tests/" in readme
    assert "from edge.testing import App" in (project / "tests" / "test_todos.py").read_text()
    server = EdgeServer(project, tmp_path / "data").start()
    try:
        with server.client() as c:
            r = c.post("/todos", json={"title": "water the tomatoes"})
            assert r.status_code == 201, r.text
            todo = r.json()
            assert (todo["title"], todo["status"]) == ("water the tomatoes", "open")
            assert wait_for(lambda: c.get(f"/todos/{todo['id']}").json()["status"] == "processed", timeout=10)
            assert c.post("/todos", json={}).status_code == 400
    finally:
        server.kill()
    again = edge("new", "todo-app", cwd=tmp_path)
    assert (again.returncode, again.stderr.strip()) == (1, "edge new: todo-app already exists and is not empty; pick a new name")


@pytest.mark.skipif(importlib.util.find_spec("edge.testing") is None,
                    reason="edge.testing does not exist yet (issue 14 item 1); the scaffold's test uses it")
def test_a_new_project_passes_its_own_test(tmp_path):
    assert edge("new", "todo-app", cwd=tmp_path).returncode == 0
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                            cwd=tmp_path / "todo-app", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_bad_server_interface_is_a_clear_error(tmp_path):
    project = write_project(tmp_path, GOOD)
    result = edge("start", "--dir", project, "--port", "0", env={"EDGE_SERVER_INTERFACE": "wsgi"})
    assert (result.returncode, result.stderr.strip()) == (  # a usage error, as EDGE_LOOP's (was exit code 1)
        2, 'edge start: EDGE_SERVER_INTERFACE: expected "rsgi" or "asgi", got "wsgi"')


def test_log_lines_people_read_escape_control_characters():
    # A tester: a message a client wrote into printed a forged "ERROR [Payments]" line and a
    # clear-screen escape through `edge dev` and `edge logs`.
    import io

    from edge.cli import _log_line
    from edge.tracing import Tracer

    forged = "user said hi\n2026-12-03 17:40:00 ERROR [Payments] (deadbeef) card charged twice\x1b[2J"
    out = io.StringIO()
    tracer = Tracer(None, mode="dev", out=out)
    tracer.log("info", forged, step="Log\x1b[31m")
    try:
        raise ValueError("bad\x1b[2J")
    except ValueError as exc:
        tracer.exception("Log failed", exc, step="Log")
    lines = out.getvalue().splitlines()
    assert lines[0].endswith(" INFO  [Log\\x1b[31m] user said hi\\n2026-12-03 17:40:00 ERROR [Payments] (deadbeef) "
                             "card charged twice\\x1b[2J")
    assert lines[-1] == "  | ValueError: bad\\x1b[2J"  # a traceback keeps its lines (marked), not its escapes
    assert _log_line({"time": 0, "level": "info", "msg": forged, "step": "Log"}).endswith(
        " INFO  [Log] user said hi\\n2026-12-03 17:40:00 ERROR [Payments] (deadbeef) card charged twice\\x1b[2J")
