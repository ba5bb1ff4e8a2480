import time

config = {
    "name": "AuditTodo",
    "description": "Keep an audit trail of every change to a todo",
    "flows": ["todos"],
    "triggers": [{"type": "state", "group": "todos"}],
}


async def handler(event, ctx):
    entry = {
        "todo": event.item_id,
        "change": event.event_type,
        "status": (event.new_value or event.old_value or {}).get("status"),
        "at": time.time(),
        "trace_id": ctx.trace_id,
    }
    await ctx.state.set("audit", f"{time.time_ns():020d}-{event.item_id}", entry)
    ctx.logger.info("todo changed", {"todo": event.item_id, "change": event.event_type})
