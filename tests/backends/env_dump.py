#!/usr/bin/env python3
"""Test backend: answers every request (any method, any path, even the shutdown POST) with 200 and JSON
{"method", "path", "headers": [[name, value], ...], "env": {the whole environment, token included}}.
Checks nothing (no pairing token check). For verifying the child environment and the forwarded headers."""
import os
import sys

import common


def r_dump(handler, query):
    handler.body.drain()
    handler.respond_json({
        "method": handler.command,
        "path": handler.path,
        "headers": common.header_list(handler),
        "env": dict(sorted(os.environ.items())),
    })


class Handler(common.Handler):
    check_token = False
    honour_shutdown = False
    routes = {"*": r_dump}


if __name__ == "__main__":
    sys.exit(common.serve(Handler))
