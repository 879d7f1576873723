"""grpcio client for tests/backends/grpc_server.py: runs every case against one target and prints
one JSON object of what each call returned (status code, details, trailing metadata, messages),
so that a test can compare the results through ancm-serve with those of direct calls.

usage: client.py HOST:PORT [kill|spill]   (only the case that kills the server mid-stream, or only
150 calls in flight at once)
"""

import hashlib
import json
import sys
import threading
import time
from concurrent import futures

import grpc

LIMIT = 16 * 1024 * 1024


def ident(b):
    return b


def status(e):
    return {"code": e.code().name, "details": e.details()}


def main():
    target = sys.argv[1]
    ch = grpc.insecure_channel(
        target,
        options=[("grpc.max_receive_message_length", LIMIT), ("grpc.max_send_message_length", LIMIT)],
    )
    grpc.channel_ready_future(ch).result(timeout=30)
    unary = ch.unary_unary("/test.Echo/Unary", ident, ident)
    sstream = ch.unary_stream("/test.Echo/ServerStream", ident, ident)
    cstream = ch.stream_unary("/test.Echo/ClientStream", ident, ident)
    bidi = ch.stream_stream("/test.Echo/Bidi", ident, ident)
    watch = ch.unary_stream("/test.Echo/Watch", ident, ident)
    out = {}
    unary(b"peers", timeout=30)  # starts the count of connections the server sees

    if sys.argv[2:] == ["spill"]:
        # More calls in flight than one backend connection takes (100 streams): how many
        # connections the server sees.
        unary(b"peers", timeout=30)
        calls = [unary.future(b"sleep:2", timeout=60) for _ in range(150)]
        ok = sum(c.result() == b"slept" for c in calls)
        out["spill"] = {"ok": ok, "peers": len(json.loads(unary(b"peers", timeout=30)))}
        print(json.dumps(out))
        return

    if sys.argv[2:] == ["kill"]:
        got = []
        try:
            for m in sstream(b"kill", timeout=30):
                got.append(m.decode())
            out["kill"] = {"messages": got, "code": "OK"}
        except grpc.RpcError as e:
            out["kill"] = {"messages": got, "code": e.code().name}
        print(json.dumps(out))
        return

    out["unary"] = unary(b"hello", timeout=30).decode()
    meta = json.loads(unary(b"meta", timeout=30))
    out["meta_names"] = sorted(n for n in meta["names"] if not n.startswith(("ms-aspnetcore", "x-forwarded")))
    out["meta_raw"] = meta

    msgs = list(sstream(b"10000", timeout=60))
    out["server_stream"] = {"count": len(msgs), "first": msgs[0].decode(), "last": msgs[-1].decode(),
                            "sha256": hashlib.sha256(b"".join(msgs)).hexdigest()}

    pieces = [bytes([i % 251]) * (i * 37 % 5000 + 1) for i in range(500)]
    out["client_stream"] = cstream(iter(pieces), timeout=60).decode()

    words = [("word-%d" % i).encode() * (i % 7 + 1) for i in range(300)]
    out["bidi"] = [m.decode() for m in bidi(iter(words), timeout=60)]

    big = bytes(range(256)) * (4 * 1024 * 1024 // 256)
    r = unary(big, timeout=60)
    out["big"] = {"len": len(r), "equal": r == big}

    try:
        unary(b"fail", timeout=30)
        out["fail"] = "no error"
    except grpc.RpcError as e:
        d = status(e)
        d["trailers"] = sorted([k, v.hex() if isinstance(v, bytes) else v]
                               for k, v in e.trailing_metadata() if k.startswith("x-"))
        out["fail"] = d

    try:
        unary(b"sleep:3", timeout=0.5)
        out["deadline"] = "no error"
    except grpc.RpcError as e:
        out["deadline"] = e.code().name

    before = int(unary(b"cancelled", timeout=30))
    call = watch(b"", timeout=60)
    ticks = 0
    for _ in call:
        ticks += 1
        if ticks == 3:
            break
    call.cancel()
    seen = False
    for _ in range(100):
        if int(unary(b"cancelled", timeout=30)) > before:
            seen = True
            break
        time.sleep(0.1)
    out["cancel_seen_by_server"] = seen

    # 100 calls in flight at once on this one channel (one HTTP/2 connection).
    with futures.ThreadPoolExecutor(max_workers=100) as pool:
        calls = [unary.future(b"sleep:1", timeout=60) for _ in range(100)]
        results = [c.result() for c in calls]
    out["concurrent"] = {"ok": sum(r == b"slept" for r in results)}
    out["peers_count"] = len(json.loads(unary(b"peers", timeout=30)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
