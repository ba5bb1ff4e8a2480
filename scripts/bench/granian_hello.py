"""The competitor: a bare Granian RSGI hello-world, embedded, one worker (as edge runs it)."""

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
    asyncio.run(main(int(sys.argv[1])))
    os._exit(0)
