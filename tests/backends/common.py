"""Shared code for the test backends in this folder (Python 3.11 standard library only).

Each backend is a standalone script started by ancm-rs like a Kestrel app behind the ASP.NET Core Module:
ASPNETCORE_PORT (required; exit 1 if missing), ASPNETCORE_TOKEN (pairing token, checked on every request
when set: 400 "pairing token mismatch"), ASPNETCORE_APPL_PATH ("/" or "/sub"). `POST <appl path>/iisintegration`
with `MS-ASPNETCORE-EVENT: shutdown` is answered 202 and the process exits 0; so do SIGTERM and SIGINT.
Once listening, "listening on 127.0.0.1:PORT" is printed to stderr.

Routes of the base Handler (a backend adds or replaces entries in `routes`, where "*" is a catch-all), relative
to the appl path; unknown paths get 404:
  /        "ok\\n"
  /pid     the process id as text (no newline)
  /json    JSON {"method","path","headers","pid","env","body_sha256","body_len"}, the same contract as
           examples/hello/app.py (headers: [[name, value], ...] in order; env: ASPNETCORE_*/HELLO_* but the token)
  /sleep?s=X   sleeps X seconds, then "slept X\\n"
"""

import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

PIECE = 64 * 1024
MAX_LINE = 8192
HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
NAME = os.path.splitext(os.path.basename(sys.argv[0]))[0] or "backend"


def log(msg):
    sys.stderr.write(f"{NAME}[{os.getpid()}]: {msg}\n")
    sys.stderr.flush()


def listening_line(port):
    """The line benchmarks and tests wait for."""
    sys.stderr.write(f"listening on 127.0.0.1:{port}\n")
    sys.stderr.flush()


def port_from_env():
    """ASPNETCORE_PORT as an int; exits with code 1 and a message when it is missing or invalid."""
    text = os.environ.get("ASPNETCORE_PORT")
    if not text or not text.isdigit():
        sys.stderr.write(f"{NAME}: ASPNETCORE_PORT is missing or invalid ({text!r})\n")
        sys.exit(1)
    return int(text)


class BodyError(Exception):
    """Malformed request framing: answer 400 (if still possible) and close the connection."""


class Body:
    """The request body, read lazily: Content-Length or chunked Transfer-Encoding (decoded here,
    since http.server does not). Iterate once for pieces of at most 64 KiB; drain() discards the rest."""

    def __init__(self, handler):
        self.rfile = handler.rfile
        self.done = False
        self.length = None
        te = handler.headers.get("Transfer-Encoding")
        cl = handler.headers.get_all("Content-Length") or []
        self.chunked = te is not None
        if self.chunked:
            if te.split(",")[-1].strip().lower() != "chunked":
                raise BodyError(f"unsupported Transfer-Encoding {te!r}")
            if cl:  # RFC 9112 6.3: chunked wins, close afterwards
                handler.close_connection = True
            return
        if len(set(v.strip() for v in cl)) > 1:
            raise BodyError("conflicting Content-Length headers")
        text = cl[0].strip() if cl else "0"
        if not (text.isascii() and text.isdigit()):
            raise BodyError(f"invalid Content-Length {text!r}")
        self.length = int(text)

    def __iter__(self):
        if self.done:
            return
        self.done = True
        if self.chunked:
            yield from self._chunked()
            return
        left = self.length
        while left:
            data = self.rfile.read(min(left, PIECE))
            if not data:
                raise BodyError("connection closed before the end of the body")
            left -= len(data)
            yield data

    def _line(self):
        line = self.rfile.readline(MAX_LINE + 1)
        if not line.endswith(b"\n"):
            raise BodyError("connection closed or line too long in chunked body")
        return line.rstrip(b"\r\n")

    def _chunked(self):
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            if not HEX.fullmatch(size_text):
                raise BodyError(f"invalid chunk size {size_text[:40]!r}")
            size = int(size_text, 16)
            if size == 0:
                while self._line():  # trailers, ignored
                    pass
                return
            while size:
                data = self.rfile.read(min(size, PIECE))
                if not data:
                    raise BodyError("connection closed inside a chunk")
                size -= len(data)
                yield data
            if self._line():
                raise BodyError("missing CRLF after chunk data")

    def drain(self):
        for _ in self:
            pass


def header_list(handler):
    """The request headers as [[name, value], ...], in order, duplicates kept."""
    return [[k, v] for k, v in handler.headers.items()]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = NAME
    disable_nagle_algorithm = True
    check_token = True  # False: no pairing token check
    honour_shutdown = True  # False: the shutdown POST is routed like any request (404)

    def __getattr__(self, name):  # every method (do_GET, do_FOO, ...) goes to _dispatch
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        pass

    def log_error(self, fmt, *args):
        log(fmt % args)

    def respond(self, status, body=b"", ctype="text/plain; charset=utf-8"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        if body:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()  # head and body in one write

    def respond_json(self, obj, status=200):
        self.respond(status, json.dumps(obj) + "\n", "application/json; charset=utf-8")

    def _dispatch(self):
        try:
            self.body = Body(self)
            self._route()
            self.body.drain()
        except BodyError as e:
            self.close_connection = True
            log(f"bad request body: {e}")
            self.respond(400, f"bad request: {e}\n")

    def _route(self):
        token = self.server.token
        if self.check_token and token is not None and self.headers.get("MS-ASPNETCORE-TOKEN") != token:
            self.body.drain()
            return self.respond(400, "pairing token mismatch")
        raw_path, _, query_text = self.path.partition("?")
        base = self.server.path_base
        path = raw_path
        if base and (raw_path.lower() == base.lower() or raw_path.lower().startswith(base.lower() + "/")):
            path = raw_path[len(base):] or "/"
        if (
            self.honour_shutdown
            and self.command == "POST"
            and raw_path.lower() == base.lower() + "/iisintegration"
            and self.headers.get("MS-ASPNETCORE-EVENT", "").strip().lower() == "shutdown"
        ):
            self.body.drain()
            self.respond(202)
            log("shutdown event received, stopping")
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return
        route = self.routes.get(path) or self.routes.get("*")  # "*": a catch-all route
        if route is None:
            self.body.drain()
            return self.respond(404, f"not found: {path}\n")
        route(self, parse_qs(query_text, keep_blank_values=True))

    # ---- base routes ---------------------------------------------------------------------------

    def r_ok(self, query):
        self.respond(200, "ok\n")

    def r_pid(self, query):
        self.respond(200, str(os.getpid()))

    def r_json(self, query):
        digest, length = hashlib.sha256(), 0
        for piece in self.body:
            digest.update(piece)
            length += len(piece)
        env = {
            k: v
            for k, v in sorted(os.environ.items())
            if (k.startswith("ASPNETCORE_") or k.startswith("HELLO_")) and k != "ASPNETCORE_TOKEN"
        }
        self.respond_json({
            "method": self.command,
            "path": self.path,
            "headers": header_list(self),
            "pid": os.getpid(),
            "env": env,
            "body_sha256": digest.hexdigest(),
            "body_len": length,
        })

    def r_sleep(self, query):
        try:
            seconds = float(query.get("s", ["1"])[0])
        except ValueError:
            seconds = -1
        if not 0 <= seconds < 1e6:
            return self.respond(400, "bad request: s must be a number of seconds\n")
        time.sleep(seconds)
        self.respond(200, f"slept {seconds:g}\n")

    routes = {"/": r_ok, "/pid": r_pid, "/json": r_json, "/sleep": r_sleep}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the client went away
        super().handle_error(request, client_address)


def serve(handler=Handler, exit_on_signals=True):
    """Listen on 127.0.0.1:$ASPNETCORE_PORT with `handler` until the shutdown event or a signal; returns 0.
    With exit_on_signals=False, SIGTERM/SIGINT are left as the caller set them."""
    port = port_from_env()
    if exit_on_signals:
        def on_signal(signum, frame):
            raise SystemExit(0)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    server = Server(("127.0.0.1", port), handler)
    server.token = os.environ.get("ASPNETCORE_TOKEN")
    server.path_base = os.environ.get("ASPNETCORE_APPL_PATH", "/").rstrip("/")
    listening_line(port)
    try:
        server.serve_forever(poll_interval=0.05)
    except SystemExit:
        log("signal received, exiting")
    finally:
        server.server_close()
    return 0
