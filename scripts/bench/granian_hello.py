"""The competitor: a bare Granian RSGI hello-world, embedded, one worker (as edge runs it), on
the host loop named by argv[2]: "uvloop" (when installed) or "asyncio"."""

import asyncio
import os
import sys

from granian.constants import Interfaces
from granian.server.embed import Server


async def app(scope, proto):
    proto.response_bytes(200, [("content-type", "application/json")], b'{"hello":"world"}')


async def main(port: int) -> None:
    server = Server(app, address="127.0.0.1", port=port, interface=Interfaces.RSGI, log_enabled=False)
    print(f"listening {port}", flush=True)
    await server.serve()


if __name__ == "__main__":
    factory = None
    if len(sys.argv) > 2 and sys.argv[2] == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main(int(sys.argv[1])))
    os._exit(0)
