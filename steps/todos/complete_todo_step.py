import time

config = {
    "name": "CompleteTodo",
    "description": "Mark a todo done",
    "flows": ["todos"],
    "triggers": [{"type": "http", "method": "PUT", "path": "/todos/:id/done"}],
}


async def handler(request, ctx):
    todo_id = request.path_params["id"]
    if await ctx.state.get("todos", todo_id) is None:
        return {"status": 404, "body": {"error": f"no todo {todo_id}"}}
    todo = await ctx.state.update("todos", todo_id, [
        {"type": "set", "path": "status", "value": "done"},
        {"type": "set", "path": "done_at", "value": time.time()},
    ])
    await ctx.streams.todos.set("all", todo_id, todo)
    return {"status": 200, "body": todo}
