#!/usr/bin/env python3
"""Test backend: sleeps argv[1] seconds (default 5) before listening, then serves the common routes.
For readiness polling, requests queued behind a start, and startupTimeLimit."""
import sys
import time

import common

if __name__ == "__main__":
    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    common.log(f"sleeping {delay:g}s before listening")
    time.sleep(delay)
    sys.exit(common.serve())
