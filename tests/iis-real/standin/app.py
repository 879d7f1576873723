#!/usr/bin/env python3
"""A stand-in for tests/iis-real/app (the ASP.NET Core app) with the same endpoints and answers,
so that `cargo xtask workflows` can run acceptance.py's HTTP checks here, against ancm-serve.
It is a test fixture for the script, not a model of IIS: the checks only a real IIS can answer
are skipped with --standin.

Like ASP.NET Core's IIS integration it refuses (400) a request whose MS-ASPNETCORE-TOKEN is not
the process's ASPNETCORE_TOKEN, takes the client address from X-Forwarded-For, and stops as
ASP.NET Core does on the module's shutdown event (`MS-ASPNETCORE-EVENT: shutdown`) or SIGTERM:
no new connections, requests in flight finish, then exit. Standard library only.
"""

import base64
import hashlib
import json
import os
import signal
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

TOKEN = os.environ.get("ASPNETCORE_TOKEN")
FIRST = None
FIRST_LOCK = threading.Lock()
RELEASES = {}
RELEASES_LOCK = threading.Lock()
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
SERVER = None
ACTIVE = 0
ACTIVE_LOCK = threading.Condition()
STOPPING = threading.Event()


def stop_gracefully():
    """Stops accepting, lets the requests in flight finish (up to 30 s), exits."""
    if STOPPING.is_set():
        return
    STOPPING.set()

    def run():
        SERVER.shutdown()
        with ACTIVE_LOCK:
            ACTIVE_LOCK.wait_for(lambda: ACTIVE == 0, timeout=30)
        os._exit(0)

    threading.Thread(target=run, daemon=True).start()


def release_event(sid):
    with RELEASES_LOCK:
        return RELEASES.setdefault(sid, threading.Event())


def environment():
    out = {}
    for k, v in os.environ.items():
        key = k.upper()
        if key.startswith(("ASPNETCORE_", "ANCMTEST_")):
            out[key] = "(set)" if key == "ASPNETCORE_TOKEN" else v
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_text(self, text, status=200):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body_chunks(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    piece = self.rfile.read(min(left, 65536))
                    if not piece:
                        raise ConnectionError("body ended early")
                    left -= len(piece)
                    yield piece
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                piece = self.rfile.read(min(left, 65536))
                if not piece:
                    raise ConnectionError("body ended early")
                left -= len(piece)
                yield piece

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def handle_any(self):
        global ACTIVE
        with ACTIVE_LOCK:
            ACTIVE += 1
        try:
            self.dispatch()
        finally:
            with ACTIVE_LOCK:
                ACTIVE -= 1
                ACTIVE_LOCK.notify_all()

    def dispatch(self):
        global FIRST
        if self.headers.get("MS-ASPNETCORE-TOKEN") != TOKEN:
            self.send_text("token mismatch", 400)
            return
        if self.headers.get("MS-ASPNETCORE-EVENT", "").lower() == "shutdown":
            self.send_text("stopping", 202)
            stop_gracefully()
            return
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        with FIRST_LOCK:
            if FIRST is None:
                FIRST = {"path": url.path, "userAgent": self.headers.get("User-Agent", ""), "fromScript": "X-Acceptance" in self.headers}
        path = url.path
        if path == "/":
            self.send_text("ancm-rs test app")
        elif path == "/echo":
            fwd = self.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
            ip = fwd.rsplit(":", 1)[0].strip("[]") if fwd else self.client_address[0]
            self.send_json(
                {
                    "pid": os.getpid(),
                    "method": self.command,
                    "rawTarget": self.path,
                    "path": path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "env": environment(),
                    "tokenMatches": TOKEN is not None and self.headers.get("MS-ASPNETCORE-TOKEN") == TOKEN,
                    "remoteIp": ip,
                    "scheme": self.headers.get("X-Forwarded-Proto", "http"),
                    "user": None,
                    "authType": None,
                }
            )
        elif path == "/first":
            self.send_json({"pid": os.getpid(), "first": FIRST})
        elif path == "/upload":
            sha = hashlib.sha256()
            total = 0
            for piece in self.body_chunks():
                sha.update(piece)
                total += len(piece)
            self.send_json({"bytes": total, "sha256": sha.hexdigest()})
        elif path == "/download":
            n = int(q["bytes"])
            block = bytes(i % 251 for i in range(251 * 256))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            sent = 0
            while sent < n:
                piece = block[: min(len(block), n - sent)]
                self.wfile.write(piece)
                sent += len(piece)
        elif path == "/stream":
            ev = release_event(q["id"])
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.chunk(b"first\n")
            if q.get("crashAfterFirst") == "true":
                os._exit(3)
            ev.wait(60)
            self.chunk(b"second\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/stream/release":
            release_event(q["id"]).set()
            self.send_text("released")
        elif path == "/slow":
            threading.Event().wait(int(q.get("ms", "0")) / 1000)
            self.send_json({"pid": os.getpid()})
        elif path == "/crash":
            os._exit(3)
        elif path == "/ws":
            self.websocket()
        else:
            self.send_text("not found", 404)

    do_GET = do_POST = handle_any

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key")
        if not key:
            self.send_text("not a websocket request", 400)
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        message, kind = b"", None
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            fin, opcode, n = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytearray(self.rfile.read(n))
            for i in range(len(data)):
                data[i] ^= mask[i % 4]
            if opcode == 8:
                self.frame(8, bytes(data[:2]))
                return
            if opcode == 9:
                self.frame(10, bytes(data))
                continue
            if opcode in (1, 2):
                kind = opcode
            message += data
            if fin:
                self.frame(kind, message)
                message = b""

    def frame(self, opcode, data):
        n = len(data)
        if n < 126:
            head = struct.pack(">BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack(">BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
        self.wfile.write(head + data)
        self.wfile.flush()


def main():
    port = int(os.environ["ASPNETCORE_PORT"])
    global SERVER
    SERVER = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    SERVER.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: stop_gracefully())
    print(f"stand-in listening on 127.0.0.1:{port}", flush=True)
    SERVER.serve_forever()
    # serve_forever returned: stop_gracefully's thread exits the process once drained.
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
