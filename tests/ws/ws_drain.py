"""WebSocket client for the drain test: opens /echo through the proxy, checks one echo, prints "open",
then waits (up to 60 s) for the close and prints "closed <code>"; exits 0 on a close, 1 otherwise.

usage: ws_drain.py ws://127.0.0.1:PORT
"""

import asyncio
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def main():
    async with connect(sys.argv[1] + "/echo", compression=None) as ws:
        await ws.send("a")
        assert await ws.recv() == "a"
        print("open", flush=True)
        try:
            await asyncio.wait_for(ws.recv(), 60)
        except ConnectionClosed as e:
            print(f"closed {e.rcvd.code if e.rcvd else 'none'}", flush=True)
            return 0
    return 1


sys.exit(asyncio.run(main()))
