"""WebSocket client checks against a proxy in front of tests/backends/ws_echo.py.

usage: ws_client.py ws://127.0.0.1:PORT
Prints one line per check and a final 'N passed, M failed' line; exits 1 on any failure.
"""

import asyncio
import json
import os
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

BASE = sys.argv[1]
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(("ok   " if ok else "FAIL ") + name + (f": {detail}" if detail and not ok else ""), flush=True)


async def thousand_echoes():
    async with connect(BASE + "/echo", max_size=None, compression=None) as ws:
        for i in range(1000):
            msg = f"message {i}" if i % 2 else f"message {i}".encode()
            await ws.send(msg)
            if await ws.recv() != msg:
                return check("1000 echoes", False, f"echo {i} differs")
    check("1000 echoes", True)


async def large_frames():
    payload = os.urandom(1 << 20)
    async with connect(BASE + "/echo", max_size=None, compression=None) as ws:
        for _ in range(3):
            await ws.send(payload)
            got = await ws.recv()
            if got != payload:
                return check("1 MiB frames", False, f"got {len(got)} bytes")
    check("1 MiB frames", True)


async def server_close():
    async with connect(BASE + "/close-after", compression=None) as ws:
        await ws.send("x")
        echoed = await ws.recv()
        try:
            await asyncio.wait_for(ws.recv(), 10)
            check("server-initiated close", False, "no close")
        except ConnectionClosed as e:
            ok = echoed == "x" and e.rcvd is not None and e.rcvd.code == 4001 and e.rcvd.reason == "server-bye"
            check("server-initiated close", ok, repr(e.rcvd))


async def client_close():
    ws = await connect(BASE + "/echo", compression=None)
    await ws.send("y")
    await ws.recv()
    await asyncio.wait_for(ws.close(4002, "client-bye"), 10)
    check("client-initiated close", ws.close_code == 4002 or ws.close_rcvd is not None, f"{ws.close_code}")


async def no_extensions_negotiated():
    # The client offers permessage-deflate; the proxy must not let it through to the backend.
    async with connect(BASE + "/headers") as ws:
        headers = json.loads(await ws.recv())
        names = [k.lower() for k, _ in headers]
        ok = "sec-websocket-extensions" not in names and ws.protocol.extensions == []
        tok = [v for k, v in headers if k.lower() == "ms-aspnetcore-token"]
        check("extensions removed, token sent", ok and len(tok) == 1, f"{headers}")


async def main():
    for case in (thousand_echoes, large_frames, server_close, client_close, no_extensions_negotiated):
        try:
            await asyncio.wait_for(case(), 60)
        except Exception as e:  # noqa: BLE001 - every failure is reported as a failed check
            check(case.__name__, False, repr(e))
    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


asyncio.run(main())
