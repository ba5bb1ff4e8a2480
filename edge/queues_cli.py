"""`edge emit` and `edge dlq list|redrive|delete|orphans`: through the running server when it answers on
--port, else directly on the --data-dir store. Loaded by edge.cli on start."""

from __future__ import annotations

import json
import shlex
import sys
import time
from contextlib import ExitStack, contextmanager

from .cli import (UsageError, _print_discovery_problems, _server_error, call_server, discover_project, extend,
                  opened_store, settings_from)
from .errors import EdgeError

__all__ = ["cmd_emit", "cmd_dlq"]


def _add_parsers(sub, common) -> None:
    p = sub.add_parser("emit", help="enqueue a message on a topic")
    p.add_argument("--topic", required=True, help="the topic, e.g. todo.created")
    p.add_argument("--message", required=True, help="the message data as JSON, e.g. '{\"id\": 1}'")
    p.add_argument("--group", help="messageGroupId (order key of fifo subscriptions)")
    common(p)

    p = sub.add_parser("dlq", help="list or redrive dead letters (messages whose handler kept failing)")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    q = actions.add_parser("list", help="list dead letters, oldest first (the first 100; then says how many more)")
    q.add_argument("--json", action="store_true", help="one JSON object per line")
    q.add_argument("--step", help="only this step's")
    q.add_argument("--limit", type=int, help="at most this many (default 100)")
    q.add_argument("--after", help="those after this id (the last one a page showed)")
    q.add_argument("--all", action="store_true", help="every one (read page by page)")
    common(q)
    q = actions.add_parser("redrive", help="put dead letters back on their queue (attempts reset)")
    q.add_argument("--step", help="only this step's")
    q.add_argument("--id", help="only this dead letter (see `edge dlq list`)")
    q.add_argument("--to", metavar="STEP", help="into this step's queue instead (with --step or --id)")
    q.add_argument("--topic", help="the topic of --to STEP, when it subscribes to more than one")
    common(q)
    q = actions.add_parser("delete", help="remove dead letters for good (--id N, --step S or --all)")
    q.add_argument("--id", help="this dead letter (see `edge dlq list`)")
    q.add_argument("--step", help="every one of this step")
    q.add_argument("--all", action="store_true", help="every one")
    common(q)
    q = actions.add_parser("orphans", help="messages stored for a step that no longer subscribes to their topic")
    q.add_argument("--move", action="store_true", help="turn them into dead letters")
    q.add_argument("--step", help="only this (old) step's")
    q.add_argument("--json", action="store_true", help="one JSON object per step and topic")
    common(q)


def cmd_emit(args) -> int:
    settings = settings_from(args)
    try:
        data = json.loads(args.message)
    except ValueError as exc:
        raise UsageError(f"--message must be JSON, e.g. --message '{{\"id\": 1}}': {exc}") from None
    event = {"topic": args.topic, "data": data}
    if args.group is not None:
        event["messageGroupId"] = args.group
    answer = call_server(settings, "POST", "/__edge/emit", event)
    if answer is not None:
        status, body = answer
        if status in (400, 404) and isinstance(body, dict):
            raise EdgeError(body["error"] if body.get("errors") else body.get("detail") or body.get("error"))
        if status >= 400:
            raise _server_error(status, body)
        print(f'enqueued to "{args.topic}" for {", ".join(body["steps"])} (trace {body["trace_id"]})')
        return 0
    # No server: validate against the project's steps and store the message directly.
    from .queues import QueueService
    from .queues.enqueue import parse_event
    from .tracing import new_id

    discovery = discover_project(settings)
    _print_discovery_problems(discovery)
    with opened_store(settings, write=True) as store:
        service = QueueService(store, discovery.steps)
        topic, data, group = parse_event(event, "emit")
        if topic not in service.by_topic:
            raise EdgeError(service.no_subscribers(topic))
        out = service.outgoing(topic, data, group, new_id(16), where="emit")
        service.commit_sync([out])
    print(f'stored for "{topic}" ({", ".join(out.steps)}) in {settings.data_dir}; '
          "delivered when the server starts")
    return 0


def cmd_dlq(args) -> int:
    settings = settings_from(args)
    if args.action is None:
        raise UsageError("say list, redrive, delete or orphans: `edge dlq list`")
    if args.action == "list":
        return _dlq_list(args, settings)
    if args.action == "delete":
        return _dlq_delete(args, settings)
    if args.action == "orphans":
        return _dlq_orphans(args, settings)
    return _dlq_redrive(args, settings)


def _dlq_redrive(args, settings) -> int:
    dlq_id = None if args.id is None else _id_arg(args.id, "--id", low=1)
    if args.to is not None and args.step is None and dlq_id is None:
        raise UsageError("--to moves the dead letters of one --step or one --id; say which, e.g. "
                         f"edge dlq redrive --step OLD --to {shlex.quote(args.to)}")
    if args.topic is not None and args.to is None:
        raise UsageError("--topic says which topic of --to STEP the dead letters go to; give --to STEP too")
    body = {k: v for k, v in (("step", args.step), ("id", dlq_id), ("to", args.to), ("topic", args.topic))
            if v is not None}
    answer = call_server(settings, "POST", "/__edge/dlq/redrive", body)
    if answer is not None:
        status, result = answer
        if status == 404:
            raise EdgeError(result.get("detail", "not found"))
        if status == 400 and isinstance(result, dict):
            raise UsageError(result.get("detail") or result.get("error"))
        if status >= 400:
            raise _server_error(status, result)
        skipped = result["skipped"]  # (a server of an earlier edge, not restarted yet, sends the lists alone)
        redriven, skips = result.get("count", len(result["redriven"])), result.get("skipped_count", len(skipped))
    else:
        from .queues.dlq import redrive_offline
        from .queues.orphans import failed_files
        from .queues.service import BadRedrive, unknown_step

        with _offline_service(settings) as (service, discovery):
            try:
                target = None if args.to is None else service.target(args.to, args.topic)
            except BadRedrive as exc:
                raise UsageError(str(exc) + failed_files(discovery)) from None
            redriven, skips, skipped, matched = redrive_offline(service.store, service.by_name, step=args.step,
                                                         dlq_id=dlq_id, to=target, now_ms=int(time.time() * 1000))
            known = {name for name, _ in service.by_name}
        if dlq_id is not None and not matched:
            raise EdgeError(f"no dead letter with id {dlq_id}; `edge dlq list` shows the ids")
        if args.step is not None and not matched and args.step not in known:  # as the server answers
            raise EdgeError(unknown_step(args.step, known))
    print(f"redriven: {redriven}")
    for item in skipped:
        print(f"skipped {item['id']}: {item['reason']}", file=sys.stderr)
    if skips > len(skipped):
        print(f"... and {skips - len(skipped):,} more skipped ({skips:,} in all); `edge dlq list` shows them",
              file=sys.stderr)
    return 1 if skips and not redriven else 0  # nothing asked for could be redriven


@contextmanager
def _offline_service(settings):
    """The queue service over --data-dir (no server answered), with the project's steps and
    the data dir's lock: what the server would route to, without serving; and the discovery
    it came from (what moving orphans checks first)."""
    from .queues import QueueService

    discovery = discover_project(settings)
    _print_discovery_problems(discovery)
    with opened_store(settings, write=True) as store:
        yield QueueService(store, discovery.steps), discovery


def _dlq_delete(args, settings) -> int:
    chosen = [flag for flag, given in (("--id", args.id is not None), ("--step", args.step is not None),
                                       ("--all", args.all)) if given]
    if len(chosen) != 1:
        got = f" (got {' and '.join(chosen)})" if chosen else ""
        raise UsageError(f"say which dead letters: --id N, --step S or --all, exactly one of them{got}")
    dlq_id = None if args.id is None else _id_arg(args.id, "--id", low=1)
    missing = f"no dead letter with id {dlq_id}; `edge dlq list` shows the ids"
    answer = call_server(settings, "DELETE", "/__edge/dlq",
                         query={"id": dlq_id, "step": args.step, "all": "true" if args.all else None})
    if answer is not None:
        status, result = answer
        if status == 404:
            raise EdgeError(missing)
        if status >= 400:
            raise _server_error(status, result)
        count = result["count"]
    else:
        from .queues.dlq import delete_offline

        with opened_store(settings, write=True) as store:
            count = delete_offline(store, step=args.step, dlq_id=dlq_id)
        if dlq_id is not None and not count:
            raise EdgeError(missing)
    print(f"deleted: {count}")
    return 0


def _from_server(settings, method: str, path: str, body=None, query=None) -> dict | None:
    """The running server's answer (an error status raised as what it says); None: no server."""
    answer = call_server(settings, method, path, body, query)
    if answer is None:
        return None
    status, result = answer
    if status >= 400:
        raise _server_error(status, result)
    return result


def _dlq_orphans(args, settings) -> int:
    if args.move:
        result = _from_server(settings, "POST", "/__edge/dlq/orphans/move", {"step": args.step} if args.step else {})
        if result is not None:
            moved = result["moved"]
        else:
            from .queues.dlq import drive_sync
            from .queues.orphans import moving_refused

            with _offline_service(settings) as (service, discovery):
                refused = moving_refused(discovery, settings.dir)
                if refused is not None:
                    raise EdgeError(refused)
                moved = sum(drive_sync(service.store, service.moving_orphans(args.step)).values())
        if not moved:
            print("no orphaned messages")
        else:
            step = f" --step {shlex.quote(args.step)}" if args.step else ""
            print(f"moved {moved} orphaned message(s) to the dead-letter queue; edge dlq list{step} shows them, "
                  "edge dlq redrive --to STEP or edge dlq delete takes them from there")
        return 0
    result = _from_server(settings, "GET", "/__edge/dlq/orphans", query={"step": args.step})
    if result is not None:
        orphans = result["orphans"]
    else:
        with _offline_service(settings) as (service, _):
            orphans = service.orphans(args.step)
    for entry in orphans:
        if args.json:
            print(json.dumps(entry))
            continue
        first = ", ".join(_clip(json.dumps(data)) for data in entry["first"])
        more = ", ..." if entry["count"] > len(entry["first"]) else ""
        count = f"{entry['count']:,}{'+' if entry.get('at_least') else ''}"
        print(f"{entry['step']} <- {entry['topic']}  {count} message(s)  data {first}{more}")
    if not orphans and not args.json:
        print("no orphaned messages")
    elif not args.json:
        print("no step subscribes to these any more; edge dlq orphans --move [--step S] makes them dead letters "
              "(then edge dlq redrive --to STEP or edge dlq delete)")
    return 0


def _clip(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _id_arg(value: str, flag: str, low: int) -> int:
    try:
        number = int(value)
        if number < low:
            raise ValueError(value)
    except ValueError:
        raise UsageError(f'{flag}: expected a dead-letter id such as 17 (see `edge dlq list`), got "{value}"') from None
    return number


#: Dead letters `edge dlq list` asks for at a time when it shows more than one page's worth
#: (--all, a large --limit): what it holds in memory at once.
_PAGE = 500


def _dlq_list(args, settings) -> int:
    from .queues.dlq import DEFAULT_LIMIT, list_page

    if args.all and args.limit is not None:
        raise UsageError("--all shows every dead letter; leave out --limit")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit: expected at least 1, got {args.limit} (--all shows every one)")
    after = None if args.after is None else _id_arg(args.after, "--after", low=0)
    wanted = None if args.all else args.limit or DEFAULT_LIMIT
    with ExitStack() as stack:
        store = None

        def fetch(after: int | None, limit: int) -> dict:
            """A page from the server when it answers, else from --data-dir (one read each)."""
            nonlocal store
            if store is None:
                body = _from_server(settings, "GET", "/__edge/dlq",
                                    query={"step": args.step, "limit": limit, "after": after})
                if body is not None:
                    return body
                store = stack.enter_context(opened_store(settings))
            return list_page(store, step=args.step, limit=limit, after=after)

        shown, last = 0, after
        while True:
            body = fetch(last, _PAGE if wanted is None else min(_PAGE, wanted - shown))
            entries = body["dead_letters"]
            for entry in entries:
                _print_dead(entry, args.json)
            shown += len(entries)
            if entries:
                last = entries[-1]["id"]
            if not entries or not body.get("more") or (wanted is not None and shown >= wanted):
                break
    more, total = body.get("more") or 0, body.get("total", shown)
    if not shown:
        if not args.json:
            print(f"no dead letters after id {after} ({total:,} in all)" if after and total else "no dead letters")
    elif more:
        step = f" --step {shlex.quote(args.step)}" if args.step else ""
        limit = f" --limit {args.limit}" if args.limit else ""
        print(f"... and {more:,} more ({total:,} in all): edge dlq list{step} --after {last}{limit} shows the next "
              f"{min(more, wanted):,}, edge dlq list{step} --all every one", file=sys.stderr if args.json else sys.stdout)
    return 0


def _print_dead(entry: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(entry))
        return
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["failed_at"]))
    data = _clip(json.dumps(entry["data"]))
    print(f"{entry['id']:>6}  {stamp}  {entry['step']} <- {entry['topic']}  "
          f"attempts {entry['attempts']}  {entry['error']}  data {data}  trace {entry['trace_id']}")


extend(_add_parsers, emit=cmd_emit, dlq=cmd_dlq)
