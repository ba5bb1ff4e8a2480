import time

#: Done todos older than this are removed by the nightly clean-up.
KEEP_DONE_SECONDS = 7 * 24 * 3600

config = {
    "name": "CleanupTodos",
    "description": "Every night at 03:00, remove todos that were done more than a week ago",
    "flows": ["todos"],
    "triggers": [{"type": "cron", "expression": "0 3 * * *", "missed": "once"}],
}


async def handler(input, ctx):
    cutoff = time.time() - KEEP_DONE_SECONDS
    removed = 0
    for todo in await ctx.state.get_group("todos"):
        if todo.get("status") == "done" and todo.get("done_at", time.time()) < cutoff:
            await ctx.state.delete("todos", todo["id"])
            await ctx.streams.todos.delete("all", todo["id"])
            removed += 1
    ctx.logger.info("clean-up finished", {"removed": removed})
