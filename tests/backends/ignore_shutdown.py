#!/usr/bin/env python3
"""Test backend: serves the common routes (/pid, ...) but ignores the shutdown event (the POST to
/iisintegration gets 404) and ignores SIGTERM/SIGINT, so only a kill stops it.
For shutdownTimeLimit expiry and forced termination (event 1005)."""
import signal
import sys

import common


class Handler(common.Handler):
    honour_shutdown = False


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(common.serve(Handler, exit_on_signals=False))
