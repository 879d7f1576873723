"""WebSocket echo backend (needs the `websockets` package from PyPI; `cargo xtask test` installs it).

Listens on 127.0.0.1:ASPNETCORE_PORT, checks MS-ASPNETCORE-TOKEN against ASPNETCORE_TOKEN (400 otherwise),
answers the shutdown event with 202 and exits. WebSocket routes:
  /echo         echoes every message back (text as text, binary as binary)
  /close-after  echoes one message, then the server closes with code 4001 reason "server-bye"
  /headers      sends one text message: JSON of the handshake request headers, then echoes
A close the other side starts is logged to stderr with its code ("the client closed first, with code N").
Plain HTTP (no upgrade) on any path: 200 "plain\n".
"""

import asyncio
import http
import json
import os
import signal
import sys

from websockets.asyncio.server import serve
from websockets.http11 import Response
from websockets.datastructures import Headers

TOKEN = os.environ.get("ASPNETCORE_TOKEN")
PORT = int(os.environ["ASPNETCORE_PORT"])


def plain(status, body, extra=()):
    headers = Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(body)))] + list(extra))
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


async def process_request(connection, request):
    if TOKEN is not None and request.headers.get("MS-ASPNETCORE-TOKEN") != TOKEN:
        return plain(400, b"pairing token mismatch")
    if request.headers.get("MS-ASPNETCORE-EVENT", "").lower() == "shutdown":
        asyncio.get_running_loop().call_later(0.05, stop.set_result, None)
        return plain(202, b"")
    if "websocket" not in request.headers.get("Upgrade", "").lower():
        # The websockets server closes the connection after a plain response: say so, or a
        # keep-alive client would reuse a connection that is about to close.
        return plain(200, b"plain\n", [("Connection", "close")])
    connection.handshake_headers = list(request.headers.raw_items())
    return None


async def handler(ws):
    path = ws.request.path
    if path == "/headers":
        await ws.send(json.dumps(ws.handshake_headers))
    if path == "/close-after":
        msg = await ws.recv()
        await ws.send(msg)
        await ws.close(4001, "server-bye")
        return
    async for msg in ws:
        await ws.send(msg)
    if ws.protocol.close_rcvd_then_sent and ws.protocol.close_rcvd is not None:
        sys.stderr.write(f"ws_echo: the client closed first, with code {ws.protocol.close_rcvd.code}\n")
        sys.stderr.flush()


async def main():
    global stop
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(handler, "127.0.0.1", PORT, process_request=process_request, max_size=None, compression=None):
        sys.stderr.write(f"listening on 127.0.0.1:{PORT}\n")
        sys.stderr.flush()
        await stop


asyncio.run(main())
