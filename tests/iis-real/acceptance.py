#!/usr/bin/env python3
"""Acceptance checks of the module in a real IIS (run by .github/workflows/windows.yml).

The workflow has installed the MSI, registered the module under the name AspNetCoreModuleV2,
published tests/iis-real/app into SITE_DIR and created the site (port 80) with the applications
/ (the app), /win (the same app, Windows authentication only), /broken and /badport
(tests/iis-real/sites). This script talks to http://localhost like any client, and changes the
site only the way an administrator would: app_offline.htm, web.config, appcmd.

Each check prints PASS or FAIL with what it saw; every check runs even after a failure; the
exit code is the number of failed checks (0 = all passed). Python 3.9+, standard library plus
`websockets` (pip).

Usage: acceptance.py --site-dir DIR --apppool NAME --site-name NAME --log-dir DIR
"""

import argparse
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid

HOST = "localhost"
PORT = 80
APPCMD = os.path.join(os.environ.get("windir", r"C:\Windows"), "System32", "inetsrv", "appcmd.exe")
MIB = 1024 * 1024
# Generous bounds for things that take their time on a loaded runner (not timing assertions:
# each is how long to keep polling before calling it a failure).
START_WAIT = 90.0
REQUEST_TIMEOUT = 120.0

RESULTS = []


def check(name, iis_only=False):
    """Registers a check; its function raises AssertionError (or anything) to fail.
    `iis_only`: needs IIS itself (appcmd, sub-applications, Windows logons, IIS's logs), skipped
    with --standin."""

    def wrap(fn):
        RESULTS.append((name, fn, iis_only))
        return fn

    return wrap


def request(method, path, body=None, headers=None, timeout=REQUEST_TIMEOUT):
    """One request on a new connection; returns (status, headers dict (lower-case), body bytes)."""
    conn = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def get_json(path, headers=None):
    status, _, body = request("GET", path, headers={"X-Acceptance": "1", **(headers or {})})
    assert status == 200, f"GET {path}: status {status}, body {body[:300]!r}"
    return json.loads(body)


def wait_for(what, fn, seconds=START_WAIT, interval=0.5):
    """Polls fn until it returns a true value; fails naming `what` and the last value/error."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # the app may be restarting: keep polling
            last = e
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {seconds:.0f} s (last: {last!r})")


def appcmd(*args):
    out = subprocess.run([APPCMD, *args], capture_output=True, text=True)
    assert out.returncode == 0, f"appcmd {' '.join(args)}: exit {out.returncode}: {out.stdout}{out.stderr}"
    return out.stdout


class Load:
    """Threads sending requests back to back (some slow, so some are in flight at any time)
    until stopped; records every outcome."""

    def __init__(self, threads=4):
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.pids = set()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(threads)]

    def run(self, i):
        path = "/slow?ms=300" if i % 2 else "/slow?ms=0"
        while not self.stop_flag.is_set():
            try:
                status, _, body = request("GET", path, headers={"X-Acceptance": "1"})
                with self.lock:
                    if status == 200:
                        self.ok += 1
                        self.pids.add(json.loads(body)["pid"])
                    else:
                        self.failures.append(f"{path}: {status} {body[:200]!r}")
            except Exception as e:
                with self.lock:
                    self.failures.append(f"{path}: {type(e).__name__}: {e}")

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        for t in self.threads:
            t.join(REQUEST_TIMEOUT)


ARGS = None


def site_path(*parts):
    return os.path.join(ARGS.site_dir, *parts)


# --- README's status table -------------------------------------------------------------------


@check("the app answers; what it receives (README: What the app receives)")
def app_answers():
    e = get_json("/echo?a=%2Fb&c=d", headers={"X-Custom": "v1", "MS-ASPNETCORE-Forged": "x"})
    env = e["env"]
    assert env.get("ASPNETCORE_PORT", "").isdigit(), f"ASPNETCORE_PORT: {env.get('ASPNETCORE_PORT')!r}"
    assert env.get("ASPNETCORE_TOKEN") == "(set)", "ASPNETCORE_TOKEN not set"
    assert env.get("ASPNETCORE_APPL_PATH") == "/", f"ASPNETCORE_APPL_PATH: {env.get('ASPNETCORE_APPL_PATH')!r}"
    phys = env.get("ASPNETCORE_IIS_PHYSICAL_PATH", "")
    assert os.path.normcase(os.path.normpath(phys)) == os.path.normcase(os.path.normpath(ARGS.site_dir)), (
        f"ASPNETCORE_IIS_PHYSICAL_PATH: {phys!r}"
    )
    assert env.get("ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED") == "true", (
        f"ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED: {env.get('ASPNETCORE_IIS_WEBSOCKETS_SUPPORTED')!r}"
    )
    assert "anonymous;" in env.get("ASPNETCORE_IIS_HTTPAUTH", ""), f"ASPNETCORE_IIS_HTTPAUTH: {env.get('ASPNETCORE_IIS_HTTPAUTH')!r}"
    assert env.get("ANCMTEST_CONFIG") in ("1", "2"), f"environmentVariables: ANCMTEST_CONFIG = {env.get('ANCMTEST_CONFIG')!r}"
    # The raw target: the module forwards pRawUrl, so %2F survives (docs/iis.md).
    assert e["rawTarget"] == "/echo?a=%2Fb&c=d", f"target as forwarded: {e['rawTarget']!r}"
    assert e["headers"].get("x-custom") == "v1", "request header X-Custom lost"
    assert "ms-aspnetcore-forged" not in e["headers"], "a client's MS-ASPNETCORE-* header reached the app"
    # ASP.NET Core's IIS integration turned X-Forwarded-For into the client address.
    assert e["remoteIp"] in ("127.0.0.1", "::1"), f"remote address as the app sees it: {e['remoteIp']!r}"
    assert e["scheme"] == "http", f"scheme: {e['scheme']!r}"
    return f"pid {e['pid']}, port {env['ASPNETCORE_PORT']}"


@check("pairing token: the app gets exactly its token; a forged one does not pass; Kestrel refuses requests without it")
def pairing_token():
    e = get_json("/echo", headers={"MS-ASPNETCORE-TOKEN": "forged-by-the-client"})
    assert e["tokenMatches"], "the request reached the app with a token other than the process's"
    # Straight to Kestrel on its loopback port, bypassing IIS: ASP.NET Core's IIS integration
    # answers 400 to a request without the process's token.
    port = int(e["env"]["ASPNETCORE_PORT"])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/echo")
        status = conn.getresponse().status
    finally:
        conn.close()
    assert status == 400, f"direct request to the backend without the token: {status} (want 400)"
    return f"direct request to 127.0.0.1:{port} without token: {status}"


@check("app_offline.htm: 503 with the file's bytes, the process stopped; removed: the app again")
def app_offline():
    before = get_json("/echo")["pid"]
    marker = f"<html><body>offline {uuid.uuid4()}</body></html>".encode()
    path = site_path("app_offline.htm")
    with open(path, "wb") as f:
        f.write(marker)
    try:
        def offline():
            status, headers, body = request("GET", "/echo")
            return status == 503 and body == marker and headers.get("content-type", "").startswith("text/html")

        wait_for("503 with app_offline.htm's bytes", offline)
    finally:
        os.remove(path)
    after = wait_for("200 again after removing app_offline.htm", lambda: get_json("/echo")["pid"])
    assert after != before, f"the process ({before}) kept running through app_offline.htm"
    return f"process {before} stopped, {after} started"


@check("startup failure: 502.5 with the startup-failure page (README status table)", iis_only=True)
def startup_failure():
    status, _, body = request("GET", "/broken/")
    assert status == 502, f"status {status}"
    assert b"502.5" in body and b"Startup Failure" in body, f"not the startup-failure page: {body[:400]!r}"
    assert b"does-not-exist.exe" in body, "the page does not name the processPath that failed"
    return "502 with the 502.5 page (substatus checked in the IIS log at the end)"


@check("invalid ASPNETCORE_PORT: 502 with a plain page (README status table)", iis_only=True)
def bad_port():
    status, _, body = request("GET", "/badport/")
    assert status == 502, f"status {status}, body {body[:300]!r}"
    assert b"Startup Failure" not in body, "a startup-failure page where a plain 502 was due"
    return "502"


@check("the process dies mid-request: 502.3; the next request starts a new process")
def crash():
    before = get_json("/echo")["pid"]
    status, _, body = request("GET", "/crash")
    assert status == 502, f"status {status}, body {body[:300]!r}"
    assert b"502.3" in body, f"not the 502.3 page: {body[:300]!r}"
    after = wait_for("a new process after the crash", lambda: get_json("/echo")["pid"])
    assert after != before, "the same process id after the crash"
    return f"process {before} crashed, {after} started"


@check("streaming: the first chunk reaches the client before the app writes the second")
def streaming():
    sid = str(uuid.uuid4())
    conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
    try:
        conn.request("GET", f"/stream?id={sid}", headers={"X-Acceptance": "1"})
        resp = conn.getresponse()
        assert resp.status == 200, f"status {resp.status}"
        # The app writes "second" only after /stream/release, which is sent only once "first"
        # has arrived: buffering anywhere on the way makes this read time out.
        first = resp.readline()
        assert first == b"first\n", f"first chunk: {first!r}"
        status, _, _ = request("GET", f"/stream/release?id={sid}")
        assert status == 200, f"release: {status}"
        rest = resp.read()
        assert rest == b"second\n", f"rest: {rest!r}"
    finally:
        conn.close()
    return "first chunk seen before the second was written"


@check("a failure after the response head: the client's response is cut off, never completed")
def failure_after_head():
    before = get_json("/echo")["pid"]
    conn = http.client.HTTPConnection(HOST, PORT, timeout=60)
    truncated = None
    try:
        conn.request("GET", f"/stream?id={uuid.uuid4()}&crashAfterFirst=true", headers={"X-Acceptance": "1"})
        resp = conn.getresponse()
        assert resp.status == 200, f"status {resp.status}"
        try:
            body = resp.read()
            truncated = f"complete response {body!r}"
        except (http.client.IncompleteRead, ConnectionError, socket.timeout) as e:
            truncated = None if not isinstance(e, socket.timeout) else "timed out instead of being cut off"
    finally:
        conn.close()
    assert truncated is None, truncated
    after = wait_for("a new process after the crash", lambda: get_json("/echo")["pid"])
    assert after != before, "the same process id after the crash"
    return "cut off (IncompleteRead / reset)"


@check("WebSocket echo: text, a 1 MiB binary message, close")
def websocket_echo():
    from websockets.sync.client import connect

    with connect(f"ws://{HOST}:{PORT}/ws", max_size=4 * MIB, open_timeout=60, close_timeout=30) as ws:
        for i in range(20):
            text = f"hello {i} ünïcødé"
            ws.send(text)
            got = ws.recv(timeout=30)
            assert got == text, f"text echo {i}: {got!r}"
        blob = bytes((i * 7) % 256 for i in range(MIB))
        ws.send(blob)
        got = ws.recv(timeout=60)
        assert got == blob, f"binary echo: {len(got)} bytes back, differs"
    return "20 texts and 1 MiB binary echoed, closed"


def pattern(n):
    """What /download sends: byte i = i % 251, in 251*256-byte blocks."""
    block = bytes(i % 251 for i in range(251 * 256))
    sent = 0
    while sent < n:
        piece = block[: min(len(block), n - sent)]
        sent += len(piece)
        yield piece


@check("100 MiB upload (Content-Length) and download, intact")
def big_transfer():
    n = 100 * MIB
    expected = hashlib.sha256()
    for piece in pattern(n):
        expected.update(piece)
    conn = http.client.HTTPConnection(HOST, PORT, timeout=REQUEST_TIMEOUT)
    try:
        conn.putrequest("POST", "/upload")
        conn.putheader("Content-Length", str(n))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders()
        for piece in pattern(n):
            conn.send(piece)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, f"upload: status {resp.status}, body {body[:300]!r}"
        up = json.loads(body)
    finally:
        conn.close()
    assert up["bytes"] == n and up["sha256"] == expected.hexdigest(), f"upload arrived as {up}"

    conn = http.client.HTTPConnection(HOST, PORT, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", f"/download?bytes={n}")
        resp = conn.getresponse()
        assert resp.status == 200, f"download: status {resp.status}"
        got = hashlib.sha256()
        total = 0
        while True:
            piece = resp.read(MIB)
            if not piece:
                break
            got.update(piece)
            total += len(piece)
    finally:
        conn.close()
    assert total == n and got.hexdigest() == expected.hexdigest(), f"download: {total} bytes, hash differs or short"
    return "100 MiB each way, SHA-256 equal"


@check("chunked upload (8 MiB), intact")
def chunked_upload():
    n = 8 * MIB
    expected = hashlib.sha256()
    for piece in pattern(n):
        expected.update(piece)
    # No Content-Length or Transfer-Encoding given: http.client sends an iterable chunked.
    status, _, body = request("POST", "/upload", body=pattern(n), headers={"Content-Type": "application/octet-stream"})
    assert status == 200, f"status {status}, body {body[:300]!r}"
    up = json.loads(body)
    assert up["bytes"] == n and up["sha256"] == expected.hexdigest(), f"arrived as {up}"
    return "8 MiB chunked, SHA-256 equal"


@check("Windows authentication: the app sees the Windows user (MS-ASPNETCORE-WINAUTHTOKEN)", iis_only=True)
def windows_auth():
    status, _, _ = request("GET", "/win/echo")
    assert status == 401, f"anonymous request to /win: {status} (want IIS's 401)"
    # Windows' own curl.exe does Negotiate/NTLM with the logged-on user's credentials (SSPI).
    curl = os.path.join(os.environ.get("windir", r"C:\Windows"), "System32", "curl.exe")
    out = subprocess.run(
        [curl, "-sS", "--fail", "--negotiate", "-u", ":", "-H", "X-Acceptance: 1", f"http://{HOST}:{PORT}/win/echo"],
        capture_output=True,
        text=True,
        timeout=REQUEST_TIMEOUT,
    )
    assert out.returncode == 0, f"curl --negotiate: exit {out.returncode}: {out.stderr}"
    e = json.loads(out.stdout)
    want = os.environ.get("USERNAME", "").lower()
    assert e["user"] and e["user"].lower().split("\\")[-1] == want, f"user as the app sees it: {e['user']!r} (want {want!r})"
    assert e["authType"] in ("Negotiate", "NTLM", "Kerberos"), f"authentication type: {e['authType']!r}"
    assert "ms-aspnetcore-winauthtoken" in e["headers"], "no MS-ASPNETCORE-WINAUTHTOKEN header arrived"
    assert "windows;" in e["env"].get("ASPNETCORE_IIS_HTTPAUTH", ""), f"ASPNETCORE_IIS_HTTPAUTH: {e['env'].get('ASPNETCORE_IIS_HTTPAUTH')!r}"
    return f"{e['user']} ({e['authType']})"


@check("appcmd recycle apppool under load: no failed request, a new process serves", iis_only=True)
def recycle_under_load():
    with Load() as load:
        wait_for("load running", lambda: load.ok >= 20)
        before = set(load.pids)
        appcmd("recycle", "apppool", f"/apppool.name:{ARGS.apppool}")
        wait_for("a request served by a new process", lambda: load.pids - before, seconds=START_WAIT)
        # Keep the load on a little longer across the old worker's shutdown.
        count = load.ok
        wait_for("more requests after the switch", lambda: load.ok >= count + 40)
    assert not load.failures, f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
    return f"{load.ok} requests, 0 failed, processes {sorted(load.pids)}"


@check("a web.config change: the new setting is in effect, no failed request meanwhile")
def config_change():
    path = site_path("web.config")
    with open(path, encoding="utf-8") as f:
        original = f.read()
    changed = re.sub(r'(name="ANCMTEST_CONFIG" value=")[^"]*(")', r"\g<1>2\g<2>", original)
    assert changed != original, "ANCMTEST_CONFIG not found in the published web.config"
    try:
        with Load() as load:
            wait_for("load running", lambda: load.ok >= 20)
            with open(path, "w", encoding="utf-8") as f:
                f.write(changed)
            wait_for("ANCMTEST_CONFIG=2 in effect", lambda: get_json("/echo")["env"].get("ANCMTEST_CONFIG") == "2")
            count = load.ok
            wait_for("more requests after the change", lambda: load.ok >= count + 40)
        assert not load.failures, f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original)
    wait_for("ANCMTEST_CONFIG=1 again", lambda: get_json("/echo")["env"].get("ANCMTEST_CONFIG") == "1")
    return f"{load.ok} requests during the change, 0 failed"


@check("Application Initialization: after a recycle, IIS's warm-up request starts the app before any client", iis_only=True)
def application_initialization():
    # startMode="AlwaysRunning": IIS starts the new worker at once, and Application
    # Initialization sends it the warm-up request for the preloadEnabled application.
    appcmd("recycle", "apppool", f"/apppool.name:{ARGS.apppool}")
    # No request from here meanwhile (it would start the process itself); a wait, not a
    # measurement: the check is about who came first, not how fast.
    time.sleep(20)
    first = get_json("/first")["first"]
    assert first is not None and not first["fromScript"], f"the process's first request came from this script: {first}"
    return f"first request: {first['path']} ({first['userAgent']!r})"


# --- Windows' own records ----------------------------------------------------------------------


@check("Event Log: the module's entries (1001 process started) under AspNetCoreModuleRs", iis_only=True)
def event_log():
    out = subprocess.run(
        ["wevtutil", "qe", "Application", "/q:*[System[Provider[@Name='AspNetCoreModuleRs']]]", "/f:text", "/c:200"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, f"wevtutil: {out.stderr}"
    assert re.search(r"Event ID:\s*1001\b", out.stdout), f"no event 1001: {out.stdout[:800]!r}"
    assert "cannot be found" not in out.stdout, "Event Viewer cannot render the entries (message file not registered?)"
    return f"{len(re.findall(r'Event ID:', out.stdout))} entries"


@check("IIS log: substatus 502.5 for /broken, 502.3 for /crash, 503 for app_offline", iis_only=True)
def iis_log():
    subprocess.run(["netsh", "http", "flush", "logbuffer"], capture_output=True)
    seen = set()
    for root, _, files in os.walk(ARGS.log_dir):
        for name in files:
            if not name.endswith(".log"):
                continue
            fields = []
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("#Fields:"):
                        fields = line.split()[1:]
                        continue
                    if line.startswith("#") or not fields:
                        continue
                    row = dict(zip(fields, line.split()))
                    seen.add((row.get("cs-uri-stem"), row.get("sc-status"), row.get("sc-substatus")))
    for want in [("/broken/", "502", "5"), ("/crash", "502", "3"), ("/echo", "503", "0")]:
        assert want in seen, f"no log line {want}; lines with 5xx: {sorted(s for s in seen if s[1] and s[1] >= '500')[:20]}"
    return "502.5, 502.3, 503 logged"


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--site-dir", required=True, help="the published app's folder (the site root)")
    p.add_argument("--apppool", help="IIS application pool of the site")
    p.add_argument("--site-name", help="IIS site name")
    p.add_argument("--log-dir", help="the site's IIS log folder")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--only", help="run only checks whose name contains this")
    p.add_argument(
        "--standin",
        action="store_true",
        help="not IIS: ancm-serve with tests/iis-real/standin (cargo xtask workflows); skips the IIS-only checks",
    )
    ARGS = p.parse_args()
    if not ARGS.standin and not (ARGS.apppool and ARGS.site_name and ARGS.log_dir):
        p.error("--apppool, --site-name and --log-dir are required (unless --standin)")
    global PORT
    PORT = ARGS.port

    # The first request starts the app: wait for it once, outside the checks.
    wait_for("the app's first answer", lambda: request("GET", "/", timeout=60)[0] == 200)
    failed = passed = 0
    for name, fn, iis_only in RESULTS:
        if ARGS.only and ARGS.only not in name:
            continue
        if iis_only and ARGS.standin:
            print(f"SKIP  {name}: needs IIS", flush=True)
            continue
        try:
            detail = fn()
            passed += 1
            print(f"PASS  {name}: {detail}", flush=True)
        except Exception as e:
            failed += 1
            print(f"FAIL  {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc()
    print(f"{passed} passed, {failed} failed", flush=True)
    return failed


if __name__ == "__main__":
    sys.exit(main())
