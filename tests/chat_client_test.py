#!/usr/bin/env python3
"""examples/chat_client driven against examples/chat_server: two clients talk through a room.

  pytest-3 tests/chat_client_test.py --build=build

Each client connects by name ("localhost"), is fed its stdin through a pipe and prints what the
server sends. Every wait is bounded; servers and clients are killed and reaped when a test ends.
Standard library only.
"""
import os
import re
import selectors
import socket
import subprocess
import time
import unittest

from harness import PROGRAMS

WAIT_S = 30.0  # generous for sanitizer builds on busy cores; a passing run takes well under 1 s


class Proc:
    """A child whose stdout is read line by line without blocking."""

    def __init__(self, argv):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.buffer = b""

    def lines(self):
        return self.buffer.decode(errors="replace").splitlines()

    def wait_for(self, pattern, timeout=WAIT_S):
        """Waits until a line of stdout matches `pattern`; returns the match."""
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                for line in self.lines():
                    m = re.search(pattern, line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.argv[0]}: no line matching {pattern!r}; "
                                         f"stdout {self.lines()!r}")
                if sel.select(min(left, 0.5)):
                    chunk = self.proc.stdout.read()
                    if chunk:
                        self.buffer += chunk
                    elif self.proc.poll() is not None:
                        time.sleep(0.01)
        finally:
            sel.close()

    def type(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def end_input(self):
        self.proc.stdin.close()

    def finish(self, timeout=WAIT_S):
        """Waits for the exit; gives (status, stdout lines, stderr)."""
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        os.set_blocking(self.proc.stdout.fileno(), True)
        self.buffer += self.proc.stdout.read()
        err = self.proc.stderr.read()
        return self.proc.returncode, self.lines(), err.decode(errors="replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:  # a broken pipe on stdin: the child is gone anyway
                pass


def wait_refused(port, limit_s=WAIT_S):
    """Waits until 127.0.0.1:port refuses connections. A killed server's listening socket can
    outlive its reaped process for a moment: io_uring tears the ring down (and drops the files
    its requests hold) asynchronously, and a connect in that window is accepted, then reset."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"port {port} still accepts connections {limit_s} s after the kill")


class ChatClient(unittest.TestCase):
    MODE_ARGS = []

    def setUp(self):
        self.procs = []
        self.server = self.start([PROGRAMS.chat_server, "--port", "0", *self.MODE_ARGS])
        self.port = int(self.server.wait_for(r"^listening on \S+:(\d+)$").group(1))

    def tearDown(self):
        for p in self.procs:
            p.kill()

    def start(self, argv):
        p = Proc([str(a) for a in argv])
        self.procs.append(p)
        return p

    def client(self, nick):
        return self.start([PROGRAMS.chat_client, "--host", "localhost", "--port", self.port,
                           "--nick", nick, *self.MODE_ARGS])

    def test_two_clients_talk_and_leave(self):
        alice = self.client("alice")
        alice.wait_for(r"^\* you are now known as alice$")
        bob = self.client("bob")
        bob.wait_for(r"^\* you are now known as bob$")
        alice.wait_for(r"^\* guest\d+ is now known as bob$")
        # Lines both ways, in order, while each client also reads its stdin.
        for i in range(20):
            bob.type(f"hello {i}")
        alice.type("hi bob")
        for i in range(20):
            alice.wait_for(rf"^bob: hello {i}$")
        bob.wait_for(r"^alice: hi bob$")
        alice.type("/who")
        alice.wait_for(r"^\* in lobby: alice bob$")
        # alice's stdin ends: she stops sending, the server closes, she exits 0.
        alice.end_input()
        status, out, err = alice.finish()
        self.assertEqual(status, 0, err)
        self.assertEqual(err, "")
        bob.wait_for(r"^\* alice left lobby")
        # The server closes bob's connection first (/quit): he exits 0 though stdin is open.
        bob.type("/quit")
        bob.wait_for(r"^\* bye bob$")
        self.assertEqual(bob.proc.wait(timeout=WAIT_S), 0, bob.proc.stderr.read())
        # Every line typed arrived exactly once.
        self.assertEqual(sum(1 for l in alice.lines() if l.startswith("bob: hello")), 20)

    def test_unknown_name_and_refused_port(self):
        bad = self.start([PROGRAMS.chat_client, "--host", "no-such-host.invalid", "--port",
                          self.port])
        status, _, err = bad.finish()
        self.assertEqual(status, 1)
        self.assertIn("resolve", err)
        self.server.kill()  # nobody listens on the port any more
        wait_refused(int(self.port))
        refused = self.start([PROGRAMS.chat_client, "--host", "127.0.0.1", "--port", self.port])
        status, _, err = refused.finish()
        self.assertEqual(status, 1)
        self.assertIn("connect", err)

    def test_bad_arguments_exit_2(self):
        for bad in ([], ["--port", "0"], ["--port", "7", "--mode", "bogus"], ["--nope"]):
            p = self.start([PROGRAMS.chat_client, *bad])
            status, _, err = p.finish()
            self.assertEqual(status, 2, (bad, err))
            self.assertIn("usage:", err)


class ChatClientMultiThread(ChatClient):
    MODE_ARGS = ["--mode", "multi-thread", "--workers", "2"]

    # The argument and error cases do not depend on the mode.
    test_unknown_name_and_refused_port = None
    test_bad_arguments_exit_2 = None
