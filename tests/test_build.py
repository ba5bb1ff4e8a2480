"""`edge build`: one real onefile build of a small app, run as a user would run it on a device
(copied into an empty folder, no Python on PATH, no virtualenv), plus the bad-input errors,
which are found before PyInstaller starts and so cost no build.

The build takes ~10-15 s; it is shared by every test that needs it (module-scoped fixture).
"""

from __future__ import annotations

import importlib.util
import json
import re
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import httpx
import pytest

from edge.cli import run

from .conftest import wait_for, write_project

HAVE_PYINSTALLER = importlib.util.find_spec("PyInstaller") is not None


def _cannot_build() -> str | None:
    """Why `edge build` cannot run on this machine (PyInstaller or libpython missing), or None."""
    from edge.build import BuildError, check_toolchain

    try:
        check_toolchain()
    except BuildError as exc:
        return str(exc)
    return None


CANNOT_BUILD = _cannot_build()
# Queues are built in parallel with the build; the queue part runs when they exist.
HAVE_QUEUES = importlib.util.find_spec("edge.queues") is not None
_LISTENING = re.compile(r"edge listening on http://[^:]+:(\d+)")

APP = {
    "steps/counter_step.py": """
        from .lib.names import normalise

        config = {
            "name": "Count",
            "flows": ["counting"],
            "triggers": [{"type": "http", "method": "POST", "path": "/count/:name"}],
            "enqueues": ["count.changed"],
            "includeFiles": ["data/*.txt"],
        }

        async def handler(req, ctx):
            name = normalise(req.path_params["name"])
            count = (await ctx.state.get("counts", name) or 0) + 1
            await ctx.state.set("counts", name, count)
            await ctx.enqueue({"topic": "count.changed", "data": {"name": name, "count": count}})
            return {"status": 200, "body": {"name": name, "count": count}}
    """,
    "steps/lib/names.py": """
        def normalise(name):
            return name.strip().lower()
    """,
    "steps/data/greeting.txt": "hello from an included file\n",
    "steps/greeting_step.py": """
        from pathlib import Path

        config = {"name": "Greeting", "triggers": [{"type": "http", "method": "GET", "path": "/greeting"}]}

        async def handler(req, ctx):
            import csv, io          # imported only here: the build must still freeze csv
            import helpers          # a project module outside steps/, imported lazily

            text = (Path(__file__).parent / "data" / "greeting.txt").read_text().strip()
            out = io.StringIO()
            csv.writer(out).writerow([text, helpers.shout(text)])
            return {"status": 200, "body": {"csv": out.getvalue().strip()}}
    """,
    "helpers.py": """
        def shout(text):
            return text.upper()
    """,
    "steps/tz_step.py": """
        import datetime
        import zoneinfo

        config = {"name": "Zones", "triggers": [{"type": "http", "method": "GET", "path": "/tz"}]}

        async def handler(req, ctx):
            winter = datetime.datetime(2024, 1, 15, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))
            return {"status": 200, "body": {"berlin_winter_offset_h": winter.utcoffset().total_seconds() / 3600}}
    """,
    "steps/counts_stream.py": """
        config = {"name": "counts", "schema": {"type": "object"}}
    """,
}
QUEUE_STEP = {
    "steps/audit_step.py": """
        config = {"name": "Audit", "triggers": [{"type": "queue", "topic": "count.changed"}]}

        async def handler(data, ctx):
            await ctx.state.set("audit", data["name"], data["count"])
    """,
}


# -- the shared build and the running binary ------------------------------------------------------

def _device_env(root: Path) -> dict[str, str]:
    """An environment like a fresh device: nothing on PATH (so no python), no virtualenv."""
    empty = root / "empty-path"
    empty.mkdir(exist_ok=True)
    (root / "tmp").mkdir(exist_ok=True)
    env = {"PATH": str(empty), "HOME": str(root), "TMPDIR": str(root / "tmp"), "LANG": "C.UTF-8"}
    assert shutil.which("python3", path=env["PATH"]) is None and shutil.which("python", path=env["PATH"]) is None
    return env


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The app built once with `edge build` and copied alone into an empty folder."""
    if CANNOT_BUILD:
        pytest.skip(f"edge build cannot run here: {CANNOT_BUILD}")
    root = tmp_path_factory.mktemp("build")
    project = write_project(root / "project", {**APP, **(QUEUE_STEP if HAVE_QUEUES else {})})
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "build", "--dir", str(project), "--name", "counter",
         "--out", str(root / "dist"), "--work-dir", str(root / "work")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    device = root / "device"
    device.mkdir()
    shutil.copy2(root / "dist" / "counter", device / "counter")
    return {"root": root, "dist": root / "dist", "device": device, "binary": device / "counter",
            "env": _device_env(device), "stdout": proc.stdout, "stderr": proc.stderr}


class Binary:
    """The copied binary serving on a port it chose, with its output collected."""

    def __init__(self, built):
        self.built = built
        self.lines: list[str] = []
        self.port: int | None = None
        seen = threading.Event()
        self.proc = subprocess.Popen(
            # options without a command mean `start` in a binary (build/entry.py)
            ["./counter", "--port", "0", "--host", "127.0.0.1"], cwd=built["device"],
            env=built["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

        def drain():
            for line in self.proc.stdout:
                self.lines.append(line)
                match = _LISTENING.search(line)
                if match and not seen.is_set():
                    self.port = int(match.group(1))
                    seen.set()

        threading.Thread(target=drain, daemon=True).start()
        if not seen.wait(30):
            self.proc.kill()
            raise AssertionError("the binary did not start listening:\n" + "".join(self.lines))
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)

    def cli(self, *args: str, server: bool = True) -> subprocess.CompletedProcess:
        """Run another subcommand of the same binary, as a user would next to the server."""
        port = ("--port", str(self.port)) if server else ()
        return subprocess.run(["./counter", *args, *port], cwd=self.built["device"], env=self.built["env"],
                              capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def served(built):
    binary = Binary(built)
    yield binary
    binary.http.close()
    if binary.proc.poll() is None:
        binary.proc.kill()
        binary.proc.wait(10)


# -- the build ----------------------------------------------------------------------------------

def test_build_reports_what_it_built(built):
    size = (built["dist"] / "counter").stat().st_size
    # --out is outside the working directory: the summary names it, absolute
    dist = re.escape(str(built["dist"]))
    assert re.fullmatch(rf"built {dist}/counter \(onefile, [\d.]+ MB\) in [\d.]+ s; "
                        rf"systemd unit {dist}/counter\.service\n", built["stdout"]), built["stdout"]
    assert f"edge build: {3 + HAVE_QUEUES} steps, 1 stream, 1 included file from" in built["stderr"]
    assert size < 25_000_000


def test_systemd_unit_beside_the_binary(built):
    unit = (built["dist"] / "counter.service").read_text()
    for line in ("ExecStart=/opt/counter/counter start", "WorkingDirectory=/var/lib/counter",
                 "Environment=EDGE_DATA_DIR=/var/lib/counter/data", "Environment=EDGE_PORT=3000",
                 "Environment=TMPDIR=/var/lib/counter/tmp", "StateDirectory=counter counter/tmp",
                 "KillMode=mixed", "Restart=on-failure", "WantedBy=multi-user.target"):
        assert line in unit.splitlines(), line
    # the install comment copies from where --out put the binary, not from dist/
    assert unit.splitlines()[1:3] == [
        f"#   sudo mkdir -p /opt/counter && sudo cp {built['dist']}/counter /opt/counter/",
        f"#   sudo cp {built['dist']}/counter.service /etc/systemd/system/ && sudo systemctl enable --now counter",
    ]


def test_the_binary_lists_its_bundled_steps(built):
    proc = subprocess.run(["./counter", "steps"], cwd=built["device"], env=built["env"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Count  (steps/counter_step.py)  [counting]\n    http   POST /count/:name\n" in proc.stdout
    assert "Greeting  (steps/greeting_step.py)" in proc.stdout
    assert proc.stdout.endswith(f"{3 + HAVE_QUEUES} steps, 1 stream, 0 errors\n")


# -- the binary on a "device" ------------------------------------------------------------------

def test_http_and_state_through_the_binary(served):
    assert served.http.post("/count/Alice").json() == {"name": "alice", "count": 1}
    assert served.http.post("/count/alice ").json() == {"name": "alice", "count": 2}
    got = served.cli("state", "get", "counts", "alice")
    assert (got.returncode, got.stdout) == (0, "2\n"), got.stderr
    put = served.cli("state", "set", "counts", "bob", "41")
    assert put.returncode == 0, put.stderr
    assert served.http.post("/count/bob").json() == {"name": "bob", "count": 42}


def test_helpers_included_files_and_lazy_imports_are_bundled(served):
    answer = served.http.get("/greeting")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"csv": "hello from an included file,HELLO FROM AN INCLUDED FILE"}


def test_time_zones_come_from_the_device(served):
    # Not bundled: zoneinfo reads the device's /usr/share/zoneinfo (docs/deploy.md).
    assert served.http.get("/tz").json() == {"berlin_winter_offset_h": 1.0}


@pytest.mark.skipif(not HAVE_QUEUES, reason="edge.queues is not in this tree yet")
def test_queue_and_emit_through_the_binary(served):
    served.http.post("/count/carol")
    wait_for(lambda: served.cli("state", "get", "audit", "carol").stdout == "1\n")
    sent = served.cli("emit", "--topic", "count.changed", "--message", '{"name": "dave", "count": 7}')
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: served.cli("state", "get", "audit", "dave").stdout == "7\n")


def test_the_console_is_in_the_binary(served):
    page = served.http.get("/__edge/")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="/__edge/console/app.js">' in page.text
    script = served.http.get("/__edge/console/flows.js")
    assert script.status_code == 200 and "export async function render" in script.text


def test_sigterm_stops_with_exit_0_and_data_stays_in_dot_edge(served, built):
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(30) == 0, "".join(served.lines)
    assert json.loads(served.lines[-1])["msg"] == "edge stopped"
    # The onefile bootloader removed what it unpacked into $TMPDIR.
    assert list((built["device"] / "tmp").iterdir()) == []
    # --data-dir defaults to ./.edge in the working directory; read it with no server up.
    assert (built["device"] / ".edge").is_dir()
    got = served.cli("state", "get", "counts", "alice", server=False)
    assert (got.returncode, got.stdout) == (0, "2\n"), got.stderr


def test_the_binary_runs_under_its_hardened_systemd_unit(built, tmp_path):
    """The unit edge build wrote, run by a real systemd (tests/systemd_sandbox.py), every
    sandboxing directive applied: the binary serves, keeps LMDB state, reads its token from
    /etc/default/<name>, runs unprivileged and confined, and stops cleanly."""
    from .systemd_sandbox import Sandbox, unavailable

    why = unavailable()
    if why is not None:
        pytest.skip(f"cannot run systemd here: {why}")
    canary = Path(tempfile.gettempdir()) / f"edge-systemd-canary-{os.getpid()}"
    canary.write_text("the host's /tmp must survive")
    token = "0123456789abcdef0123456789abcdef"
    probe = textwrap.dedent(f"""
        import json, time
        import httpx
        base, auth = "http://127.0.0.1:3000", {{"authorization": "Bearer {token}"}}
        for _ in range(200):
            try:
                health = httpx.get(base + "/__edge/health", headers=auth, timeout=2).json()
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit("the service never answered on port 3000")
        count = httpx.post(base + "/count/Tomatoes", timeout=10)
        query = {{"group": "counts", "key": "tomatoes"}}
        print(json.dumps({{"health": health, "count": [count.status_code, count.json()],
                          "state": httpx.get(base + "/__edge/state", params=query, headers=auth).json(),
                          "anonymous": httpx.get(base + "/__edge/state", params=query).status_code}}))
    """)
    with Sandbox(built["dist"] / "counter", built["dist"] / "counter.service", "counter", tmp_path,
                 env_file=f"EDGE_TOKEN={token}") as sd:
        answer = sd.python(probe, timeout=60)
        assert answer.returncode == 0, answer.stdout + answer.stderr + sd.service_output() + sd.output()
        got = json.loads(answer.stdout)
        assert got["health"]["status"] == "ok"
        assert got["count"] == [200, {"name": "tomatoes", "count": 1}]
        assert got["state"]["value"] == 1
        assert got["anonymous"] == 401  # the token from /etc/default/counter is in force
        assert sd.run("test", "-f", "/var/lib/private/counter/data/data.mdb").returncode == 0
        main = sd.show("MainPID")["MainPID"]
        app = sd.run("cat", f"/proc/{main}/task/{main}/children").stdout.split()  # onefile: the app child
        for pid in [main, *app]:
            status = dict(line.split(":", 1) for line in sd.run("cat", f"/proc/{pid}/status").stdout.splitlines())
            assert status["Uid"].split()[0] != "0", status["Uid"]
            assert status["NoNewPrivs"].strip() == "1"
            assert status["Seccomp"].strip() == "2"  # the system call filter
            assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0
        assert "runtime endpoints: clients that send EDGE_TOKEN" in sd.service_output()
        stopped = sd.run("systemctl", "stop", "counter")
        assert stopped.returncode == 0, stopped.stderr
        assert sd.show("ActiveState", "Result", "ExecMainStatus") == {
            "ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, sd.service_output()
    assert canary.read_text() == "the host's /tmp must survive"
    canary.unlink()


# -- bad input: found before PyInstaller runs ---------------------------------------------------

OK_STEP = {
    "steps/ok_step.py": """
        config = {"name": "Ok", "triggers": [{"type": "http", "method": "GET", "path": "/ok"}]}

        async def handler(req, ctx):
            return {"status": 200, "body": "ok"}
    """,
}


def _build(tmp_path, capsys, files, *args):
    project = write_project(tmp_path / "p", files)
    code = run(["build", "--dir", str(project), "--out", str(tmp_path / "dist"),
                "--work-dir", str(tmp_path / "work"), *args])
    captured = capsys.readouterr()
    assert not (tmp_path / "work" / "edge").exists(), "PyInstaller ran"
    return code, captured.err, project


def test_a_project_without_steps(tmp_path, capsys):
    code, err, project = _build(tmp_path, capsys, {"steps/notes.txt": "nothing here"})
    assert (code, err) == (1, f"edge build: no steps found under {project}/steps, {project}/src: nothing to build; "
                              "add a *_step.py file or point --dir at the project folder\n")


def test_a_step_importing_a_module_that_is_not_installed(tmp_path, capsys):
    code, err, _ = _build(tmp_path, capsys, {**OK_STEP, "steps/sensor_step.py": """
        import not_installed_sensor_lib

        config = {"name": "Sensor", "triggers": [{"type": "http", "method": "GET", "path": "/s"}]}

        async def handler(req, ctx):
            return {"status": 200}
    """})
    assert code == 1
    assert err == (
        "edge build: 1 step file failed to load:\n"
        "  steps/sensor_step.py: line 1: ModuleNotFoundError: No module named 'not_installed_sensor_lib'\n"
        "  the binary bundles the packages installed where `edge build` runs: install the missing ones into "
        f"{sys.prefix} (pip install ...) and build again\n")


def test_a_lazy_import_of_a_missing_module(tmp_path, capsys):
    code, err, _ = _build(tmp_path, capsys, {**OK_STEP, "steps/later_step.py": """
        config = {"name": "Later", "triggers": [{"type": "http", "method": "GET", "path": "/later"}]}

        async def handler(req, ctx):
            try:
                import optional_accelerator   # guarded: fine when missing
            except ImportError:
                pass
            import not_installed_http_lib
            return {"status": 200}
    """})
    assert (code, err) == (1, (
        "edge build: steps/later_step.py: line 8: imports not_installed_http_lib, which is not installed here; "
        f"pip install it into {sys.prefix} (the binary bundles what is installed where `edge build` runs) "
        "or guard the import with try/except ImportError\n"))


def test_an_include_files_pattern_that_matches_nothing(tmp_path, capsys):
    code, err, _ = _build(tmp_path, capsys, {"steps/report/report_step.py": """
        config = {"name": "Report", "includeFiles": ["templates/*.html"],
                  "triggers": [{"type": "http", "method": "GET", "path": "/r"}]}

        async def handler(req, ctx):
            return {"status": 200}
    """})
    assert (code, err) == (1, (
        'edge build: steps/report/report_step.py: includeFiles[0]: "templates/*.html" matches no file '
        "(patterns are relative to the step file, here steps/report/); fix the pattern or remove it\n"))


def test_a_name_with_a_slash(tmp_path, capsys):
    code, err, _ = _build(tmp_path, capsys, OK_STEP, "--name", "bin/app")
    assert (code, err) == (2, (
        'edge build: --name "bin/app": a name cannot contain "/"; it is the file name inside --out. '
        "Probably you meant --name app --out bin\n"))


def test_an_output_folder_that_cannot_be_written(tmp_path, capsys):
    (tmp_path / "dist").write_text("a file where the folder should be")
    code, err, _ = _build(tmp_path, capsys, OK_STEP)
    assert (code, err) == (1, (
        f"edge build: --out {tmp_path}/dist: cannot write there: a file is in the way (it must be a folder); "
        "choose another folder with --out\n"))


def test_the_binary_says_its_own_name(built):
    env = built["env"]
    help_text = subprocess.run(["./counter", "--help"], cwd=built["device"], env=env,
                               capture_output=True, text=True, timeout=30)
    assert help_text.stdout.startswith("usage: counter [-h] [--version] COMMAND ...\n"), help_text.stdout
    version = subprocess.run(["./counter", "--version"], cwd=built["device"], env=env,
                             capture_output=True, text=True, timeout=30)
    assert re.fullmatch(r"counter: built with edge \d+\.\d+\.\d+ \(Python 3\.\d+\.\d+ on Linux \w+\)\n",
                        version.stdout), version.stdout + version.stderr


@pytest.mark.skipif(not HAVE_PYINSTALLER, reason="PyInstaller is not installed")
def test_a_missing_python_shared_library_is_found_before_pyinstaller_runs(tmp_path, capsys, monkeypatch):
    from PyInstaller.depend import bindepend
    from PyInstaller.exceptions import PythonLibraryNotFoundError

    def missing():  # what PyInstaller does with Debian's python3 when libpython3.X is not installed
        raise PythonLibraryNotFoundError("Python shared library ('libpython3.11.so.1.0') was not found!")

    monkeypatch.setattr(bindepend, "get_python_library_path", missing)
    code, err, _ = _build(tmp_path, capsys, OK_STEP)
    from edge.build import missing_python_library_message

    assert (code, err) == (1, f"edge build: {missing_python_library_message()}\n")
    assert "freezing" not in err


def test_what_to_install_for_the_python_shared_library():
    from edge.build import missing_python_library_message

    v = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert missing_python_library_message(debian=True, base_prefix="/usr").endswith(
        f"is not installed, and PyInstaller copies it into the binary: sudo apt install libpython{v} "
        "(Debian's python3 ships it in that separate package), then run edge build again")
    assert missing_python_library_message(debian=False, base_prefix="/opt/py").startswith(
        "the Python in /opt/py has no shared library libpython")
    assert missing_python_library_message(debian=False, base_prefix="/opt/py").endswith(
        f"which PyInstaller copies into the binary: build with a Python compiled with --enable-shared "
        f"(pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install {v})")


@pytest.mark.skipif(bool(CANNOT_BUILD), reason=f"edge build cannot run here: {CANNOT_BUILD}")
def test_a_pyinstaller_failure_without_a_log_says_how_to_see_it(tmp_path, monkeypatch):
    import PyInstaller.__main__

    from edge.build import BuildError, plan_build, run_pyinstaller

    plan = plan_build(write_project(tmp_path / "p", OK_STEP), out=tmp_path / "dist", work=tmp_path / "work")

    def fail(args):
        raise SystemExit("ERROR: ERROR: something PyInstaller could not do")

    monkeypatch.setattr(PyInstaller.__main__, "run", fail)
    with pytest.raises(BuildError) as caught:
        run_pyinstaller(plan)
    assert str(caught.value) == ("PyInstaller failed: something PyInstaller could not do (run edge build --verbose "
                                 f"for its full log; the work folder is {tmp_path / 'work'})")


def test_the_work_folder_is_outside_the_project(tmp_path, monkeypatch):
    from edge.build import plan_build

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    project = write_project(tmp_path / "p", OK_STEP)
    plan = plan_build(project, out=tmp_path / "dist")
    assert plan.work.parent == tmp_path / "cache" / "edge" / "build"
    assert re.fullmatch(r"p-[0-9a-f]{10}", plan.work.name)
    assert not (project / "build").exists()


def test_pyinstaller_missing(tmp_path, monkeypatch):
    from edge.build import BuildError, plan_build, run_pyinstaller

    plan = plan_build(write_project(tmp_path / "p", OK_STEP), out=tmp_path / "dist", work=tmp_path / "work")
    monkeypatch.setitem(sys.modules, "PyInstaller", None)
    monkeypatch.setitem(sys.modules, "PyInstaller.__main__", None)
    with pytest.raises(BuildError, match=r"^PyInstaller is not installed: pip install 'edge\[build\]'"):
        run_pyinstaller(plan)


# -- what goes in: the plan ------------------------------------------------------------------

def test_the_plan_bundles_helpers_and_includes_and_trims_the_stdlib(tmp_path):
    from edge.build import plan_build

    project = write_project(tmp_path / "p", {**APP, "src/uses_pydantic_step.py": """
        config = {"name": "Typed", "triggers": [{"type": "http", "method": "GET", "path": "/typed"}]}

        async def handler(req, ctx):
            import httpx
            import pydantic
            return {"status": 200, "body": [pydantic.VERSION, httpx.__version__]}
    """})
    plan = plan_build(project, out=tmp_path / "dist", work=tmp_path / "work")
    bundled = sorted(f"{dest}/{Path(src).name}" for src, dest in plan.datas)
    assert bundled == [
        "_project/helpers.py",
        "_project/src/uses_pydantic_step.py",
        "_project/steps/counter_step.py",
        "_project/steps/counts_stream.py",
        "_project/steps/data/greeting.txt",
        "_project/steps/greeting_step.py",
        "_project/steps/lib/names.py",
        "_project/steps/tz_step.py",
    ]
    assert plan.name == "p"
    assert {"csv", "io", "pydantic", "httpx", "zoneinfo", "datetime", "pathlib"} <= set(plan.hiddenimports)
    assert "edge" in plan.hiddenimports
    assert {"tkinter", "unittest", "pydoc", "pip", "PyInstaller"} <= set(plan.excludes)
    # The project imports them, so they and what they need stay in.
    assert not {"pydantic", "pydantic_core", "annotated_types", "httpx", "httpcore", "anyio"} & set(plan.excludes)


def test_the_unit_installs_from_out_under_name(tmp_path):
    """The install commands in the unit name the binary where `--out` and `--name` put it
    (they said dist/<name> whatever --out was); the unit runs it from where they install it."""
    from edge.build import plan_build, write_unit

    project = write_project(tmp_path / "p", OK_STEP)
    out = tmp_path / "release" / "bin"
    plan = plan_build(project, name="sensor", out=out, work=tmp_path / "work")
    unit = write_unit(plan)
    lines = unit.read_text().splitlines()
    assert unit == out / "sensor.service"
    assert lines[:3] == [
        "# systemd unit written by `edge build`. Install:",
        f"#   sudo mkdir -p /opt/sensor && sudo cp {out}/sensor /opt/sensor/",
        f"#   sudo cp {out}/sensor.service /etc/systemd/system/ && sudo systemctl enable --now sensor",
    ]
    assert "ExecStart=/opt/sensor/sensor start" in lines

    # --onedir: the folder's contents go to /opt/<name>; a space in --out is quoted for the shell
    out = tmp_path / "my builds"
    plan = plan_build(project, name="sensor", out=out, work=tmp_path / "work", onedir=True)
    lines = write_unit(plan).read_text().splitlines()
    assert lines[1:3] == [
        f"#   sudo mkdir -p /opt/sensor && sudo cp -r '{out}/sensor/.' /opt/sensor/",
        f"#   sudo cp '{out}/sensor.service' /etc/systemd/system/ && sudo systemctl enable --now sensor",
    ]
    assert "ExecStart=/opt/sensor/sensor start" in lines


def test_pydantic_is_left_out_unless_the_project_imports_it(tmp_path):
    from edge.build import plan_build

    plan = plan_build(write_project(tmp_path / "p", OK_STEP), out=tmp_path / "dist", work=tmp_path / "work")
    assert {"pydantic", "pydantic_core"} <= set(plan.excludes)


def test_the_self_check_fails_a_binary_without_the_steps(tmp_path):
    from edge.build import BuildError, check_binary, plan_build

    plan = plan_build(write_project(tmp_path / "p", OK_STEP), out=tmp_path / "dist", work=tmp_path / "work")
    plan.binary.write_text('#!/bin/sh\necho \'{"steps": [], "errors": []}\'\n')
    plan.binary.chmod(0o755)
    with pytest.raises(BuildError) as caught:
        check_binary(plan)
    assert str(caught.value) == f"the built binary {plan.binary} lists steps [], expected ['Ok']"


def test_edge_start_never_imports_pyinstaller():
    code = ("import sys, edge.cli; edge.cli._load_extensions(); edge.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m == 'edge.build' or m.split('.')[0] == 'PyInstaller'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "['edge.build']\n"  # the subcommand is registered; PyInstaller is not loaded
