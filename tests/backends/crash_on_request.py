#!/usr/bin/env python3
"""Test backend: serves the common routes (/, /pid, /json, /sleep), but a request to /crash makes the
process exit with code 3 at once, without answering. For crash detection, 502 on a dead backend and lazy restart."""
import os
import sys

import common


def r_crash(handler, query):
    common.log("/crash requested, exiting with code 3")
    os._exit(3)


class Handler(common.Handler):
    routes = {**common.Handler.routes, "/crash": r_crash}


if __name__ == "__main__":
    sys.exit(common.serve(Handler))
