"""``step(...)`` and ``multi_trigger_step(...)``: Motia 1.0's step builders.

A step file may export ``config`` and ``handler`` or one definition object
(``my_step = step(config, handler)``); discovery reads both.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from edge._loops import maybe_await

from ._types import StepConfig

__all__ = ["StepDefinition", "StepBuilder", "step", "MultiTriggerStepBuilder", "multi_trigger_step"]

StepHandler = Callable[..., Awaitable[Any]]


class StepDefinition:
    """A step's config and handler (what ``step(config, handler)`` returns)."""

    __slots__ = ("config", "handler")

    def __init__(self, config: StepConfig | dict[str, Any], handler: StepHandler):
        self.config = config
        self.handler = handler

    def __repr__(self) -> str:
        name = self.config.get("name") if isinstance(self.config, dict) else getattr(self.config, "name", "?")
        return f"StepDefinition({name!r})"


class StepBuilder:
    """``step(config).handle(handler)``."""

    def __init__(self, config: StepConfig | dict[str, Any]):
        self.config = config

    def handle(self, handler: StepHandler) -> StepDefinition:
        return StepDefinition(self.config, handler)


def step(config: StepConfig | dict[str, Any], handler: StepHandler | None = None) -> StepDefinition | StepBuilder:
    """``step(config, handler)`` -> a definition; ``step(config)`` -> a builder (``.handle(fn)``).

    The config is validated by discovery, with the file name in every message.
    """
    if handler is not None:
        return StepDefinition(config, handler)
    return StepBuilder(config)


class MultiTriggerStepBuilder:
    """One handler per trigger type: ``.on_queue(fn)``, ``.on_http(fn)``, ``.on_cron(fn)``,
    ``.on_state(fn)``, ``.on_stream(fn)``, then ``.handlers()`` (or ``.handlers({...})``).
    Cron handlers are called as ``fn(ctx)``, the others as ``fn(input, ctx)``."""

    def __init__(self, config: StepConfig | dict[str, Any]):
        self.config = config
        self._handlers: dict[str, Callable[..., Any]] = {}

    def _on(self, kind: str, handler: Callable[..., Any]) -> "MultiTriggerStepBuilder":
        self._handlers[kind] = handler
        return self

    def on_queue(self, handler):
        return self._on("queue", handler)

    def on_http(self, handler):
        return self._on("http", handler)

    def on_cron(self, handler):
        return self._on("cron", handler)

    def on_state(self, handler):
        return self._on("state", handler)

    def on_stream(self, handler):
        return self._on("stream", handler)

    def handlers(self, handlers: dict[str, Callable[..., Any]] | None = None) -> StepDefinition:
        if handlers:
            self._handlers.update(handlers)
        chosen = dict(self._handlers)
        if "api" in chosen and "http" not in chosen:
            chosen["http"] = chosen["api"]

        async def handler(input: Any, ctx: Any) -> Any:
            kind = ctx.trigger.type
            fn = chosen.get(kind)
            if fn is None:
                raise RuntimeError(f"No handler defined for trigger type: {kind}. "
                                   f"Available handlers: {', '.join(chosen)}")
            return await maybe_await(fn(ctx) if kind == "cron" else fn(input, ctx))

        return StepDefinition(self.config, handler)


def multi_trigger_step(config: StepConfig | dict[str, Any]) -> MultiTriggerStepBuilder:
    return MultiTriggerStepBuilder(config)
