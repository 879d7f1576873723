"""A gRPC app served by grpcio (PyPI) over HTTP/2 with prior knowledge, for backendProtocol="h2c".

Started by ancm-rs like any app: listens on 127.0.0.1:ASPNETCORE_PORT, writes that port to
grpc_port.txt in its working directory (the site root) so that tests can also call it directly.
When a call carries ms-aspnetcore-token it must equal ASPNETCORE_TOKEN (else UNAUTHENTICATED).
No generated stubs: generic handlers on raw bytes, service test.Echo:
  Unary         b"meta" -> JSON of the call's metadata names, token check, x-forwarded-for
                b"fail" -> INVALID_ARGUMENT with details and text + binary trailing metadata
                b"sleep:S" -> sleeps S seconds, then b"slept"
                b"cancelled" -> how many Watch calls this process saw cancelled
                b"peers" -> JSON list of distinct peer addresses of Unary calls since the last b"peers"
                anything else -> echoed
  ServerStream  b"N" -> N messages b"msg-<i>";  b"kill" -> 3 messages, then SIGKILL of itself
  ClientStream  -> b"<count> <total bytes> <sha256 hex>"
  Bidi          -> each message echoed back reversed
  Watch         -> b"tick" every 50 ms until the client cancels (counted)
"""

import hashlib
import json
import os
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

LIMIT = 16 * 1024 * 1024
lock = threading.Lock()
cancelled = 0
peers = set()


def check_token(context):
    md = dict(context.invocation_metadata())
    sent = md.get("ms-aspnetcore-token")
    # ANCM_TEST_ANY_TOKEN=1: started by a test harness behind a relay the engine paired with (the
    # emulated IIS), so the token is not known here.
    if os.environ.get("ANCM_TEST_ANY_TOKEN") == "1":
        return
    if sent is not None and sent != os.environ.get("ASPNETCORE_TOKEN"):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "pairing token mismatch")


def unary(request, context):
    check_token(context)
    with lock:
        peers.add(context.peer())
    if request == b"meta":
        md = context.invocation_metadata()
        names = sorted({k for k, _ in md})
        d = dict(md)
        return json.dumps({
            "names": names,
            "token_ok": d.get("ms-aspnetcore-token") == os.environ.get("ASPNETCORE_TOKEN"),
            "xff": d.get("x-forwarded-for"),
            "xfp": d.get("x-forwarded-proto"),
        }).encode()
    if request == b"fail":
        context.set_trailing_metadata((("x-detail-bin", b"\x00\x01\xfe\xff"), ("x-info", "why")))
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad argument: details here")
    if request.startswith(b"sleep:"):
        time.sleep(float(request[6:]))
        return b"slept"
    if request == b"cancelled":
        with lock:
            return str(cancelled).encode()
    if request == b"peers":
        with lock:
            seen = sorted(peers)
            peers.clear()
            return json.dumps(seen).encode()
    return request


def server_stream(request, context):
    check_token(context)
    if request == b"kill":
        for i in range(3):
            yield b"msg-%d" % i
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)
    for i in range(int(request)):
        yield b"msg-%d" % i


def client_stream(request_iterator, context):
    check_token(context)
    h = hashlib.sha256()
    n = total = 0
    for m in request_iterator:
        n += 1
        total += len(m)
        h.update(m)
    return b"%d %d %s" % (n, total, h.hexdigest().encode())


def bidi(request_iterator, context):
    check_token(context)
    for m in request_iterator:
        yield m[::-1]


def watch(request, context):
    check_token(context)

    def ended():
        # Watch never ends by itself: the call ended because the client cancelled it (the
        # generator may never be resumed after that, so the count cannot sit after the loop).
        global cancelled
        with lock:
            cancelled += 1

    context.add_callback(ended)
    while context.is_active():
        yield b"tick"
        time.sleep(0.05)


def ident(b):
    return b


def main():
    port = os.environ.get("ASPNETCORE_PORT")
    if not port or not port.isdigit():
        sys.stderr.write("grpc_server: ASPNETCORE_PORT is missing or invalid\n")
        sys.exit(1)
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary, ident, ident),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, ident, ident),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, ident, ident),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, ident, ident),
        "Watch": grpc.unary_stream_rpc_method_handler(watch, ident, ident),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=256),
        options=[("grpc.max_receive_message_length", LIMIT), ("grpc.max_send_message_length", LIMIT)],
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    with open("grpc_port.txt", "w") as f:
        f.write(port)
    server.start()
    sys.stderr.write(f"listening on 127.0.0.1:{port}\n")
    sys.stderr.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop(0)


if __name__ == "__main__":
    main()
