#!/usr/bin/env python3
"""hello: a sample backend for ancm-rs that behaves like Kestrel behind the ASP.NET Core Module.

Needs nothing but the Python 3.11+ standard library; copy it next to a web.config and go.

The module starts this process with:
  ASPNETCORE_PORT       port to listen on, on 127.0.0.1 (required; exit code 1 if missing)
  ASPNETCORE_TOKEN      pairing token; every request must carry it in MS-ASPNETCORE-TOKEN or gets 400
                        (if the variable is unset the check is off, as Kestrel's IIS integration is)
  ASPNETCORE_APPL_PATH  the application's virtual path ("/" or "/sub"); routes below are relative to it
and stops it with `POST <appl path>/iisintegration` + `MS-ASPNETCORE-EVENT: shutdown` (answered 202,
then in-flight requests get up to HELLO_SHUTDOWN_GRACE seconds, default 5, and the process exits 0),
or with SIGTERM/SIGINT (exit 0 at once).

Routes (any method; HEAD sends headers only):
  /                   HTML page: greeting ($HELLO_GREETING), method, raw path, headers, X-Forwarded-For, pid
  /json               JSON {"method","path","headers","pid","env","body_sha256","body_len"}; reads the body
  /echo               the request body back (streamed; same Content-Type); /echo?buffer=1 spools it first
  /stream?n=5&delay=0.2   chunked text/plain, n lines "chunk <i>\\n" (i = 0..n-1), delay seconds apart
  /sse?n=5&delay=0.2      chunked text/event-stream, n events "id: <i>\\ndata: chunk <i>\\n\\n"
  /bytes?n=N          N bytes of bytes(range(256)) repeated, with Content-Length, written in 64 KiB pieces
  /status?code=N      status N (200-599) with body "status N\\n" (no body for 204/304)
  /sleep?s=X          sleeps X seconds, then "slept X\\n"
  /env                JSON object of the whole environment except ASPNETCORE_TOKEN
  /pid                the process id as text (no newline)
Prints "listening on 127.0.0.1:PORT" to stderr once listening. Set HELLO_ACCESS_LOG=1 for access logs.
"""

import hashlib
import html
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

PIECE = 64 * 1024
PATTERN = bytes(range(256)) * (PIECE // 256)  # one 64 KiB piece of the /bytes pattern
MAX_LINE = 8192
HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


def log(msg):
    sys.stderr.write(f"hello[{os.getpid()}]: {msg}\n")
    sys.stderr.flush()


class BodyError(Exception):
    """Malformed request framing: answer 400 (if still possible) and close the connection."""


class Body:
    """The request body, read lazily: Content-Length or chunked Transfer-Encoding."""

    def __init__(self, handler):
        self.rfile = handler.rfile
        self.done = False
        self.length = None  # known length, None for chunked
        te = handler.headers.get("Transfer-Encoding")
        cl = handler.headers.get_all("Content-Length") or []
        if te is not None:
            codings = [c.strip().lower() for c in te.split(",")]
            if codings[-1] != "chunked":
                raise BodyError(f"unsupported Transfer-Encoding {te!r}")
            self.chunked = True
            if cl:  # RFC 9112 6.3: chunked wins, and the connection must be closed afterwards
                handler.close_connection = True
        else:
            self.chunked = False
            if len(set(v.strip() for v in cl)) > 1:
                raise BodyError("conflicting Content-Length headers")
            text = cl[0].strip() if cl else "0"
            if not (text.isascii() and text.isdigit()):
                raise BodyError(f"invalid Content-Length {text!r}")
            self.length = int(text)

    def __iter__(self):
        """Yield the body in pieces of at most 64 KiB (each body can be iterated once)."""
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
                while self._line():  # trailer fields, ignored
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


def query_number(query, name, default, kind=int):
    values = query.get(name)
    if not values:
        return default
    try:
        value = kind(values[0])
    except ValueError:
        raise ValueError(f"query parameter {name!r} must be a number") from None
    if not (0 <= value < 1e9):
        raise ValueError(f"query parameter {name!r} must be a number in 0..1e9")
    return value


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hello-ancm-rs"
    disable_nagle_algorithm = True
    access_log = os.environ.get("HELLO_ACCESS_LOG", "") not in ("", "0")

    # Any method name is dispatched to _dispatch (BaseHTTPRequestHandler looks up do_<METHOD>).
    def __getattr__(self, name):
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        if self.access_log:
            super().log_message(fmt, *args)

    def log_error(self, fmt, *args):
        super().log_message(fmt, *args)

    # ---- response helpers ----------------------------------------------------------------------

    def _head(self, status, headers):
        self._sent = True
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:  # the client asked for it (or HTTP/1.0), or the framing is broken
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0" and not self.close_connection:
            self.send_header("Connection", "keep-alive")

    def respond(self, status, body=b"", ctype="text/plain; charset=utf-8", headers=()):
        if isinstance(body, str):
            body = body.encode()
        hs = list(headers)
        if status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            hs = [("Content-Type", ctype)] * bool(body) + [("Content-Length", str(len(body)))] + hs
        self._head(status, hs)
        # headers and a small body in one write: no write-write-read stall on keep-alive connections
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def respond_json(self, status, obj):
        self.respond(status, json.dumps(obj) + "\n", "application/json; charset=utf-8")

    def start_stream(self, status, ctype, headers=()):
        """Start a response of unknown length: chunked for HTTP/1.1, close-delimited for HTTP/1.0."""
        self._chunked_out = self.request_version != "HTTP/1.0"
        hs = [("Content-Type", ctype)] + list(headers)
        if self._chunked_out:
            hs.append(("Transfer-Encoding", "chunked"))
        else:
            self.close_connection = True
        self._head(status, hs)
        self.end_headers()

    def write_chunk(self, data):
        if self.command == "HEAD" or not data:
            return
        if self._chunked_out:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.wfile.write(data)
        self.wfile.flush()

    def end_stream(self):
        if self._chunked_out and self.command != "HEAD":
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    # ---- dispatch ------------------------------------------------------------------------------

    def _dispatch(self):
        self._sent = False
        self.body = None
        server = self.server
        with server.lock:
            server.active += 1
        try:
            try:
                self.body = Body(self)
                self._route()
                self.body.drain()  # keep the connection usable if a route ignored the body
            except BodyError as e:
                self.close_connection = True
                self.log_error("bad request body: %s", e)
                if not self._sent:
                    self.respond(400, f"bad request: {e}\n")
            except ValueError as e:  # a bad query parameter
                if self._sent:
                    raise
                self.body.drain()
                self.respond(400, f"bad request: {e}\n")
        finally:
            with server.lock:
                server.active -= 1

    def _route(self):
        token = self.server.token
        if token is not None and self.headers.get("MS-ASPNETCORE-TOKEN") != token:
            self.body.drain()
            return self.respond(400, "pairing token mismatch")

        raw_path, _, query_text = self.path.partition("?")
        base = self.server.path_base
        path = raw_path
        if base and (raw_path.lower() == base.lower() or raw_path.lower().startswith(base.lower() + "/")):
            path = raw_path[len(base):] or "/"

        if (
            self.command == "POST"
            and raw_path.lower() == base.lower() + "/iisintegration"  # exactly where ANCM sends it
            and self.headers.get("MS-ASPNETCORE-EVENT", "").strip().lower() == "shutdown"
        ):
            self.body.drain()
            self.respond(202)
            log("shutdown event received, stopping")
            threading.Thread(target=self.server.graceful_stop, daemon=True).start()
            return

        route = ROUTES.get(path)
        if route is None:
            self.body.drain()
            return self.respond(404, f"not found: {path}\n")
        query = parse_qs(query_text, keep_blank_values=True)
        if route not in (Handler.r_json, Handler.r_echo):
            self.body.drain()
        route(self, query)

    # ---- routes --------------------------------------------------------------------------------

    def r_index(self, query):
        e = html.escape
        # The pairing token is a secret between ancm-rs and this process: a page a browser shows
        # names it but never prints it (as /env leaves out ASPNETCORE_TOKEN).
        rows = "\n".join(
            f"<tr><td>{e(k)}</td><td>{'(hidden)' if k.lower() == 'ms-aspnetcore-token' else e(v)}</td></tr>"
            for k, v in self.headers.items()
        )
        page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>hello from ancm-rs</title></head>
<body>
<h1>{e(os.environ.get("HELLO_GREETING", "Hello"))}</h1>
<p>Method: <code>{e(self.command)}</code></p>
<p>Path: <code>{e(self.path)}</code></p>
<p>X-Forwarded-For: <code>{e(self.headers.get("X-Forwarded-For", "(none)"))}</code></p>
<p>Process id: <code>{os.getpid()}</code></p>
<h2>Request headers</h2>
<table border="1">
{rows}
</table>
</body></html>
"""
        self.respond(200, page, "text/html; charset=utf-8")

    def r_json(self, query):
        digest = hashlib.sha256()
        length = 0
        for piece in self.body:
            digest.update(piece)
            length += len(piece)
        env = {
            k: v
            for k, v in sorted(os.environ.items())
            if (k.startswith("ASPNETCORE_") or k.startswith("HELLO_")) and k != "ASPNETCORE_TOKEN"
        }
        self.respond_json(200, {
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "pid": os.getpid(),
            "env": env,
            "body_sha256": digest.hexdigest(),
            "body_len": length,
        })

    def r_echo(self, query):
        ctype = self.headers.get("Content-Type", "application/octet-stream")
        if query.get("buffer", ["0"])[0] not in ("", "0"):
            # Spool first: for clients that do not read the answer until they have sent everything.
            with tempfile.SpooledTemporaryFile(max_size=1 << 20) as spool:
                for piece in self.body:
                    spool.write(piece)
                size = spool.tell()
                spool.seek(0)
                self._head(200, [("Content-Type", ctype), ("Content-Length", str(size))])
                self.end_headers()
                if self.command != "HEAD":
                    while piece := spool.read(PIECE):
                        self.wfile.write(piece)
            return
        if self.body.length is not None:
            self._head(200, [("Content-Type", ctype), ("Content-Length", str(self.body.length))])
            self.end_headers()
            for piece in self.body:
                if self.command != "HEAD":
                    self.wfile.write(piece)
            return
        self.start_stream(200, ctype)
        for piece in self.body:
            self.write_chunk(piece)
        self.end_stream()

    def _stream(self, query, ctype, fmt, headers=()):
        n = query_number(query, "n", 5)
        delay = query_number(query, "delay", 0.2, float)
        self.start_stream(200, ctype, headers)
        for i in range(n):
            if i:
                time.sleep(delay)
            self.write_chunk(fmt.format(i=i).encode())
        self.end_stream()

    def r_stream(self, query):
        self._stream(query, "text/plain; charset=utf-8", "chunk {i}\n")

    def r_sse(self, query):
        self._stream(query, "text/event-stream", "id: {i}\ndata: chunk {i}\n\n", [("Cache-Control", "no-cache")])

    def r_bytes(self, query):
        n = query_number(query, "n", 0)
        self._head(200, [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])
        self.end_headers()
        if self.command == "HEAD":
            return
        while n:
            piece = PATTERN[: min(n, PIECE)]
            self.wfile.write(piece)
            n -= len(piece)

    def r_status(self, query):
        code = query_number(query, "code", 200)
        if not 200 <= code <= 599:
            raise ValueError("code must be in 200-599")
        self.respond(code, f"status {code}\n")

    def r_sleep(self, query):
        seconds = query_number(query, "s", 1.0, float)
        time.sleep(seconds)
        self.respond(200, f"slept {seconds:g}\n")

    def r_env(self, query):
        self.respond_json(200, {k: v for k, v in sorted(os.environ.items()) if k != "ASPNETCORE_TOKEN"})

    def r_pid(self, query):
        self.respond(200, str(os.getpid()))


ROUTES = {
    "/": Handler.r_index,
    "/json": Handler.r_json,
    "/echo": Handler.r_echo,
    "/stream": Handler.r_stream,
    "/sse": Handler.r_sse,
    "/bytes": Handler.r_bytes,
    "/status": Handler.r_status,
    "/sleep": Handler.r_sleep,
    "/env": Handler.r_env,
    "/pid": Handler.r_pid,
}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, port, token, path_base):
        super().__init__(("127.0.0.1", port), Handler)
        self.token = token
        self.path_base = path_base
        self.lock = threading.Lock()
        self.active = 0  # requests being handled
        self.stopping = False

    def graceful_stop(self):
        """Make serve_forever() return (must run on another thread); main() then waits and exits 0."""
        self.stopping = True
        self.shutdown()

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return  # the client went away: not worth a traceback
        super().handle_error(request, client_address)


def main():
    port_text = os.environ.get("ASPNETCORE_PORT")
    if not port_text:
        sys.stderr.write("hello: ASPNETCORE_PORT is not set; this app must be started by the ASP.NET Core Module\n")
        return 1
    try:
        port = int(port_text)
    except ValueError:
        sys.stderr.write(f"hello: ASPNETCORE_PORT={port_text!r} is not a port number\n")
        return 1
    token = os.environ.get("ASPNETCORE_TOKEN")
    if token is None:
        log("warning: ASPNETCORE_TOKEN is not set, the pairing token check is off")
    path_base = os.environ.get("ASPNETCORE_APPL_PATH", "/").rstrip("/")

    def on_signal(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        server = Server(port, token, path_base)
    except OSError as e:
        sys.stderr.write(f"hello: cannot listen on 127.0.0.1:{port}: {e}\n")
        return 1
    sys.stderr.write(f"listening on 127.0.0.1:{port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.05)  # short: the shutdown event is acted on promptly
        # Stopped by the shutdown event: give in-flight requests a grace period, as Kestrel does.
        deadline = time.monotonic() + float(os.environ.get("HELLO_SHUTDOWN_GRACE", "5"))
        while server.active > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    except SystemExit:
        log("signal received, exiting")
    finally:
        server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
