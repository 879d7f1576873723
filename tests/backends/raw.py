"""A backend that answers with exactly the bytes a test case needs (misbehaving on purpose).

Listens on 127.0.0.1:ASPNETCORE_PORT. RAW_DIR (environment) is a folder shared with the test:
- every request received is logged as one line "<METHOD> <target>" to RAW_DIR/received.log, after its
  body was read (Content-Length or chunked), so a test can count what reached the backend;
- GET/POST /raw/<name> answers with the bytes of RAW_DIR/<name>.bin, sent as they are, then closes the
  connection if RAW_DIR/<name>.close exists, or stalls like /stall if RAW_DIR/<name>.stall exists (else
  keeps it open for the next request);
- /stall reads the request and never answers; when the proxy closes the connection it logs
  "CLOSED <target>" (so a test sees that a client's disconnect reached the backend);
- every non-empty request body is logged as "<target> <sha256 hex>" to RAW_DIR/bodies.log;
- every accepted connection adds a line to RAW_DIR/connections.log;
- anything else: 200 with body "ok".
RAW_START_DELAY (environment, seconds, optional) delays listening (a slow start).
No token check: this backend tests the proxy's handling of bad responses, not the pairing.
"""

import hashlib
import os
import socket
import sys
import threading
import time

PORT = int(os.environ["ASPNETCORE_PORT"])
DIR = os.environ["RAW_DIR"]
LOCK = threading.Lock()


def read_until(conn, buf, marker):
    while marker not in buf:
        data = conn.recv(65536)
        if not data:
            return None, buf
        buf += data
    i = buf.index(marker) + len(marker)
    return buf[:i], buf[i:]


def read_body(conn, head, rest):
    """Returns (body, what follows it), or (None, None) if the connection ended first."""
    lower = head.lower()
    body = b""
    if b"transfer-encoding: chunked" in lower:
        while True:
            line, rest = read_until(conn, rest, b"\r\n")
            if line is None:
                return None, None
            size = int(line.strip().split(b";")[0], 16)
            while len(rest) < size + 2:
                data = conn.recv(65536)
                if not data:
                    return None, None
                rest += data
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                return body, rest
    for line in lower.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            n = int(line.split(b":", 1)[1])
            while len(rest) < n:
                data = conn.recv(65536)
                if not data:
                    return None, None
                rest += data
            return rest[:n], rest[n:]
    return body, rest


def serve(conn):
    buf = b""
    with conn:
        while True:
            head, buf = read_until(conn, buf, b"\r\n\r\n")
            if head is None:
                return
            body, buf = read_body(conn, head, buf)
            if buf is None:
                return
            method, target = head.split(b"\r\n", 1)[0].split(b" ")[:2]
            with LOCK, open(os.path.join(DIR, "received.log"), "ab") as f:
                f.write(method + b" " + target + b"\n")
            if body:
                with LOCK, open(os.path.join(DIR, "bodies.log"), "ab") as f:
                    f.write(target + b" " + hashlib.sha256(body).hexdigest().encode() + b"\n")
            path = target.decode("latin-1").split("?")[0]
            stall = path.startswith("/raw/") and os.path.exists(
                os.path.join(DIR, path[len("/raw/"):] + ".stall"))
            if stall:
                with open(os.path.join(DIR, path[len("/raw/"):] + ".bin"), "rb") as f:
                    conn.sendall(f.read())
            if path == "/stall" or stall:
                while conn.recv(65536):
                    pass
                with LOCK, open(os.path.join(DIR, "received.log"), "ab") as f:
                    f.write(b"CLOSED " + target + b"\n")
                return
            if path.startswith("/raw/"):
                name = path[len("/raw/"):]
                with open(os.path.join(DIR, name + ".bin"), "rb") as f:
                    conn.sendall(f.read())
                if os.path.exists(os.path.join(DIR, name + ".close")):
                    return
                continue
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def main():
    time.sleep(float(os.environ.get("RAW_START_DELAY", "0")))
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", PORT))
    s.listen(128)
    sys.stderr.write(f"listening on 127.0.0.1:{PORT}\n")
    sys.stderr.flush()
    while True:
        conn, _ = s.accept()
        with LOCK, open(os.path.join(DIR, "connections.log"), "ab") as f:
            f.write(b"accepted\n")
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


main()
