#!/usr/bin/env python3
"""Traces and task dumps of real weft programs.

  pytest-3 tests/trace_test.py --build=build

- On every mode, `WEFT_TRACE=FILE countdown ...` writes Chrome Trace Event JSON: the file
  parses, every event has the fields of its phase, one thread name per executor thread,
  `run` spans carry a task id, nothing was dropped.
- single-lock: the `lock` spans of different threads never overlap (one holder at a time).
- multi-thread: a CPU-bound count split over two workers shows `run` spans of both workers
  overlapping in time.
- echo_server with a client that connected and sent nothing: SIGUSR1 makes it write a task dump
  naming a task that waits on a recv of that connection's fd, and it keeps serving.
"""

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from harness import PROGRAMS

MODES = ["cooperative", "single-lock", "multi-thread"]
THREAD_LABEL = {"cooperative": "cooperative", "single-lock": "single-lock",
                "multi-thread": "worker"}


class CheckFailed(Exception):
    pass


@pytest.fixture
def countdown():
    return PROGRAMS.countdown


@pytest.fixture
def echo_server():
    return PROGRAMS.echo_server


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def trace_of(countdown, mode, count, workers=2, extra=()):
    """Runs countdown under WEFT_TRACE and returns the parsed trace."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        env = dict(os.environ, WEFT_TRACE=path)
        argv = [countdown, f"--mode={mode}", f"--workers={workers}", f"--count={count}", *extra]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        check(proc.returncode == 0, f"{argv}: exit {proc.returncode}: {proc.stderr}")
        with open(path) as f:
            return json.load(f)  # raises on malformed JSON


def validate(trace, mode, workers):
    check(isinstance(trace.get("traceEvents"), list), "traceEvents is a list")
    check(trace.get("displayTimeUnit") == "ms", "displayTimeUnit")
    other = trace["otherData"]
    check(other["mode"] == mode, f"otherData.mode {other['mode']} != {mode}")
    check(other["workers"] == workers, f"otherData.workers {other['workers']}")
    check(other["dropped_events"] == 0, f"dropped {other['dropped_events']}")
    pid = None
    names = {}
    runs = 0
    for e in trace["traceEvents"]:
        check(isinstance(e.get("name"), str) and e.get("ph") in ("X", "i", "M"), f"event {e}")
        check(isinstance(e.get("pid"), int) and isinstance(e.get("tid"), int), f"ids of {e}")
        check(0 <= e["tid"] < workers, f"tid of {e}")
        pid = pid if pid is not None else e["pid"]
        check(e["pid"] == pid, "one pid")
        if e["ph"] == "M":
            check(e["name"] == "thread_name", f"metadata {e}")
            names[e["tid"]] = e["args"]["name"]
            continue
        check(isinstance(e.get("ts"), (int, float)) and e["ts"] >= 0, f"ts of {e}")
        if e["ph"] == "X":
            check(isinstance(e.get("dur"), (int, float)) and e["dur"] >= 0, f"dur of {e}")
            check(isinstance(e.get("cat"), str), f"cat of {e}")
        if e["name"] == "run":
            runs += 1
            check(e["ph"] == "X" and e["cat"] == "task", f"run span {e}")
            check(isinstance(e["args"]["task"], int) and isinstance(e["args"]["name"], str),
                  f"run args {e}")
    label = THREAD_LABEL[mode]
    check(names == {i: f"{label} {i}" for i in range(workers)}, f"thread names {names}")
    check(runs > 0, "no run span")


def spans(trace, name):
    return [e for e in trace["traceEvents"] if e["ph"] == "X" and e["name"] == name]


def test_every_mode(countdown):
    for mode in MODES:
        workers = 1 if mode == "cooperative" else 2
        validate(trace_of(countdown, mode, 2_000_000, workers), mode, workers)
        print(f"ok: a {mode} trace is valid Chrome Trace Event JSON")


def test_single_lock_spans_never_overlap(countdown):
    # A short switch interval: many hand-overs in a short run.
    trace = trace_of(countdown, "single-lock", 200_000_000, extra=["--switch-interval=200us"])
    locks = sorted(spans(trace, "lock"), key=lambda e: e["ts"])
    check(len({e["tid"] for e in locks}) == 2 and len(locks) >= 10,
          f"both threads held the lock, many times: {len(locks)} spans")
    for a, b in zip(locks, locks[1:]):
        # ts and dur are printed to the nanosecond: a strict order, within rounding
        check(b["ts"] >= a["ts"] + a["dur"] - 0.002,
              f"lock spans overlap: {a} and {b}")
    print(f"ok: {len(locks)} single-lock lock spans, none overlapping")


def test_multi_thread_runs_overlap(countdown):
    trace = trace_of(countdown, "multi-thread", 400_000_000)
    runs = spans(trace, "run")
    by_tid = {0: [], 1: []}
    for e in runs:
        by_tid[e["tid"]].append((e["ts"], e["ts"] + e["dur"]))
    overlap = max((min(a[1], b[1]) - max(a[0], b[0])
                   for a in by_tid[0] for b in by_tid[1]), default=0)
    check(overlap > 0, "no two run spans of the workers overlap")
    print(f"ok: multi-thread run spans of two workers overlap by {overlap / 1000:.1f} ms")


def test_echo_server_dump(echo_server):
    for mode in MODES:
        argv = [echo_server, "--port", "0", f"--mode={mode}", "--workers=2"]
        with tempfile.TemporaryFile("w+") as err:
            server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
            try:
                line = server.stdout.readline()
                m = re.match(r"listening on (\S+):(\d+)$", line.strip())
                check(m is not None, f"no listening line: {line!r}")
                address = (m.group(1), int(m.group(2)))
                stuck = socket.create_connection(address, timeout=5)  # sends nothing
                time.sleep(0.2)
                server.send_signal(signal.SIGUSR1)
                pattern = re.compile(r'^task \d+ "[^"]*" waiting on recv fd (\d+) '
                                     r'\(socket:\[\d+\]\) for ', re.M)
                deadline = time.monotonic() + 10
                dump = ""
                while time.monotonic() < deadline and not pattern.search(dump):
                    time.sleep(0.05)
                    err.seek(0)
                    dump = err.read()
                check(pattern.search(dump) is not None,
                      f"{mode}: no task waiting on a recv in the dump:\n{dump}")
                for line in dump.splitlines():
                    check(line.startswith("task "), f"{mode}: dump line {line!r}")
                # ...and it still serves.
                with socket.create_connection(address, timeout=5) as c:
                    c.sendall(b"still there?")
                    got = b""
                    while len(got) < 12:
                        chunk = c.recv(64)
                        check(chunk, "echo connection closed early")
                        got += chunk
                    check(got == b"still there?", f"echo gave {got!r}")
                stuck.close()
                server.send_signal(signal.SIGTERM)
                check(server.wait(timeout=15) == 0, f"{mode}: exit status")
                print(f"ok: {mode} echo_server dumps its stuck connection on SIGUSR1 and serves on")
            finally:
                if server.poll() is None:
                    server.kill()
                    server.wait()
