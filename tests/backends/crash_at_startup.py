#!/usr/bin/env python3
"""Test backend: prints one line to stdout and one to stderr, then exits with the code given in argv[1]
(default 1) without listening. For 502.5 start failures, captured output in the report, rapid-fail counting."""
import sys

code = int(sys.argv[1]) if len(sys.argv) > 1 else 1
print(f"crash_at_startup: stdout line, exiting with code {code}", flush=True)
print(f"crash_at_startup: stderr line, exiting with code {code}", file=sys.stderr, flush=True)
sys.exit(code)
