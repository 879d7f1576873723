#!/usr/bin/env python3
"""Test backend: stays alive but never binds ASPNETCORE_PORT. For startupTimeLimit, the second start attempt
and killing a process that never became ready. SIGTERM/SIGINT keep their default action (terminate)."""
import os
import signal
import sys

sys.stderr.write(f"never_listens[{os.getpid()}]: alive, not listening on {os.environ.get('ASPNETCORE_PORT')}\n")
sys.stderr.flush()
while True:
    signal.pause()
