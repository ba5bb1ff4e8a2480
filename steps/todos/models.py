"""Shared pieces of the todo app."""

TODO_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "priority": {"type": "string", "enum": ["low", "normal", "high"]},
        "due": {"type": "string"},
    },
    "required": ["title"],
    "additionalProperties": False,
}

TODO_RESPONSE = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "title": {"type": "string"},
        "priority": {"type": "string"},
        "status": {"type": "string"},
        "created_at": {"type": "number"},
    },
    "required": ["id", "title", "status"],
}
