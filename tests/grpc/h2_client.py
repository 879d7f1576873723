"""A raw HTTP/2 (prior knowledge) client on the h2 library (PyPI): one request per run, printing JSON of
what came back, for the cases grpcio cannot make: request trailers, resets seen with their error code, a
reset sent by the client.

usage: h2_client.py HOST:PORT echo|reset:N|hold
  echo     POST /echo with a body, request trailers and a forged ms-aspnetcore-token; prints status, body,
           response trailers
  reset:N  GET /reset?code=N; prints the data received and the error code of the reset that ended it
  hold     GET /hold; once the first data arrives, resets the stream with CANCEL and closes
  linger:S GET /hold; after the first data waits S seconds, noting whether the connection was told to
           go away or closed meanwhile ("gone"), then resets the stream with CANCEL
"""

import json
import socket
import sys

import h2.config
import h2.connection
import h2.errors
import h2.events


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    case = sys.argv[2]
    sock = socket.create_connection((host, int(port)), timeout=30)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    base = [(":scheme", "http"), (":authority", sys.argv[1])]
    if case == "echo":
        conn.send_headers(sid, [(":method", "POST"), (":path", "/echo")] + base + [("x-req", "1"), ("ms-aspnetcore-token", "forged")])
        conn.send_data(sid, b"x" * 1000)
        conn.send_headers(sid, [("x-req-trailer", "tv"), ("x-other", "2")], end_stream=True)
    elif case.startswith("reset:"):
        conn.send_headers(sid, [(":method", "GET"), (":path", "/reset?code=" + case[6:])] + base, end_stream=True)
    else:
        conn.send_headers(sid, [(":method", "GET"), (":path", "/hold")] + base, end_stream=True)
    linger = float(case[7:]) if case.startswith("linger:") else None
    sock.sendall(conn.data_to_send())
    out = {"status": None, "data": "", "trailers": [], "reset": None, "ended": False}
    while not (out["ended"] or out["reset"] is not None):
        try:
            data = sock.recv(65536)
        except socket.timeout:
            if linger is None:
                raise
            # Lingered with the stream open and nothing came: the connection stayed.
            out["gone"] = False
            conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
            sock.sendall(conn.data_to_send())
            out["reset"] = "sent"
            break
        if not data:
            out["closed"] = True
            out["gone"] = True
            break
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                out["status"] = dict(ev.headers)[":status"]
            elif isinstance(ev, h2.events.DataReceived):
                out["data"] += ev.data.decode()
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if linger is not None:
                    sock.settimeout(linger)
                if case == "hold":
                    conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
                    sock.sendall(conn.data_to_send())
                    out["reset"] = "sent"
            elif isinstance(ev, h2.events.TrailersReceived):
                out["trailers"] = sorted([list(h) for h in ev.headers])
            elif isinstance(ev, h2.events.StreamEnded):
                out["ended"] = True
            elif isinstance(ev, h2.events.StreamReset):
                out["reset"] = int(ev.error_code)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                out["gone"] = True
                out["reset"] = "goaway"
        pending = conn.data_to_send()
        if pending:
            sock.sendall(pending)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
