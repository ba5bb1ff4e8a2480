config = {
    "name": "ListTodos",
    "description": "List todos, optionally only those with a given status",
    "flows": ["todos"],
    "triggers": [
        {
            "type": "http",
            "method": "GET",
            "path": "/todos",
            "queryParams": [{"name": "status", "description": "open, processed or done"}],
        }
    ],
}


async def handler(request, ctx):
    todos = await ctx.state.get_group("todos")
    status = request.query_params.get("status")
    if status:
        todos = [t for t in todos if t.get("status") == status]
    todos.sort(key=lambda t: t.get("created_at", 0))
    return {"status": 200, "body": todos}
