#!/usr/bin/env python3
"""Test backend: writes 100,000 characters to stdout at startup, then serves the common routes (/pid, ...).
1000 lines of exactly 100 characters each (newline included), "chatty line 00001 xxx…" to "chatty line 01000 …",
so a 30,000-character cut falls exactly after line 00300. For the stdout capture limit and pipe draining."""
import sys

import common

if __name__ == "__main__":
    for i in range(1, 1001):
        head = f"chatty line {i:05d} "
        sys.stdout.write(head + "x" * (99 - len(head)) + "\n")
    sys.stdout.flush()
    sys.exit(common.serve())
