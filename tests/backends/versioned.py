#!/usr/bin/env python3
"""Test backend for deploys: the app's version is read at start from version.txt in its working directory
(so a process run from a shadow copy reports the copy's version), after VERSIONED_START_DELAY seconds (0 by
default); the version "broken" exits with code 4
before listening (a broken deploy). Copied into a test site with common.py, as a deploy would copy an app.
Routes (besides common's): /version "<version> <pid>"; /health "ok"; /hang: every later request, health
checks too, hangs without an answer (a hung app)."""
import os
import sys
import threading
import time

import common

# A slow start (VERSIONED_START_DELAY seconds) before the app's files are read.
time.sleep(float(os.environ.get("VERSIONED_START_DELAY", "0")))
VERSION = open("version.txt").read().strip()
HUNG = threading.Event()


def r_version(handler, query):
    handler.respond(200, f"{VERSION} {os.getpid()}")


def r_health(handler, query):
    handler.respond(200, "ok\n")


def r_hang(handler, query):
    common.log("/hang requested: no request is answered from now on")
    HUNG.set()
    handler.respond(200, "hanging\n")


class Handler(common.Handler):
    routes = {**common.Handler.routes, "/version": r_version, "/health": r_health, "/hang": r_hang}

    def _route(self):
        while HUNG.is_set():
            time.sleep(3600)
        super()._route()


if __name__ == "__main__":
    if VERSION == "broken":
        common.log("version.txt says broken: exiting with code 4 at start")
        sys.exit(4)
    sys.exit(common.serve(Handler))
