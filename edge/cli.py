"""The ``edge`` command. Exit codes: 0 ok, 1 runtime error, 2 usage error.

Only this module configures output and calls ``sys.exit``/``os._exit``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ._format import mib, plural, printable
from .errors import EdgeError, PortInUse
from .settings import Settings

__all__ = ["main", "run"]

#: Commands that act on a running app talk to it on --port first, else open --data-dir.
_CLIENT_TIMEOUT = 5.0
#: How often `edge logs --follow` asks for new records.
FOLLOW_INTERVAL = 0.25
#: Records asked for per poll after the first (more than this between two polls are skipped, said so).
FOLLOW_WINDOW = 500
#: Exit status after the reader of stdout went away (`edge openapi | head`), as for SIGPIPE.
_EXIT_BROKEN_PIPE = 128 + 13


class UsageError(EdgeError):
    """Bad command-line usage (exit code 2)."""


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(sys.argv[1:] if argv is None else argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`edge openapi | head`): stop quietly, as Unix tools do. Point
        # stdout at /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = _EXIT_BROKEN_PIPE
    sys.stderr.flush()
    sys.exit(code)


def _common(parser: argparse.ArgumentParser, *, server: bool = False, local: bool = False) -> None:
    """The shared options: ``server`` commands bind --host/--port, ``local`` ones (steps,
    openapi) read only the project, and the others (the default) are clients of a running app."""
    parser.add_argument("--dir", help="project directory (EDGE_DIR, default .)")
    if local:
        return
    parser.add_argument("--data-dir", help="LMDB directory (EDGE_DATA_DIR, default <dir>/.edge)")
    if server:
        parser.add_argument("--port", help="HTTP port to listen on (EDGE_PORT, default 3000)")
        parser.add_argument("--host", help="address to listen on (EDGE_HOST, default 0.0.0.0: every interface)")
        parser.add_argument("--durability", help="durable|relaxed (EDGE_DURABILITY, default durable)")
        parser.add_argument("--max-body", help="largest request body, e.g. 1m (EDGE_MAX_BODY, default 1m)")
        parser.add_argument("--cors-origins", help="comma-separated origins or * (EDGE_CORS_ORIGINS, default none)")
        parser.add_argument("--threads", help="threads for sync handlers (EDGE_THREADS, default 4)")
        parser.add_argument("--idle-timeout", help="seconds before an idle HTTP connection is closed "
                                                   "(EDGE_IDLE_TIMEOUT, default 30)")
    else:
        parser.add_argument("--port", help="port of the running edge server to talk to (EDGE_PORT, default 3000); "
                                           "when none answers there, --data-dir is read directly")
        parser.add_argument("--host", help="address of the running edge server to talk to "
                                           "(EDGE_HOST, default 127.0.0.1)")


def prog_name() -> str:
    """``edge``, or the binary's own file name when frozen (``./todo --help`` says ``todo``)."""
    if getattr(sys, "frozen", False):
        return os.path.basename(sys.argv[0]) or "edge"
    return "edge"


def edge_version() -> str:
    """``edge 0.1.0 (Python 3.11.7 on Linux x86_64)``; a binary says its name first."""
    import platform
    from importlib import metadata

    try:
        version = metadata.version("edge")
    except metadata.PackageNotFoundError:
        version = "(version unknown: not installed with pip)"
    where = f"Python {platform.python_version()} on {platform.system()} {platform.machine()}"
    name = prog_name()
    return f"edge {version} ({where})" if name == "edge" else f"{name}: built with edge {version} ({where})"


class _VersionAction(argparse.Action):
    """``--version``, worked out only when asked for (it reads package metadata)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(edge_version())
        parser.exit()


class _Commands:
    """The subcommands, added through this (extensions too), which keeps each one's parser by
    name: argparse's own map of them is private."""

    def __init__(self, subparsers):
        self._subparsers = subparsers
        self.parsers: dict[str, argparse.ArgumentParser] = {}

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        parser = self._subparsers.add_parser(name, **kwargs)
        for alias in (name, *kwargs.get("aliases", ())):
            self.parsers[alias] = parser
        return parser


def build_parser() -> argparse.ArgumentParser:
    return _build_parser()[0]


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``edge`` parser, and each subcommand's parser by name (to say its usage)."""
    parser = argparse.ArgumentParser(prog=prog_name(), description="A Step runtime for small machines.")
    parser.add_argument("--version", action=_VersionAction, help="print edge's version and exit")
    sub = _Commands(parser.add_subparsers(dest="command", metavar="COMMAND"))

    p = sub.add_parser("start", help="serve the app (JSON logs; refuses to start with broken steps)")
    _common(p, server=True)
    p = sub.add_parser("dev", help="serve the app, reload on change, readable logs")
    _common(p, server=True)
    p.add_argument("--no-reload", action="store_true", help="do not watch the project's files")
    p = sub.add_parser("steps", help="validate and list steps, triggers, flows and streams")
    _common(p, local=True)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p = sub.add_parser("openapi", help="print the OpenAPI document of the HTTP steps")
    _common(p, local=True)

    p = sub.add_parser("state", help="read or write state")
    state = p.add_subparsers(dest="action", metavar="ACTION")
    for name, args in (("get", ("group", "key")), ("set", ("group", "key", "value")), ("list", ())):
        q = state.add_parser(name, help={"get": "print one value", "set": "store a JSON value",
                                         "list": "list groups, or a group's keys"}[name])
        for arg in args:
            q.add_argument(arg)
        if name == "list":
            q.add_argument("group", nargs="?")
        q.add_argument("--json", action="store_true",
                       help="print JSON (list: one document) instead of tab-separated lines")
        _common(q)

    for name, what in (("logs", "log records"), ("traces", "spans, one per handler run")):
        p = sub.add_parser(name, help=f"show recent {what}")
        p.add_argument("--limit", type=int, default=50, metavar="N",
                       help=f"show the N most recent {what.split(',')[0]}, oldest first (default 50)")
        p.add_argument("--trace", help="only this trace id")
        p.add_argument("--step", help="only this step")
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        p.add_argument("-f", "--follow", action="store_true",
                       help="keep printing new ones as they come (Ctrl-C stops)")
        _common(p)

    p = sub.add_parser("backup", help="write a consistent copy of the data directory (safe while edge runs)")
    p.add_argument("dest", help="directory to create for the copy (a data directory edge can start on)")
    _common(p, local=True)
    p.add_argument("--data-dir", help="LMDB directory (EDGE_DATA_DIR, default <dir>/.edge)")
    p = sub.add_parser("compact", help="shrink data.mdb to its live data (stop edge first)")
    _common(p, local=True)
    p.add_argument("--data-dir", help="LMDB directory (EDGE_DATA_DIR, default <dir>/.edge)")

    p = sub.add_parser("new", help="scaffold a project: steps, a test, README")
    p.add_argument("name", help="directory to create")

    for extend in _EXTENSIONS:
        extend(sub, _common)
    return parser, sub.parsers


#: Later layers (queues, build, ...) add subcommands: ``fn(commands, add_common)``, where
#: ``commands.add_parser(name, help=...)`` is argparse's.
_EXTENSIONS: list = []
#: ``command -> fn(args) -> int`` for those subcommands.
_HANDLERS: dict = {}


def extend(add_parsers, **handlers) -> None:
    _EXTENSIONS.append(add_parsers)
    _HANDLERS.update(handlers)


def run(argv: list[str]) -> int:
    if not argv or argv[0] not in ("start", "dev"):
        # Serving needs no extension commands: skip importing them (memory of a long run).
        _load_extensions()
    parser, commands = _build_parser()
    if not argv:
        argv = ["start"] if getattr(sys, "frozen", False) else argv
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # say it with the command's usage, not the top level's
            (commands.get(args.command) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:
        return 2 if exc.code else 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        handler = _HANDLERS.get(args.command) or globals()[f"cmd_{args.command}"]
        return handler(args)
    except UsageError as exc:
        print(f"edge {args.command}: {exc}", file=sys.stderr)
        return 2
    except PortInUse as exc:
        print(f"edge: {exc}", file=sys.stderr)
        return 1
    except EdgeError as exc:
        print(f"edge {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _load_extensions() -> None:
    if _EXTENSIONS:
        return
    import importlib

    for module in ("edge.queues_cli", "edge.build"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


#: The data directory the command line (or EDGE_DATA_DIR) named, if it named one: a command
#: that reaches a server must reach the one that serves it (:func:`call_server`).
_named_data_dir: Path | None = None


def settings_from(args, **extra) -> Settings:
    global _named_data_dir
    named = getattr(args, "data_dir", None) or os.environ.get("EDGE_DATA_DIR") or None
    _named_data_dir = Path(named) if named else None
    flags = {
        "dir": getattr(args, "dir", None),
        "data_dir": getattr(args, "data_dir", None),
        "port": getattr(args, "port", None),
        "host": getattr(args, "host", None),
        "durability": getattr(args, "durability", None),
        "max_body": getattr(args, "max_body", None),
        "idle_timeout": getattr(args, "idle_timeout", None),
        "cors_origins": getattr(args, "cors_origins", None),
        "threads": getattr(args, "threads", None),
        **extra,
    }
    from .errors import ConfigError

    try:
        return Settings.from_env(**flags)
    except ConfigError as exc:  # a flag or EDGE_* variable that cannot be parsed: usage, exit 2
        raise UsageError(str(exc)) from None


def discover_project(settings):
    from .steps import discover

    return discover(Path(settings.dir).resolve())


def _print_discovery_problems(discovery, *, file=sys.stderr) -> None:
    for error in discovery.errors:
        print(f"error: {error.message}", file=file)
    for path in discovery.unsupported:
        print(f"skipped: {path}: TypeScript/JavaScript steps are not supported yet; port the step to Python", file=file)


# -- serving -------------------------------------------------------------------------------

def _no_project(settings, mode: str) -> bool:
    """Say so when the project folder is not there (a typo in a unit file would otherwise
    serve an empty app that looks healthy)."""
    if Path(settings.dir).is_dir():
        return False
    what = "is not a folder" if Path(settings.dir).exists() else "does not exist"
    print(f"edge {mode}: the project folder {settings.dir} {what} (--dir / EDGE_DIR); point it at "
          "the folder that holds steps/", file=sys.stderr)
    return True


def cmd_start(args, *, mode: str = "start") -> int:
    settings = settings_from(args, mode=mode)
    if _no_project(settings, mode):
        return 1
    from ._lock import DataDirLock

    lock = DataDirLock.acquire(settings.data_dir)  # one process per data dir; held until os._exit
    if lock is not None:
        from .store import COMPACT_DIR, remove_stopped_compaction

        removed = remove_stopped_compaction(settings.data_dir)
        if removed is not None:
            print(f"edge {mode}: removed {Path(settings.data_dir) / COMPACT_DIR} ({removed / (1 << 20):.1f} MiB), "
                  "the copy of an edge compact that was stopped partway; the store was not changed by it",
                  file=sys.stderr)
    discovery = discover_project(settings)
    _print_discovery_problems(discovery)
    if discovery.errors and mode == "start":
        print(f"edge start: {plural(len(discovery.errors), 'step file')} failed to load; fix them "
              "(`edge steps` lists them) or run `edge dev` to serve the rest", file=sys.stderr)
        return 1
    if not discovery.steps:
        where = ", ".join(str(Path(settings.dir) / d) for d in ("steps", "src"))
        print(f"edge {mode}: no steps found under {where}: add a *_step.py file "
              "(see `edge new NAME` for a scaffold)", file=sys.stderr)
    from .server import run_server

    code = run_server(settings, discovery)
    del lock  # (the kernel drops it with the process)
    sys.stdout.flush()
    sys.stderr.flush()
    # Granian's Rust threads may still run: skip interpreter finalisation (STACK-NOTES 8).
    os._exit(code)


def cmd_dev(args) -> int:
    if args.no_reload or os.environ.get("EDGE_DEV_CHILD"):
        return cmd_start(args, mode="dev")
    from .devserver import supervise

    settings = settings_from(args)
    if _no_project(settings, "dev"):
        return 1
    return supervise(sys.argv[1:] if sys.argv[1:2] == ["dev"] else ["dev"], settings)


# -- inspection ----------------------------------------------------------------------------

def cmd_steps(args) -> int:
    settings = settings_from(args)
    discovery = discover_project(settings)
    if args.json:
        out = [{
            "name": s.name, "file": s.file, "flows": list(s.flows),
            "triggers": [t.info() for t in s.triggers],
            "enqueues": [e.topic for e in s.enqueues],
        } for s in discovery.steps]
        streams = [{"name": s.name, "file": s.file, "storage": s.storage_type,
                    "guarded": s.can_access is not None} for s in discovery.streams]
        print(json.dumps({"steps": out, "streams": streams, "errors": [e.message for e in discovery.errors],
                          "unsupported": list(discovery.unsupported)}, indent=2))
    else:
        for s in sorted(discovery.steps, key=lambda s: s.name):
            flows = f"  [{', '.join(s.flows)}]" if s.flows else ""
            print(f"{s.name}  ({s.file}){flows}")
            for t in s.triggers:
                print(f"    {_trigger_line(t)}")
            if s.enqueues:
                print(f"    enqueues: {', '.join(e.topic for e in s.enqueues)}")
        for s in sorted(discovery.streams, key=lambda s: s.name):
            notes = [n for n in ("in memory" if s.storage_type == "memory" else "",
                                 "canAccess" if s.can_access is not None else "") if n]
            print(f"stream {s.name}  ({s.file})" + (f"  [{', '.join(notes)}]" if notes else ""))
        _print_discovery_problems(discovery, file=sys.stdout)
        counts = [plural(len(discovery.steps), "step")]
        if discovery.streams:
            counts.append(plural(len(discovery.streams), "stream"))
        print(", ".join(counts + [plural(len(discovery.errors), "error")]))
    return 1 if discovery.errors else 0


def _trigger_line(t) -> str:
    if t.type == "http":
        return f"http   {t.method} {t.path}"
    if t.type == "queue":
        return f"queue  {t.topic} ({t.config.type})"
    if t.type == "cron":
        return f"cron   {t.expression}" + (f" {t.timezone}" if t.timezone else "")
    if t.type == "state":
        return "state  " + (" ".join(f"{k}={v}" for k, v in (("group", t.group), ("key", t.key)) if v) or "any change")
    filters = " ".join(f"{k}={v}" for k, v in (("group", t.group_id), ("item", t.item_id)) if v)
    return f"stream {t.stream_name}" + (f" {filters}" if filters else "")


def cmd_new(args) -> int:
    from .scaffold import write_scaffold

    target = Path(args.name)
    if "/" in args.name.strip("/") and not target.parent.exists():
        raise UsageError(f"the parent directory of {target} does not exist")
    if target.exists() and any(target.iterdir()):
        raise EdgeError(f"{target} already exists and is not empty; pick a new name")
    written = write_scaffold(target)
    print(f"created {target}/ with {', '.join(written)}\n\n"
          f"  cd {target}\n"
          "  edge dev                 # serve on :3000, reload on change\n"
          "  python -m pytest         # run tests/ (pip install -r requirements.txt first)")
    return 0


def cmd_openapi(args) -> int:
    from .openapi import build_openapi

    discovery = discover_project(settings_from(args))
    _print_discovery_problems(discovery)
    print(json.dumps(build_openapi(discovery.steps), indent=2))
    return 0


# -- talking to a running app, or to its data directory ---------------------------------------

def call_server(settings, method: str, path: str, body: Any = None, query: dict | None = None):
    """``(status, json)`` from the running server, or None when nothing listens on --port."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlencode

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    url = f"http://{host}:{settings.port}{path}"
    if query:
        url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if settings.token:
        request.add_header("authorization", f"Bearer {settings.token}")
    global _named_data_dir
    if _named_data_dir is not None and path != "/__edge/health":
        named, served = _named_data_dir, _served_data_dir(settings)
        _named_data_dir = None  # asked once per command (edge logs --follow polls)
        if served is not None and not _same_dir(served, named):
            raise EdgeError(
                f"the edge server on port {settings.port} serves the data in {served}, not --data-dir "
                f"{named}; to act on {named} while that server runs, pass a --port nothing listens on "
                f"(edge then opens {named} itself), or leave out --data-dir to act through the server")
    try:
        with urllib.request.urlopen(request, timeout=_CLIENT_TIMEOUT) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, (ConnectionRefusedError, FileNotFoundError)) or "refused" in str(reason).lower():
            return None
        raise EdgeError(f"cannot reach the edge server at {url}: {reason}") from None


def _served_data_dir(settings) -> Path | None:
    """The data directory the server on --port serves (from its health), or None: no server
    answers, or it shows only the minimal health (another machine without the token)."""
    answer = call_server(settings, "GET", "/__edge/health")
    if answer is None or answer[0] != 200 or not isinstance(answer[1], dict):
        return None
    store = answer[1].get("store")
    served = store.get("path") if isinstance(store, dict) else None
    return Path(served) if isinstance(served, str) and Path(served).is_absolute() else None


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them is not there (another machine's path): compare the names
        return a.absolute() == b.absolute()


#: How long a CLI write without a server waits for the data dir's lock (another command's
#: write finishing) before it concludes that a server holds it.
CLI_LOCK_WAIT = 2.0


@contextlib.contextmanager
def opened_store(settings, *, create: bool = False, write: bool = False):
    """The store, for a CLI command that found no server; closed on leaving. ``write``: hold
    the data dir's lock meanwhile, so a change never goes behind the back of a server that did
    not answer (another port): its queues and triggers would not see it."""
    from .store import Store

    if not create and not Path(settings.data_dir).exists():
        raise EdgeError(f"no data directory at {settings.data_dir}: start the app once, or pass --data-dir")
    lock = _cli_lock(settings) if write else None
    try:
        store = Store.open(settings.data_dir, settings.durability)
        try:
            yield store
        finally:
            store.close()
    finally:
        if lock is not None:
            lock.release()


def _cli_lock(settings, *, doing: str | None = None):
    from ._lock import DataDirInUse, DataDirLock

    waited_until = time.monotonic() + CLI_LOCK_WAIT
    while True:
        try:
            return DataDirLock.acquire(settings.data_dir)
        except DataDirInUse as exc:
            if time.monotonic() < waited_until:
                time.sleep(0.05)
                continue
            holder = f"pid {exc.pid}" if exc.pid is not None else "pid unknown"
            if doing is not None:
                raise EdgeError(f"{settings.data_dir} is in use by another edge process ({holder}); stop it "
                                f"first: {doing} needs the data directory to itself") from None
            raise EdgeError(f"{settings.data_dir} is in use by another edge process ({holder}); if it is the "
                            f"server, it did not answer on port {settings.port}: pass its --port (or EDGE_PORT) "
                            "and the change goes through it") from None


def _server_error(status: int, body) -> EdgeError:
    detail = body.get("detail") or body.get("error") if isinstance(body, dict) else body
    return EdgeError(f"the server answered {status}: {detail}")


def cmd_state(args) -> int:
    settings = settings_from(args)
    if args.action is None:
        raise UsageError("say get, set or list: `edge state get GROUP KEY`")
    if args.action == "set":
        try:
            value = json.loads(args.value)
        except ValueError as exc:
            raise UsageError(f"VALUE must be JSON (quote strings: '\"on\"'): {exc}") from None
    answer = None
    if args.action == "get":
        answer = call_server(settings, "GET", "/__edge/state", query={"group": args.group, "key": args.key})
    elif args.action == "set":
        answer = call_server(settings, "POST", "/__edge/state", {"group": args.group, "key": args.key, "value": value})
    else:
        answer = call_server(settings, "GET", "/__edge/state", query={"group": args.group})
    if answer is not None:
        status, body = answer
        if status == 404 and args.action == "get":
            print(f"edge state get: no value at group {args.group!r} key {args.key!r}", file=sys.stderr)
            return 1
        if status >= 400:
            raise _server_error(status, body)
        result = body.get("value") if args.action in ("get", "set") else body.get("items", body.get("groups"))
    else:
        from ._state import StateStore

        steps = None
        if args.action == "set":  # the project's state triggers fire as the server's would
            from .queues import QueueService

            discovery = discover_project(settings)
            _print_discovery_problems(discovery)
            steps = discovery.steps
        with opened_store(settings, create=args.action == "set", write=args.action == "set") as store:
            # their runs are stored with the change, and run when the server starts
            state = StateStore(store, on_change=None if steps is None else QueueService(store, steps).on_state_change)
            if args.action == "get":
                result = state.get_nowait(args.group, args.key)
                if result is None:
                    print(f"edge state get: no value at group {args.group!r} key {args.key!r}", file=sys.stderr)
                    return 1
            elif args.action == "set":
                result = state.set_sync(args.group, args.key, value)
            elif args.group:
                result = dict(state.items_nowait(args.group))
            else:
                result = state.list_groups_nowait()
    if args.json or args.action in ("get", "set"):
        print(json.dumps(result, indent=None if args.action != "list" else 2))
    elif isinstance(result, dict):
        for key, value in result.items():
            print(f"{key}\t{json.dumps(value)}")
    else:
        for group in result:
            print(group)
    return 0


def _recent(args, kind: str, *, limit: int | None = None) -> list[dict]:
    settings = settings_from(args)
    limit = args.limit if limit is None else limit
    answer = call_server(settings, "GET", f"/__edge/{kind}", query={
        "limit": limit, "trace_id": args.trace, "step": args.step})
    if answer is not None:
        status, body = answer
        if status >= 400:
            raise _server_error(status, body)
        return body["logs" if kind == "logs" else "spans"]
    import msgspec

    from .tracing import read_logs, read_spans

    with opened_store(settings) as store:
        reader = read_logs if kind == "logs" else read_spans
        return msgspec.to_builtins(reader(store, limit=limit, trace_id=args.trace, step=args.step))


def _print_recent(args, kind: str, line) -> int:
    if args.follow:
        return _follow(args, kind, line)
    for record in _recent(args, kind):
        print(json.dumps(record) if args.json else line(record))
    return 0


def _follow(args, kind: str, line) -> int:
    """Print the last --limit records, then every new one, polling until Ctrl-C.

    New records are those after the last one printed (records carry no sequence number in
    the API, so the last printed record is found again by its content).
    """
    last = None
    first = True
    try:
        while True:
            records = _recent(args, kind, limit=args.limit if first else max(args.limit, FOLLOW_WINDOW))
            keys = [json.dumps(r, sort_keys=True) for r in records]
            start = 0
            if last is not None:
                if last in keys:
                    start = len(keys) - keys[::-1].index(last)
                elif keys:
                    print(f"edge {kind}: more than {len(keys)} new records since the last look; "
                          "older ones skipped", file=sys.stderr)
            for record in records[start:]:
                print(json.dumps(record) if args.json else line(record))
            if keys:
                last = keys[-1]
            sys.stdout.flush()
            first = False
            time.sleep(FOLLOW_INTERVAL)
    except KeyboardInterrupt:
        return 0


def _log_line(record: dict) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["time"]))
    step = f" [{record['step']}]" if record.get("step") else ""
    trace = f" ({record['trace_id']})" if record.get("trace_id") else ""
    extra = f" {json.dumps(record['data'])}" if record.get("data") else ""
    return printable(f"{stamp} {record['level'].upper():5}{step}{trace} {record['msg']}{extra}")


def _span_line(span: dict) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(span["start"]))
    error = f"  {span['error']}" if span.get("error") else ""
    return printable(f"{stamp} {span['trace_id']} {span['step']:24} {span['trigger']:6} "
                     f"{span['duration_ms']:9.3f} ms  {span['status']}{error}")


def cmd_backup(args) -> int:
    import shlex

    from .store import backup

    settings = settings_from(args)
    source, dest = Path(settings.data_dir), Path(args.dest)
    if not (source / "data.mdb").exists():
        raise EdgeError(f"no store in {source} (no data.mdb): pass the --data-dir edge runs with")
    if source.resolve() in (dest.resolve(), *dest.resolve().parents):
        raise UsageError(f"{dest} is inside the data directory {source}; name a directory elsewhere "
                         "(on another disk, best)")
    if dest.is_dir() and any(entry.name != ".partial" for entry in dest.iterdir()) or (
            dest.exists() and not dest.is_dir()):  # (.partial: a backup killed halfway; redone)
        raise UsageError(f"{dest} already exists and is not an empty directory; name a new one")
    size = backup(source, dest, settings.durability)
    print(f"copied {source} to {dest} ({_size(size)}); to restore it, stop edge and start it "
          f"with --data-dir {shlex.quote(str(dest))}, or put {dest} in place of {source}")
    return 0


def cmd_compact(args) -> int:
    from .store import compact

    settings = settings_from(args)
    lock = _cli_lock(settings, doing="compact")
    try:
        before, after = compact(settings.data_dir, settings.durability)
    finally:
        if lock is not None:
            lock.release()
    print(f"compacted {settings.data_dir}: data.mdb {_size(before)} -> {_size(after)}")
    return 0


def _size(n: int) -> str:
    return mib(n) if n >= 1 << 20 else f"{n / 1024:.0f} KiB"


def cmd_logs(args) -> int:
    return _print_recent(args, "logs", _log_line)


def cmd_traces(args) -> int:
    return _print_recent(args, "traces", _span_line)
