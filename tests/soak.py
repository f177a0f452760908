#!/usr/bin/env python3
"""Soak: the echo and HTTP servers on every mode under a mix of good and bad clients, then a
check that nothing was lost and nothing leaked.

  python3 tests/soak.py --build DIR --seconds S [--clients N] [--json FILE]

The time is shared out between six runs (echo_server and http_server, each on cooperative,
single-lock --workers=2 and multi-thread --workers=2). Each run starts the server with --port 0,
warms it up with the same mix for a short while, lets it settle, and takes its baseline: resident
memory (VmRSS) and open fds (/proc/PID/fd). Then N client threads (127.0.0.1 only) pick a client
kind at random, over and over, until the run's time is up:

  echo: good (random payloads of 1 B to 64 KiB, every byte checked), reset (SO_LINGER 0
        mid-stream), vanish (close without reading the answer), slow reader (sends 256 KiB and
        reads nothing for a while: the server's writes block on that connection only).
  http: good keep-alive (several GETs on one connection, each answer checked), pipelined (4
        requests in one write, 4 answers in order), reset mid-request, slowloris (a head that
        trickles in, cut off by the server's --header-timeout: 408 or close), oversized headers
        (431), garbage (400).

Afterwards, with every client gone: the fd count must come back to the baseline (or below: the
baseline may still hold one of the warm-up's connections), the RSS
to within max(25%, 4 MiB) of it (allocators keep some memory), every good exchange must have got
exactly the right answer, every bad client an answer or a close (never a hang past its socket
timeout), and SIGINT must stop the server with exit status 0. One line per run and a summary;
exit status 1 if any check failed, 2 for bad arguments."""
import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

from harness import recv_exact, reset  # shared with the pytest suites

MODES = (("cooperative", []), ("single-lock:2", ["--mode=single-lock", "--workers=2"]),
         ("multi-thread:2", ["--mode=multi-thread", "--workers=2"]))


class Counts:
    """Thread-safe tallies: exchanges per kind, and the failures of good clients."""

    def __init__(self):
        self.lock = threading.Lock()
        self.kinds = {}
        self.bytes_checked = 0
        self.failures = []

    def add(self, kind, checked=0):
        with self.lock:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            self.bytes_checked += checked

    def fail(self, kind, why):
        with self.lock:
            if len(self.failures) < 20:
                self.failures.append(f"{kind}: {why}")
            self.kinds[kind + " FAILED"] = self.kinds.get(kind + " FAILED", 0) + 1


def connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


# ---- echo clients

def echo_good(port, rng, counts):
    with connect(port) as s:
        for _ in range(rng.randint(1, 5)):
            payload = rng.randbytes(rng.choice((1, 64, 1500, 16384, 65536)))
            s.sendall(payload)
            back = recv_exact(s, len(payload))
            if back != payload:
                raise AssertionError(f"{len(payload)} bytes sent, different bytes came back")
            counts.add("echo good", len(payload))


def echo_reset(port, rng, counts):
    s = connect(port)
    s.sendall(rng.randbytes(rng.randint(1, 32768)))
    reset(s)
    counts.add("echo reset")


def echo_vanish(port, rng, counts):
    s = connect(port)
    s.sendall(rng.randbytes(rng.randint(1, 4096)))
    s.close()
    counts.add("echo vanish")


def echo_slow_reader(port, rng, counts):
    with connect(port) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 0.5
        while sent < 256 * 1024 and time.monotonic() < deadline:
            try:
                sent += s.send(b"x" * 16384)
            except BlockingIOError:
                time.sleep(0.01)  # both directions are full: the server waits on us
        counts.add("echo slow reader")


# ---- http clients

def read_response(f):
    """(status, body) of one HTTP/1.1 response from a file object, honouring Content-Length."""
    status_line = f.readline()
    if not status_line:
        raise ConnectionError("closed before a status line")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, f.read(length)


def http_good(port, rng, counts):
    with connect(port) as s, s.makefile("rb") as f:
        for _ in range(rng.randint(1, 6)):
            s.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n")
            status, body = read_response(f)
            if status != 200 or body != b"Hello, World!":
                raise AssertionError(f"GET / gave {status} {body[:40]!r}")
            counts.add("http keep-alive", len(body))


def http_pipelined(port, rng, counts):
    with connect(port) as s, s.makefile("rb") as f:
        s.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\n\r\n" * 4)
        for i in range(4):
            status, body = read_response(f)
            if status != 200 or body != b"Hello, World!":
                raise AssertionError(f"pipelined answer {i} was {status} {body[:40]!r}")
        counts.add("http pipelined", 4 * 13)


def http_reset(port, rng, counts):
    s = connect(port)
    s.sendall(b"GET / HTTP/1.1\r\nHost: so")
    reset(s)
    counts.add("http reset")


def http_slowloris(port, rng, counts):
    with connect(port) as s:
        head = b"GET / HTTP/1.1\r\nHost: soak\r\nX-Slow: " + b"a" * 64
        try:
            for i in range(len(head)):  # a byte every 50 ms: 3.5 s, over --header-timeout=1
                s.sendall(head[i:i + 1])
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            counts.add("http slowloris")  # cut off while trickling: fine
            return
        answer = s.recv(4096)
        if answer and not answer.startswith(b"HTTP/1.1 408"):
            raise AssertionError(f"slowloris got {answer[:40]!r}, not 408 or a close")
        counts.add("http slowloris")


def http_oversized(port, rng, counts):
    with connect(port) as s, s.makefile("rb") as f:
        s.sendall(b"GET / HTTP/1.1\r\nHost: soak\r\n" + b"X-Big: " + b"b" * 20000 + b"\r\n\r\n")
        status, _ = read_response(f)
        if status != 431:
            raise AssertionError(f"20 KB of headers gave {status}, not 431")
        counts.add("http oversized headers")


def http_garbage(port, rng, counts):
    with connect(port) as s, s.makefile("rb") as f:
        s.sendall(bytes(rng.randrange(1, 256) for _ in range(200)) + b"\r\n\r\n")
        try:
            status, _ = read_response(f)
        except (ConnectionError, ValueError, IndexError):
            counts.add("http garbage")  # closed without a parsable answer: allowed
            return
        if status not in (400, 414, 431, 501):
            raise AssertionError(f"garbage gave {status}")
        counts.add("http garbage")


CLIENTS = {
    "echo": [(echo_good, 6), (echo_reset, 1), (echo_vanish, 1), (echo_slow_reader, 1)],
    "http": [(http_good, 5), (http_pipelined, 2), (http_reset, 1), (http_slowloris, 1),
             (http_oversized, 1), (http_garbage, 1)],
}


def drive(server, port, seconds, clients, seed, counts):
    """Runs `clients` threads picking client kinds until `seconds` pass."""
    deadline = time.monotonic() + seconds
    kinds = [k for k, weight in CLIENTS[server] for _ in range(weight)]

    def loop(index):
        rng = random.Random(seed * 1000 + index)
        while time.monotonic() < deadline:
            kind = rng.choice(kinds)
            try:
                kind(port, rng, counts)
            except Exception as e:  # noqa: BLE001 - every failure of a client is reported
                counts.fail(kind.__name__, f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    return not any(t.is_alive() for t in threads)


def resident_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle(pid, baseline_fds=None, limit=15.0):
    """Waits until the server's fd count stops changing (or reaches the baseline)."""
    deadline = time.monotonic() + limit
    last, stable_since = open_fds(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = open_fds(pid)
        if baseline_fds is not None and now == baseline_fds:
            return now
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since > 2.0 and baseline_fds is None:
            return now
    return open_fds(pid)


def soak_one(build, server, mode_name, mode_args, seconds, clients, seed, wrapper=(),
             check_rss=True):
    exe = os.path.join(build, "examples", f"{server}_server")
    args = [*wrapper, exe, "--port=0", *mode_args]
    if server == "http":
        args += ["--header-timeout=1", "--idle-timeout=2"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    problems = []
    result = {"server": f"{server}_server", "mode": mode_name, "seconds": seconds}
    try:
        line = proc.stdout.readline()
        if not line.startswith("listening on"):
            raise RuntimeError(f"no 'listening on' line: {line!r} {proc.stderr.read()}")
        port = int(line.rsplit(":", 1)[1])
        warm = Counts()
        drive(server, port, min(2.0, seconds / 4), clients, seed + 1, warm)
        fds0 = settle(proc.pid)
        rss0 = resident_kib(proc.pid)
        counts = Counts()
        finished = drive(server, port, seconds, clients, seed, counts)
        fds1 = settle(proc.pid, baseline_fds=fds0)
        rss1 = resident_kib(proc.pid)
        result.update(baseline_fds=fds0, final_fds=fds1, baseline_rss_kib=rss0,
                      final_rss_kib=rss1, exchanges=counts.kinds,
                      bytes_checked=counts.bytes_checked, failures=counts.failures + warm.failures)
        if not finished:
            problems.append("client threads still running after the deadline (a hang)")
        if counts.failures or warm.failures:
            problems.append(f"{len(counts.failures) + len(warm.failures)} client failures: "
                            + "; ".join((warm.failures + counts.failures)[:5]))
        # Fewer fds after than before is not a leak: the server can still hold one of the
        # warm-up's last connections (it has not seen the close yet) when the baseline is taken.
        if fds1 > fds0:
            problems.append(f"fds {fds0} before, {fds1} after")
        if check_rss and rss1 > rss0 + max(rss0 // 4, 4096):
            problems.append(f"RSS {rss0} KiB before, {rss1} KiB after")
        good = sum(n for k, n in counts.kinds.items() if "good" in k or "keep-alive" in k
                   or "pipelined" in k)
        if good == 0:
            problems.append("no good exchange completed")
    except Exception as e:  # noqa: BLE001
        problems.append(f"{type(e).__name__}: {e}")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            problems.append("did not stop within 30 s of SIGINT")
        if proc.returncode != 0:
            problems.append(f"exit status {proc.returncode} after SIGINT: {err[-500:]}")
        # Sanitizers report on stderr; Valgrind (--error-exitcode) through the exit status.
        if "runtime error" in err or "ERROR: AddressSanitizer" in err or "LeakSanitizer" in err:
            problems.append(f"sanitizer report: {err[-800:]}")
    result["problems"] = problems
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", required=True, help="build tree with examples/")
    parser.add_argument("--seconds", type=float, required=True, help="total soak time")
    parser.add_argument("--clients", type=int, default=16, help="client threads per run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write every figure here")
    parser.add_argument("--wrapper", default="",
                        help="run the servers under this command (e.g. valgrind ...); the RSS "
                             "check is then skipped")
    args = parser.parse_args()
    if not 6 <= args.seconds <= 7 * 24 * 3600 or not 1 <= args.clients <= 512:
        parser.print_usage(sys.stderr)
        print("soak: --seconds wants 6 s to a week, --clients 1 to 512", file=sys.stderr)
        return 2
    per_run = args.seconds / (len(MODES) * 2)
    results, failed = [], 0
    started = time.monotonic()
    for server in ("echo", "http"):
        for mode_name, mode_args in MODES:
            r = soak_one(args.build, server, mode_name, mode_args, per_run, args.clients,
                         args.seed, args.wrapper.split(), check_rss=not args.wrapper)
            results.append(r)
            ex = r.get("exchanges", {})
            total = sum(n for k, n in ex.items() if not k.endswith("FAILED"))
            status = "ok  " if not r["problems"] else "FAIL"
            print(f"{status} {r['server']:<12} {mode_name:<15} {per_run:5.1f} s  "
                  f"{total:6d} connections  fds {r.get('baseline_fds')}->{r.get('final_fds')}  "
                  f"RSS {r.get('baseline_rss_kib')}->{r.get('final_rss_kib')} KiB"
                  + ("" if not r["problems"] else "\n     " + "\n     ".join(r["problems"])),
                  flush=True)
            failed += bool(r["problems"])
    connections = sum(n for r in results for k, n in r.get("exchanges", {}).items()
                      if not k.endswith("FAILED"))
    checked = sum(r.get("bytes_checked", 0) for r in results)
    print(f"soak: {len(results)} runs, {time.monotonic() - started:.0f} s, {connections} "
          f"connections, {checked} bytes checked, {failed} failed")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": args.seconds, "clients": args.clients, "seed": args.seed,
                       "runs": results}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
