"""The `edge` command: inspection, state, logs and traces online and offline, dev reload, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx

from .conftest import EdgeServer, wait_for, write_project

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


def test_steps_lists_steps_and_triggers(tmp_path):
    project = write_project(tmp_path, GOOD)
    result = edge("steps", "--dir", project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "Hello  (steps/hello_step.py)  [demo]",
        "    http   GET /hello/:name",
        "1 step(s), 0 error(s)",
    ]


def test_steps_reports_config_errors_verbatim(tmp_path):
    project = write_project(tmp_path, BROKEN)
    result = edge("steps", "--dir", project)
    assert result.returncode == 1
    assert 'error: steps/broken_step.py: triggers[0].bodySchem: unknown key; did you mean "bodySchema"?' in result.stdout


def test_start_refuses_broken_steps(tmp_path):
    project = write_project(tmp_path, BROKEN)
    result = edge("start", "--dir", project, "--port", "0")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "edge start: 1 step file(s) failed to load; fix them (`edge steps` lists them) "
        "or run `edge dev` to serve the rest"
    )


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
    assert edge("start", "--no-such-flag").returncode == 2
    assert edge("state", "--dir", tmp_path).returncode == 2
    result = edge("state", "set", "g", "k", "not json", "--dir", tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("edge state: VALUE must be JSON (quote strings: '\"on\"'): ")
    result = edge("start", "--port", "many", "--dir", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == 'edge start: --port: expected an integer, got "many"'


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


def test_dev_reloads_on_change_and_keeps_serving_with_a_broken_step(tmp_path):
    project = write_project(tmp_path / "app", GOOD)
    server = EdgeServer(project, tmp_path / "data", command="dev").start()
    try:
        assert httpx.get(f"{server.url}/hello/x").json() == {"hello": "x"}
        step = project / "steps" / "hello_step.py"
        step.write_text(step.read_text().replace('{"hello": req.path_params["name"]}', '{"hi": req.path_params["name"]}'))
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
        assert "edge dev: steps/broken_step.py, steps/hello_step.py changed; reloading\n" in server.output
    finally:
        assert server.stop() == 0


def test_new_scaffolds_a_project_that_serves(tmp_path):
    result = edge("new", "greeter", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("created greeter/steps/hello_step.py")
    server = EdgeServer(tmp_path / "greeter", tmp_path / "data").start()
    try:
        assert httpx.get(f"{server.url}/hello/pi").json() == {"hello": "pi", "visits": 1}
    finally:
        server.kill()
    again = edge("new", "greeter", cwd=tmp_path)
    assert (again.returncode, again.stderr.strip()) == (1, "edge new: greeter already exists and is not empty; pick a new name")


def test_bad_server_interface_is_a_clear_error(tmp_path):
    project = write_project(tmp_path, GOOD)
    result = edge("start", "--dir", project, "--port", "0", env={"EDGE_SERVER_INTERFACE": "wsgi"})
    assert (result.returncode, result.stderr.strip()) == (
        1, 'edge start: EDGE_SERVER_INTERFACE: expected "rsgi" or "asgi", got "wsgi"')
