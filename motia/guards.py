"""Type guards over triggers and step configs: ``is_api_trigger(t)``, ``get_queue_triggers(cfg)``, ...

They accept the dicts the helpers return, Motia-style trigger objects and edge's trigger models.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "is_api_trigger", "is_queue_trigger", "is_cron_trigger", "is_state_trigger", "is_stream_trigger",
    "is_api_step", "is_queue_step", "is_cron_step", "is_state_step", "is_stream_step",
    "get_api_triggers", "get_queue_triggers", "get_cron_triggers", "get_state_triggers", "get_stream_triggers",
]

_ALIASES = {"api": "http", "event": "queue"}


def _type(trigger: Any) -> str | None:
    kind = trigger.get("type") if isinstance(trigger, dict) else getattr(trigger, "type", None)
    return _ALIASES.get(kind, kind)


def _triggers(step: Any) -> list:
    config = getattr(step, "config", step)
    triggers = config.get("triggers") if isinstance(config, dict) else getattr(config, "triggers", None)
    return list(triggers or ())


def is_api_trigger(trigger: Any) -> bool:
    return _type(trigger) == "http"


def is_queue_trigger(trigger: Any) -> bool:
    return _type(trigger) == "queue"


def is_cron_trigger(trigger: Any) -> bool:
    return _type(trigger) == "cron"


def is_state_trigger(trigger: Any) -> bool:
    return _type(trigger) == "state"


def is_stream_trigger(trigger: Any) -> bool:
    return _type(trigger) == "stream"


def is_api_step(step: Any) -> bool:
    return any(map(is_api_trigger, _triggers(step)))


def is_queue_step(step: Any) -> bool:
    return any(map(is_queue_trigger, _triggers(step)))


def is_cron_step(step: Any) -> bool:
    return any(map(is_cron_trigger, _triggers(step)))


def is_state_step(step: Any) -> bool:
    return any(map(is_state_trigger, _triggers(step)))


def is_stream_step(step: Any) -> bool:
    return any(map(is_stream_trigger, _triggers(step)))


def get_api_triggers(step: Any) -> list:
    return [t for t in _triggers(step) if is_api_trigger(t)]


def get_queue_triggers(step: Any) -> list:
    return [t for t in _triggers(step) if is_queue_trigger(t)]


def get_cron_triggers(step: Any) -> list:
    return [t for t in _triggers(step) if is_cron_trigger(t)]


def get_state_triggers(step: Any) -> list:
    return [t for t in _triggers(step) if is_state_trigger(t)]


def get_stream_triggers(step: Any) -> list:
    return [t for t in _triggers(step) if is_stream_trigger(t)]
