"""Matching request paths to HTTP triggers: ``/todos/:id`` (or ``{id}``) patterns."""

from __future__ import annotations

from typing import Any

__all__ = ["Router", "Match"]


class Match:
    """A route that matched: the step, its trigger, the path parameters (None: the route has
    none; a static route answers the same Match every time) and the body schema (or None)."""

    __slots__ = ("step", "trigger", "params", "schema")

    def __init__(self, step, trigger, params: dict[str, str] | None, schema=None):
        self.step = step
        self.trigger = trigger
        self.params = params
        self.schema = schema


class Router:
    """Static paths in a dict, patterned ones in a list; both keyed by method."""

    def __init__(self):
        self._static: dict[str, dict[str, Match]] = {}
        self._patterns: list[tuple[tuple[str, ...], dict[str, Match]]] = []

    def add(self, method: str, path: str, step, trigger, schema=None) -> None:
        parts = _split(path)
        route = Match(step, trigger, None, schema)
        if not any(p.startswith(":") for p in parts):
            self._static.setdefault("/" + "/".join(parts), {})[method] = route
            return
        for pattern, methods in self._patterns:
            if pattern == parts:
                methods[method] = route
                return
        self._patterns.append((parts, {method: route}))

    def match(self, method: str, path: str) -> tuple[Match | None, list[str] | None]:
        """Return ``(match, None)``, or ``(None, allowed_methods)``: no methods means 404."""
        methods = self._static.get(path)  # the common case: a static path as declared
        params: dict[str, str] | None = None
        if methods is None:
            parts = _split(path)
            methods = self._static.get("/" + "/".join(parts))
        if methods is None:
            for pattern, candidate in self._patterns:
                if len(pattern) != len(parts):
                    continue
                found = {}
                for want, got in zip(pattern, parts):
                    if want.startswith(":"):
                        found[want[1:]] = got  # Granian's path is decoded already
                    elif want != got:
                        break
                else:
                    methods, params = candidate, found
                    break
        if methods is None:
            return None, []
        route = methods.get(method) or (methods.get("GET") if method == "HEAD" else None)
        if route is None:
            return None, sorted(methods)
        if params is None:  # a static route: the same Match every time
            return route, None
        return Match(route.step, route.trigger, params, route.schema), None

    def allowed(self, path: str) -> list[str]:
        """The methods some step serves on ``path`` (empty: none)."""
        match, allowed = self.match("\0", path)
        return allowed or []

    def routes(self) -> list[tuple[str, str, Any, Any]]:
        out = []
        for path, methods in self._static.items():
            for method, route in methods.items():
                out.append((method, path, route.step, route.trigger))
        for parts, methods in self._patterns:
            for method, route in methods.items():
                out.append((method, "/" + "/".join(parts), route.step, route.trigger))
        return out


def _split(path: str) -> tuple[str, ...]:
    parts = []
    for part in path.split("/"):
        if not part:
            continue
        if part.startswith("{") and part.endswith("}"):
            part = ":" + part[1:-1]
        parts.append(part)
    return tuple(parts)
