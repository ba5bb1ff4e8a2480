import time
import uuid

from .models import TODO_RESPONSE, TODO_SCHEMA

config = {
    "name": "CreateTodo",
    "description": "Create a todo and queue it for processing",
    "flows": ["todos"],
    "triggers": [
        {
            "type": "http",
            "method": "POST",
            "path": "/todos",
            "bodySchema": TODO_SCHEMA,
            "responseSchema": {201: TODO_RESPONSE},
        }
    ],
    "enqueues": ["todo.created"],
}


async def handler(request, ctx):
    todo = {
        "id": uuid.uuid4().hex[:12],
        "title": request.body["title"],
        "priority": request.body.get("priority", "normal"),
        "status": "open",
        "created_at": time.time(),
    }
    await ctx.state.set("todos", todo["id"], todo)
    await ctx.streams.todos.set("all", todo["id"], todo)  # the live list sees it at once
    await ctx.enqueue({"topic": "todo.created", "data": todo})
    ctx.logger.info("todo created", {"id": todo["id"]})
    return {"status": 201, "body": todo}
