"""An HttpPlatformHandler-style app: listens on the port given as its first argument (web.config:
arguments="argv_port.py %HTTP_PLATFORM_PORT%") and answers every request with JSON
{"argv": [...], "env": {HTTP_PLATFORM_PORT, ASPNETCORE_PORT}, "pid": N}. No token check.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        env = {k: os.environ.get(k) for k in ("HTTP_PLATFORM_PORT", "ASPNETCORE_PORT")}
        body = json.dumps({"argv": sys.argv[1:], "env": env, "pid": os.getpid()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
server.daemon_threads = True
sys.stderr.write(f"listening on 127.0.0.1:{sys.argv[1]}\n")
sys.stderr.flush()
server.serve_forever()
