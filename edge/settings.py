"""Settings: CLI flags, else EDGE_* environment variables, else defaults."""

from __future__ import annotations

import math
import os
from pathlib import Path

import msgspec

from .errors import ConfigError

__all__ = ["Settings", "parse_size"]


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    dir: Path = Path(".")
    host: str = "0.0.0.0"
    port: int = 3000
    data_dir: Path = Path(".edge")
    durability: str = "durable"
    max_body: int = 1 << 20
    #: "dev" (readable logs, reload, broken steps skipped) or "start" (JSON logs, strict).
    mode: str = "start"
    #: Needed by other machines for the runtime endpoints (/__edge/...): docs/security.md.
    token: str | None = None
    #: Extra names (or ".domain" suffixes, or "*") accepted in the Host header of /__edge/ requests.
    allowed_hosts: tuple[str, ...] = ()
    #: Streams without canAccess need EDGE_TOKEN too.
    streams_require_token: bool = False
    #: Seconds in-flight work gets to finish on SIGTERM before it is cancelled.
    grace: float = 10.0
    cors_origins: tuple[str, ...] = ()
    log_level: str = "info"
    #: Threads that run sync handlers (a blocking handler holds one while it runs).
    threads: int = 4
    #: Seconds an HTTP connection may wait for (the head of) its next request: connections
    #: that never send one, and idle keep-alive connections, are closed after it; so are stream
    #: WebSockets that hold no subscription that long (edge/server/ws.py).
    idle_timeout: float = 30.0
    #: An OpenTelemetry collector's OTLP/HTTP address: spans are exported there (edge._otlp).
    otlp_endpoint: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **flags) -> "Settings":
        """Build settings: a flag given (not None) wins over ``EDGE_<NAME>``, which wins over the default.

        Raises:
            ConfigError: a value cannot be parsed; the message names the flag and the variable.
        """
        env = os.environ if env is None else env
        values, sources = {}, {}
        for name, field_type in (
            ("dir", Path), ("host", str), ("port", int), ("data_dir", Path),
            ("durability", str), ("max_body", "size"), ("token", str), ("grace", float),
            ("cors_origins", "list"), ("log_level", str), ("threads", int), ("allowed_hosts", "list"),
            ("streams_require_token", "bool"), ("idle_timeout", float), ("otlp_endpoint", str),
        ):
            raw = flags.get(name)
            source = f"--{name.replace('_', '-')}"
            if raw is None:
                var = f"EDGE_{name.upper()}"
                if var not in env or env[var] == "":
                    continue
                raw, source = env[var], var
            values[name] = _parse(raw, field_type, source)
            sources[name] = source
        if "mode" in flags and flags["mode"] is not None:
            values["mode"] = flags["mode"]
        durability = values.get("durability", "durable")
        if durability not in ("durable", "relaxed"):
            raise ConfigError(f'{sources["durability"]}: expected "durable" or "relaxed", got "{durability}"')
        level = values.get("log_level", "info")
        if level not in _LOG_LEVELS:
            raise ConfigError(f'EDGE_LOG_LEVEL: expected one of {", ".join(_LOG_LEVELS[:4])}, got "{level}"')
        if values.get("threads", 1) < 1:
            raise ConfigError(f"{sources['threads']}: expected at least 1, got {values['threads']}")
        idle = values.get("idle_timeout", 30.0)
        if not 0.1 <= idle <= 86400:
            raise ConfigError(f"{sources['idle_timeout']}: expected seconds from 0.1 to 86400, got {idle}")
        if values.get("grace", 0) < 0:
            raise ConfigError(f"{sources['grace']}: expected seconds (0 or more), got {values['grace']}")
        port = values.get("port", 3000)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{sources['port']}: expected 0..65535, got {port}")
        loop = env.get("EDGE_LOOP", "").strip().lower()  # read by edge.server.bridge.loop_factory
        if loop not in ("", "uvloop", "asyncio"):
            raise ConfigError(f'EDGE_LOOP: expected "uvloop" or "asyncio", got "{env["EDGE_LOOP"]}"')
        interface = env.get("EDGE_SERVER_INTERFACE", "").strip().lower()  # read by edge.server.bridge._interface
        if interface not in ("", "rsgi", "asgi"):
            raise ConfigError(f'EDGE_SERVER_INTERFACE: expected "rsgi" or "asgi", got "{env["EDGE_SERVER_INTERFACE"]}"')
        if values.get("streams_require_token") and not values.get("token"):
            raise ConfigError("EDGE_STREAMS_REQUIRE_TOKEN=1 needs EDGE_TOKEN: set EDGE_TOKEN to the token stream "
                              "clients must send (subprotocols [\"Authorization\", token] or ?authToken=)")
        otlp = values.get("otlp_endpoint")
        if otlp is not None and not otlp.startswith(("http://", "https://")):
            raise ConfigError("EDGE_OTLP_ENDPOINT: expected the http:// or https:// address of an OTLP/HTTP "
                              f'collector (e.g. http://127.0.0.1:4318), got "{otlp}"')
        settings = cls(**values)
        if "data_dir" not in values:
            settings = msgspec.structs.replace(settings, data_dir=settings.dir / ".edge")
        return settings


#: EDGE_LOG_LEVEL values (edge/tracing.py's levels); records below the level are dropped.
_LOG_LEVELS = ("debug", "info", "warn", "error", "warning")


def _parse(raw, kind, source):
    if not isinstance(raw, str):
        return raw
    try:
        if kind == "size":
            return parse_size(raw)
        if kind == "bool":
            return _flag(raw)
        if kind == "list":
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return kind(raw)
    except ValueError:
        expected = {int: "an integer", float: "a number", "size": "a size such as 1048576, 512k or 4m",
                    "bool": "1 or 0 (also true/false, yes/no, on/off)"}.get(kind, kind)
        raise ConfigError(f'{source}: expected {expected}, got "{raw}"') from None


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def parse_size(text: str | int) -> int:
    """Parse ``1048576``, ``512k``, ``4m``, ``1MiB`` into bytes."""
    if isinstance(text, int):
        return text
    value = text.strip().lower().removesuffix("ib").removesuffix("b")
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(value[-1:], 1)
    if scale != 1:
        value = value[:-1]
    number = float(value)  # ValueError for text that is no number
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"not a size: {text!r}")
    return int(number * scale)
