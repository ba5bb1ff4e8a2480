"""The competitor: a bare Granian RSGI hello-world, embedded, one worker (as edge runs it), on
the host loop named by argv[2]: "uvloop" (when installed) or "asyncio". With argv[3] "body" it
reads the request body first (``await proto()``), as every app that takes a body must: the
ceiling of such an app on this machine."""

import asyncio
import os
import sys

from granian.constants import Interfaces
from granian.server.embed import Server


async def app(scope, proto):
    proto.response_bytes(200, [("content-type", "application/json")], b'{"hello":"world"}')


async def app_reading_the_body(scope, proto):
    await proto()
    proto.response_bytes(200, [("content-type", "application/json")], b'{"hello":"world"}')


async def main(port: int, target) -> None:
    server = Server(target, address="127.0.0.1", port=port, interface=Interfaces.RSGI, log_enabled=False)
    print(f"listening {port}", flush=True)
    await server.serve()


if __name__ == "__main__":
    factory = None
    if len(sys.argv) > 2 and sys.argv[2] == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(int(sys.argv[1]), app_reading_the_body if sys.argv[3:4] == ["body"] else app))
    os._exit(0)
