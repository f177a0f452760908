#!/usr/bin/env python3
"""The example servers under injected faults (a build with -Dfault_injection=true).

Each server runs with WEFT_FAULTS (ENOMEM, EAGAIN, ECONNRESET, EMFILE and short transfers at
random, deterministic by seed, on a tiny ring) while clients on 127.0.0.1 hammer it. Every
connection must get exactly the right bytes or a clean close/error, never wrong bytes; the server
must still answer fresh connections afterwards; after SIGINT it must exit 0 and report no live
task, no operation in flight and as many open fds as it started with.

    pytest-3 tests/faults_test.py --build=DIR     (DIR built with -Dfault_injection=true)
"""
import concurrent.futures
import os
import random
import re
import signal
import socket
import time

import pytest

import harness
from harness import PROGRAMS

# The first eligible operations of each ring fail with EMFILE where they can (the first accept:
# the accept loop must back off and recover), then faults at random.
FAULTS = ("seed={seed},enomem=0.02,eagain=0.02,econnreset=0.03,emfile=0.05,short=0.3,ring=8,"
          "at=0+1+2+3,at_kind=emfile")
CONNECTIONS = 300  # per server run
THREADS = 8
DEADLINE_S = 8  # per server run, for the clients


class Failure(Exception):
    pass


def start(cmd, seed):
    """The server, up, with faults seeded by `seed` (a harness.ServerProcess: always killed)."""
    env = dict(os.environ, WEFT_FAULTS=FAULTS.format(seed=seed))
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    return harness.ServerProcess(cmd + ["--port=0", "--host=127.0.0.1", "--drain-timeout=2"],
                                 env=env)


def stop(server, name):
    returncode, _, err = server.stop(signal.SIGINT, timeout=30)
    if returncode != 0:
        raise Failure(f"{name}: exit status {returncode}\n{err}")
    report = re.search(r"^weft-faults: .*$", err, re.M)
    if not report:
        raise Failure(f"{name}: no fault report on stderr\n{err}")
    fields = dict(kv.split("=") for kv in report.group(0).split()[1:])
    n = {k: int(v) for k, v in fields.items()}
    problems = []
    if n["live_tasks"] != 0:
        problems.append(f"{n['live_tasks']} task frame(s) alive at exit")
    if n["in_flight"] != 0:
        problems.append(f"{n['in_flight']} operation(s) in flight when the rings closed")
    if n["fds_end"] != n["fds_start"]:
        problems.append(f"fds: {n['fds_start']} at start, {n['fds_end']} at exit")
    injected = sum(n[k] for k in ("enomem", "eagain", "econnreset", "emfile", "short"))
    if injected == 0 or n["emfile"] == 0:
        problems.append("no fault (or no EMFILE) was injected: the test proves nothing")
    if "backing off" not in err:
        problems.append("the accept loop never backed off after an injected EMFILE")
    if "ERROR: AddressSanitizer" in err or "runtime error:" in err:
        problems.append("sanitizer report")
    if problems:
        raise Failure(f"{name}: " + "; ".join(problems) + f"\n{err}")
    return report.group(0)


def recv_all(s, want=None):
    got = bytearray()
    while want is None or len(got) < want:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        got += chunk
    return bytes(got)


def echo_client(port, i):
    """'ok' (every byte back), 'closed' (a clean prefix, then close or reset); raises on wrong
    bytes."""
    rnd = random.Random(i)
    data = rnd.randbytes(rnd.choice([1, 100, 5000, 70000]))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            got = recv_all(s, len(data))
    except (ConnectionRefusedError, ConnectionResetError, socket.timeout):
        return "closed"
    if got == data:
        return "ok"
    if data.startswith(got):
        return "closed"
    raise Failure(f"echo connection {i}: wrong bytes (sent {len(data)}, got {len(got)})")


def http_expected(files, path):
    body = b"Hello, World!" if path == "/" else files[path]
    return body


def http_client(port, i, files):
    rnd = random.Random(i)
    paths = ["/"] + sorted(files)
    requests = [rnd.choice(paths) for _ in range(rnd.choice([1, 3]))]
    results = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            buffered = b""
            for k, path in enumerate(requests):
                last = k == len(requests) - 1
                head = f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                head += "Connection: close\r\n\r\n" if last else "\r\n"
                try:
                    s.sendall(head.encode())
                except (BrokenPipeError, ConnectionResetError):
                    return "closed"
                # Read one response: its head, then Content-Length bytes.
                while b"\r\n\r\n" not in buffered:
                    chunk = recv_all_once(s)
                    if not chunk:
                        check_head_prefix(buffered, i)
                        return "closed"
                    buffered += chunk
                head_bytes, _, rest = buffered.partition(b"\r\n\r\n")
                status = int(head_bytes.split(b" ", 2)[1])
                length = int(re.search(rb"(?i)content-length: *(\d+)", head_bytes).group(1))
                while len(rest) < length:
                    chunk = recv_all_once(s)
                    if not chunk:
                        break
                    rest += chunk
                body, buffered = rest[:length], rest[length:]
                if status == 200:
                    want = http_expected(files, path)
                    if not want.startswith(body):
                        raise Failure(f"http connection {i}: wrong body for {path}")
                    if len(body) < len(want):
                        return "closed"
                    results.append("ok")
                elif 500 <= status < 600:
                    return "error"  # a clean error response (an injected fault on open/stat)
                else:
                    raise Failure(f"http connection {i}: status {status} for {path}")
    except (ConnectionRefusedError, ConnectionResetError, socket.timeout):
        return "closed"
    return "ok"


def recv_all_once(s):
    try:
        return s.recv(65536)
    except (ConnectionResetError, socket.timeout):
        return b""


def check_head_prefix(got, i):
    if got and not (got.startswith(b"HTTP/1.1 ") or b"HTTP/1.1 ".startswith(got)):
        raise Failure(f"http connection {i}: garbage instead of a response head: {got[:40]!r}")


def hammer(client, port, name, *extra):
    outcomes = {}
    deadline = time.monotonic() + DEADLINE_S
    # Not a `with` block: on failure, do not wait for the other clients (stopping the server
    # ends them).
    pool = concurrent.futures.ThreadPoolExecutor(THREADS)
    try:
        futures = [pool.submit(client, port, i, *extra) for i in range(CONNECTIONS)]
        for f in futures:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                r = f.result(timeout=remaining)
            except concurrent.futures.TimeoutError:
                raise Failure(f"{name}: clients did not finish within {DEADLINE_S} s")
            outcomes[r] = outcomes.get(r, 0) + 1
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if outcomes.get("ok", 0) < CONNECTIONS // 4:
        raise Failure(f"{name}: too few connections served correctly: {outcomes}")
    # Still up: a fresh connection is answered correctly (faults still on: a few tries).
    for attempt in range(30):
        if client(port, 10_000 + attempt, *extra) == "ok":
            break
    else:
        raise Failure(f"{name}: no fresh connection served correctly after the storm")
    return outcomes


RUNS = {"echo cooperative": ("echo_server", ["--mode=cooperative"]),
        "echo single-lock 2": ("echo_server", ["--mode=single-lock", "--workers=2"]),
        "echo multi-thread 2": ("echo_server", ["--mode=multi-thread", "--workers=2"]),
        "http cooperative": ("http_server", ["--mode=cooperative", "--workers=2"]),
        "http multi-thread": ("http_server", ["--mode=multi-thread", "--workers=2"])}


@pytest.fixture(scope="module")
def http_files(tmp_path_factory):
    """The HTTP server's document root and the files in it, by path."""
    root = tmp_path_factory.mktemp("root")
    rnd = random.Random(1)
    files = {"/small.txt": rnd.randbytes(100), "/mid.bin": rnd.randbytes(20000),
             "/big.bin": rnd.randbytes(200000)}
    for path, data in files.items():
        (root / path.lstrip("/")).write_bytes(data)
    return root, files


@pytest.mark.parametrize("seed,name", list(enumerate(RUNS, start=1)), ids=list(RUNS))
def test_server_under_faults(seed, name, http_files):
    program, args = RUNS[name]
    cmd = [getattr(PROGRAMS, program), *args]
    client, extra = echo_client, ()
    if program == "http_server":
        cmd.append(f"--root={http_files[0]}")
        client, extra = http_client, (http_files[1],)
    started = time.monotonic()
    with start(cmd, seed) as server:
        try:
            outcomes = hammer(client, server.port, name, *extra)
        finally:
            report = stop(server, name)
    print(f"ok   {name}: {outcomes}; {report} ({time.monotonic() - started:.1f} s)")
