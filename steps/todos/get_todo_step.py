config = {
    "name": "GetTodo",
    "description": "Fetch one todo",
    "flows": ["todos"],
    "triggers": [{"type": "http", "method": "GET", "path": "/todos/:id"}],
}


async def handler(request, ctx):
    todo = await ctx.state.get("todos", request.path_params["id"])
    if todo is None:
        return {"status": 404, "body": {"error": f"no todo {request.path_params['id']}"}}
    return {"status": 200, "body": todo}
