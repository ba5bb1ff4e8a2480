"""Background processing: every created todo is marked "processed" off the request path.

The message comes from CreateTodo's `ctx.enqueue({"topic": "todo.created", ...})`; it is
stored durably before the HTTP response, delivered here in the same trace, retried with
backoff if this handler fails, and dead-lettered after the last retry (`edge dlq list`).
"""

import time

from .models import TODO_RESPONSE

config = {
    "name": "ProcessTodo",
    "description": "Mark a new todo processed (runs from the queue, not the request)",
    "flows": ["todos"],
    "triggers": [
        {
            "type": "queue",
            "topic": "todo.created",
            "input": TODO_RESPONSE,
            "config": {"maxRetries": 5, "backoffDelayMs": 500, "concurrency": 4, "timeout": 10},
        }
    ],
}


async def handler(todo, ctx):
    current = await ctx.state.get("todos", todo["id"])
    if current is None:  # deleted (or cleaned up) before we got to it: nothing to do
        ctx.logger.info("todo gone before processing", {"id": todo["id"]})
        return
    if current.get("status") != "open":  # already processed or done: a redelivery is harmless
        return
    updated = await ctx.state.update("todos", todo["id"], [
        {"type": "set", "path": "status", "value": "processed"},
        {"type": "set", "path": "processed_at", "value": time.time()},
    ])
    await ctx.streams.todos.set("all", todo["id"], updated)  # live list: pushed to subscribers
    ctx.logger.info("todo processed", {"id": todo["id"]})
