"""The live todo list: one item per todo, in group "all", pushed to every WebSocket subscriber.

Subscribe with Motia's client (`new Stream("ws://<device>:3000").subscribeGroup("todos", "all")`)
or any WebSocket client (see README, "Streams").
"""

config = {
    "name": "todos",
    "description": "Every todo, live",
    "schema": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "title": {"type": "string"},
            "priority": {"type": "string", "enum": ["low", "normal", "high"]},
            "status": {"type": "string", "enum": ["open", "processed", "done"]},
            "created_at": {"type": "number"},
            "done_at": {"type": "number"},
        },
        "required": ["title", "status"],
    },
    # "default" keeps the list in LMDB across restarts; "memory" would keep it in RAM only.
    "baseConfig": {"storageType": "default"},
}
