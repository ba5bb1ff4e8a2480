"""`edge emit` and `edge dlq list|redrive`: through the running server when it answers on
--port, else directly on the --data-dir store. Loaded by edge.cli on start."""

from __future__ import annotations

import json
import sys
import time

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
    q = actions.add_parser("list", help="list dead letters, oldest first")
    q.add_argument("--json", action="store_true", help="one JSON object per line")
    q.add_argument("--step", help="only this step's")
    q.add_argument("--limit", type=int, help="at most this many")
    common(q)
    q = actions.add_parser("redrive", help="put dead letters back on their queue (attempts reset)")
    q.add_argument("--step", help="only this step's")
    q.add_argument("--id", help="only this dead letter (see `edge dlq list`)")
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
        raise UsageError("say list or redrive: `edge dlq list`")
    if args.action == "list":
        return _dlq_list(args, settings)
    dlq_id = None
    if args.id is not None:
        try:
            dlq_id = int(args.id)
            if dlq_id < 1:
                raise ValueError(args.id)
        except ValueError:
            raise UsageError(f'--id: expected a dead-letter id such as 17 (see `edge dlq list`), got "{args.id}"') from None
    body = {k: v for k, v in (("step", args.step), ("id", dlq_id)) if v is not None}
    answer = call_server(settings, "POST", "/__edge/dlq/redrive", body)
    if answer is not None:
        status, result = answer
        if status == 404:
            raise EdgeError(result.get("detail", "not found"))
        if status >= 400:
            raise _server_error(status, result)
        redriven, skipped = result["redriven"], result["skipped"]
    else:
        from .queues.dlq import redrive_offline
        from .queues.service import unknown_step

        with opened_store(settings, write=True) as store:
            redriven, skipped = redrive_offline(store, step=args.step, dlq_id=dlq_id), []
        if dlq_id is not None and not redriven:
            raise EdgeError(f"no dead letter with id {dlq_id}; `edge dlq list` shows the ids")
        if args.step is not None and not redriven:  # as the server answers: known step, 0
            known = {s.name for s in discover_project(settings).steps if any(
                t.type == "queue" for t in s.triggers)}
            if args.step not in known:
                raise EdgeError(unknown_step(args.step, known))
    print(f"redriven: {len(redriven)}")
    for item in skipped:
        print(f"skipped {item['id']}: {item['reason']}", file=sys.stderr)
    return 1 if skipped and not redriven else 0  # nothing asked for could be redriven


def _dlq_list(args, settings) -> int:
    answer = call_server(settings, "GET", "/__edge/dlq", query={"step": args.step, "limit": args.limit})
    if answer is not None:
        status, body = answer
        if status >= 400:
            raise _server_error(status, body)
        entries = body["dead_letters"]
    else:
        from .queues.dlq import list_dead

        with opened_store(settings) as store:
            entries = list_dead(store, step=args.step, limit=args.limit)
    for entry in entries:
        if args.json:
            print(json.dumps(entry))
            continue
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["failed_at"]))
        data = json.dumps(entry["data"])
        if len(data) > 60:
            data = data[:57] + "..."
        print(f"{entry['id']:>6}  {stamp}  {entry['step']} <- {entry['topic']}  "
              f"attempts {entry['attempts']}  {entry['error']}  data {data}  trace {entry['trace_id']}")
    if not args.json and not entries:
        print("no dead letters")
    return 0


extend(_add_parsers, emit=cmd_emit, dlq=cmd_dlq)
