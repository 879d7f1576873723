"""An HTTP/2 (h2c, prior knowledge) app written on the h2 protocol library (PyPI), for what grpcio does
not show: request trailers, resets with chosen error codes, resets the app receives.

Started by ancm-rs like any app (ASPNETCORE_PORT; ASPNETCORE_TOKEN checked when sent: 400, unless
ANCM_TEST_ANY_TOKEN=1). Routes (:path):
  /echo          answered once the request ends: 200, JSON {"headers": [[name, value]...], "body_len",
                 "trailers": [[name, value]...]}, then response trailers x-echo-trailer: done, grpc-status: 0
  /reset?code=N  200 head and b"partial", then RST_STREAM with error code N
  /hold          200 head and b"holding", then nothing; a reset from the proxy is appended to
                 resets.log in the working directory as "<error code>\n"
  anything else  200 b"ok\n" once the request ends
"""

import json
import os
import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events


def serve(sock):
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    streams = {}
    lock = threading.Lock()

    def reply(sid, st):
        token = os.environ.get("ASPNETCORE_TOKEN")
        sent = dict(st["headers"]).get("ms-aspnetcore-token")
        path = dict(st["headers"]).get(":path", "")
        # ANCM_TEST_ANY_TOKEN=1: started by a test harness behind a relay that the engine paired
        # with (the emulated IIS), so the token is not known here; /echo still shows it.
        if sent is not None and sent != token and os.environ.get("ANCM_TEST_ANY_TOKEN") != "1":
            conn.send_headers(sid, [(":status", "400")], end_stream=True)
            return
        if path.startswith("/echo"):
            body = json.dumps({"headers": st["headers"], "body_len": st["body_len"],
                               "trailers": st["trailers"]}).encode()
            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/json")])
            conn.send_data(sid, body)
            conn.send_headers(sid, [("x-echo-trailer", "done"), ("grpc-status", "0")], end_stream=True)
        elif not path.startswith(("/reset", "/hold")):
            conn.send_headers(sid, [(":status", "200"), ("content-length", "3")])
            conn.send_data(sid, b"ok\n", end_stream=True)

    while True:
        data = sock.recv(65536)
        if not data:
            return
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                st = streams[ev.stream_id] = {"headers": [list(h) for h in ev.headers], "body_len": 0,
                                              "trailers": []}
                path = dict(ev.headers).get(":path", "")
                if path.startswith("/reset"):
                    code = int(path.split("code=")[1])
                    conn.send_headers(ev.stream_id, [(":status", "200")])
                    conn.send_data(ev.stream_id, b"partial")
                    sock.sendall(conn.data_to_send())
                    # The head first, on its own: the reset is then one of a response under way
                    # (a reset before any head is a failed request, answered 502.3).
                    time.sleep(0.2)
                    conn.reset_stream(ev.stream_id, error_code=code)
                elif path.startswith("/hold"):
                    conn.send_headers(ev.stream_id, [(":status", "200")])
                    conn.send_data(ev.stream_id, b"holding")
            elif isinstance(ev, h2.events.DataReceived):
                streams[ev.stream_id]["body_len"] += len(ev.data)
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.TrailersReceived):
                streams[ev.stream_id]["trailers"] = [list(h) for h in ev.headers]
            elif isinstance(ev, h2.events.StreamEnded):
                reply(ev.stream_id, streams[ev.stream_id])
            elif isinstance(ev, h2.events.StreamReset):
                with open("resets.log", "a") as f:
                    f.write(f"{int(ev.error_code)}\n")
        out = conn.data_to_send()
        if out:
            sock.sendall(out)


def serve_and_close(sock):
    try:
        serve(sock)
    finally:
        sock.close()


def main():
    port = os.environ.get("ASPNETCORE_PORT")
    if not port or not port.isdigit():
        sys.stderr.write("h2_raw: ASPNETCORE_PORT is missing or invalid\n")
        sys.exit(1)
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", int(port)))
    lsock.listen(64)
    sys.stderr.write(f"listening on 127.0.0.1:{port}\n")
    sys.stderr.flush()
    while True:
        s, _ = lsock.accept()
        threading.Thread(target=serve_and_close, args=(s,), daemon=True).start()


if __name__ == "__main__":
    main()
