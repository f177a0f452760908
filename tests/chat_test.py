#!/usr/bin/env python3
"""Integration tests for examples/chat_server, driven by raw-socket clients over loopback.

  pytest-3 tests/chat_test.py --build=build [-k PATTERN]

(-k MultiThread runs the multi-thread cases only.)
Every server is started with --port 0 and found through its "listening on ADDRESS" line, and is
killed and reaped when its test ends; a sanitizer report or an abort on its stderr fails the test.
The chat tests run once per executor: cooperative, single-lock with 2 workers, multi-thread with
2 and 4 workers (classes ChatCooperative, ChatSingleLock2, ChatMultiThread2, ChatMultiThread4).
Clients are non-blocking sockets served by one selector loop in this thread; every wait is
bounded in time. Standard library only.
"""
import ctypes
import os
import random
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

from harness import PROGRAMS

_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
# Generous for a server built with ASan+UBSan at -O0 on 2 busy cores; a passing run takes a
# fraction of it.
WAIT_S = 30.0


def setUpModule():
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def _die_with_parent():
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # no orphan servers if this test dies


class Server:
    """A chat_server started with --port 0; use as a context manager (kill + reap on exit)."""

    def __init__(self, *args, workers=0):
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        self.argv = [PROGRAMS.chat_server, "--port", "0", *[str(a) for a in args]]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=self.err, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while True:
            m = re.search(r"^listening on (\S+):(\d+)$", self.stdout(), re.M)
            if m:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{' '.join(self.argv)}: no 'listening on' line "
                                     f"(rc {self.proc.returncode}); stderr: {self.stderr()!r}")
            time.sleep(0.01)
        self.addr = (m.group(1), int(m.group(2)))
        # A threaded mode that is silently not in effect would pass every check on one thread.
        while self.threads() < workers and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.threads() < workers:
            self.proc.kill()
            raise AssertionError(f"{self.threads()} threads, not the {workers} workers asked for")

    def _read(self, f):
        f.seek(0)
        return f.read().decode(errors="replace")

    def stdout(self):
        return self._read(self.out)

    def stderr(self):
        return self._read(self.err)

    def threads(self):
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/task"))
        except OSError:
            return 0

    def alive(self):
        return self.proc.poll() is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        err = self.stderr()
        self.out.close()
        self.err.close()
        if exc[0]:  # the server's view helps with the failure
            print(f"\n--- {' '.join(self.argv)}: exit {self.proc.returncode}, stderr:\n"
                  f"{err if len(err) < 6000 else err[:3000] + ' [...] ' + err[-3000:]}---",
                  file=sys.stderr)
        m = re.search(r"^.*(Sanitizer|runtime error:|terminate called|Assertion .* failed).*$",
                      err, re.M)
        if m and not exc[0]:
            raise AssertionError(f"chat_server reported on stderr: {err[m.start():][:3000]}")


class Client:
    """One connection. Lines received are decoded as UTF-8 (strictly: the server promises
    valid UTF-8) and kept in `lines`; `send` queues bytes for the selector loop."""

    def __init__(self, addr, rcvbuf=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(10)
        s.connect(addr)
        s.setblocking(False)
        self.sock = s
        self.inbuf = bytearray()
        self.lines = []
        self.out = bytearray()
        self.eof = False
        self.nick = None
        self.room = "lobby"
        self.mark = 0  # lines before this index belong to earlier phases

    def send(self, data):
        self.out += data.encode() if isinstance(data, str) else data

    def since_mark(self):
        return self.lines[self.mark:]

    def set_mark(self):
        self.mark = len(self.lines)

    def has(self, line):
        return line in self.since_mark()

    def first(self, prefix):
        return next((ln for ln in self.since_mark() if ln.startswith(prefix)), None)

    def messages(self):
        """The chat messages received since the mark: lines that are neither notices nor
        errors."""
        return [ln for ln in self.since_mark() if not ln.startswith(("* ", "error: "))]

    def on_readable(self):
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return
        self.inbuf += data
        *complete, rest = self.inbuf.split(b"\n")
        self.inbuf = bytearray(rest)
        self.lines += [ln.decode() for ln in complete]

    def on_writable(self):
        try:
            n = self.sock.send(self.out)
        except BlockingIOError:
            return
        del self.out[:n]

    def close(self):
        self.sock.close()


def pump(clients, until, what, timeout=WAIT_S):
    """Moves bytes for `clients` until until() holds; fails the test after `timeout` s, showing
    the last lines each client received."""
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    try:
        registered = {}
        while not until():
            if time.monotonic() > deadline:
                seen = "".join(f"\n  {c.nick}: {len(c.lines)} lines, eof={c.eof}, last "
                               f"{[short(ln) for ln in c.lines[-3:]]}" for c in clients[:10])
                raise AssertionError(f"timed out after {timeout} s waiting for {what}{seen}")
            for c in clients:
                events = 0
                if not c.eof:
                    events |= selectors.EVENT_READ
                if c.out:
                    events |= selectors.EVENT_WRITE
                old = registered.get(c)
                if old == events:
                    continue
                if old:
                    sel.unregister(c.sock)
                if events:
                    sel.register(c.sock, events, c)
                registered[c] = events
            for key, events in sel.select(timeout=0.05):
                if events & selectors.EVENT_WRITE:
                    key.data.on_writable()
                if events & selectors.EVENT_READ:
                    key.data.on_readable()
    finally:
        sel.close()


def short(text, limit=80):
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} long)"


def greet(clients):
    pump(clients, lambda: all(c.lines for c in clients), "the greetings")
    for c in clients:
        m = re.fullmatch(r"\* welcome, you are (\S+) in lobby; commands: .*", c.lines[0])
        assert m, f"unexpected greeting {c.lines[0]!r}"
        c.nick = m.group(1)


def join(clients, room):
    """Moves every client of `clients` to `room` (from different rooms or not) and waits for
    each to be told, and for the notices of the others' moves to arrive."""
    for c in clients:
        c.set_mark()
        c.send(f"/join {room}\n")
    pump(clients, lambda: all(c.has(f"* you are now in {room}") for c in clients),
         f"/join {room}")
    for c in clients:
        c.room = room
    who_barrier(clients)


def who_answers(c):
    return [ln for ln in c.since_mark() if ln.startswith("* in ")]


def who_barrier(clients):
    """Each client asks /who and waits for the answer: whatever the server queued for a client
    before it handled that client's /who arrived before the answer, and every line the client
    sent before was handled. Stops early when a connection closes. Gives {client: answer}."""
    before = {c: len(who_answers(c)) for c in clients}
    for c in clients:
        c.send("/who\n")
    pump(clients, lambda: all(c.eof or len(who_answers(c)) > before[c] for c in clients),
         "the /who answers")
    closed = [c.nick for c in clients if c.eof]
    assert not closed, f"connections closed by the server: {closed}"
    return {c: who_answers(c)[-1] for c in clients}


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def read_to_eof(sock, timeout):
    """Everything `sock` receives until the peer closes; fails on a timeout."""
    sock.setblocking(True)
    sock.settimeout(timeout)
    parts = []
    try:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            parts.append(data)
    except ConnectionResetError:
        pass
    return b"".join(parts)


class ChatModes:
    """The chat tests, run once per executor by the subclasses below."""

    MODE_ARGS = []
    WORKERS = 0

    def server(self, *args):
        return Server(*args, *self.MODE_ARGS, workers=self.WORKERS)

    def test_hundred_clients(self):
        rooms = ["r0", "r1", "r2", "r3"]
        # The server keeps its default queue of 256 lines: the most queued for one client in a
        # phase (24 joins, then 24 senders x 8 messages) fit even if its writer got no CPU.
        per_client = 8
        with self.server() as srv:
            clients = []
            try:
                clients = [Client(srv.addr) for _ in range(100)]
                greet(clients)
                self.assertEqual(len({c.nick for c in clients}), 100, "default nicks are unique")
                for i, room in enumerate(rooms):
                    join(clients[i::len(rooms)], room)
                members = {r: [c for c in clients if c.room == r] for r in rooms}

                # Every client sends its messages at once; the selector loop interleaves them.
                for c in clients:
                    c.set_mark()
                    for k in range(per_client):
                        c.send(f"msg {c.nick} {k} {c.room} héllo ✓ {'x' * (k * 7)}\n")

                # Once every sender has its answer to /who, all the messages were handled and
                # queued for their receivers; once every receiver has its answer to the next
                # /who, it has received them all. No waiting for counts: a lost message fails
                # at once, not at a timeout.
                who_barrier(clients)
                answers = who_barrier(clients)
                by_nick = {c.nick: c for c in clients}
                for c in clients:
                    expected_members = sorted(m.nick for m in members[c.room])
                    self.assertEqual(answers[c], f"* in {c.room}: {' '.join(expected_members)}")
                    got = {}
                    for line in c.messages():
                        sender, sep, text = line.partition(": ")
                        self.assertTrue(sep, f"{c.nick} got an odd line {line!r}")
                        self.assertIn(sender, by_nick, f"{c.nick} got {line!r}")
                        self.assertNotEqual(sender, c.nick, f"{c.nick} got its own {line!r}")
                        self.assertEqual(by_nick[sender].room, c.room,
                                         f"{c.nick} in {c.room} got {line!r} from another room")
                        got.setdefault(sender, []).append(text)
                    for m in members[c.room]:
                        if m is c:
                            continue
                        want = [f"msg {m.nick} {k} {m.room} héllo ✓ {'x' * (k * 7)}"
                                for k in range(per_client)]
                        self.assertEqual(got.get(m.nick), want,
                                         f"{c.nick} gets {m.nick}'s messages once each, in order")

                # /nick: the room is told; a taken nick is refused and changes nothing.
                r0, r1, r2 = members["r0"], members["r1"], members["r2"]
                alice, refused, quitter = r0[0], r1[0], r2[0]
                for c in clients:
                    c.set_mark()
                old_alice = alice.nick
                alice.send("/nick alice\n")
                pump(clients, lambda: alice.has("* you are now known as alice"), "/nick alice")
                alice.nick = "alice"
                refused.send("/nick alice\n")
                pump(clients, lambda: refused.has("error: nick 'alice' is taken"),
                     "the refusal of a taken nick")
                refused.send("after a refused rename\n")
                pump(clients, lambda: r1[1].has(f"{refused.nick}: after a refused rename"),
                     "a message after a refused rename, under the old nick")
                # /join: both rooms are told, and messages follow the client.
                alice.send("/join r1\n")
                pump(clients, lambda: alice.has("* you are now in r1"), "/join r1")
                alice.send("hello r1\n")
                pump(clients, lambda: r1[1].has("alice: hello r1"), "a message after /join")
                # /quit: a goodbye, end of stream, and the room is told.
                quitter.send("/quit\n")
                pump(clients, lambda: quitter.eof, "end of stream after /quit")
                self.assertEqual(quitter.since_mark(), [f"* bye {quitter.nick}"])
                pump(clients, lambda: r2[1].has(f"* {quitter.nick} left r2 (quit)"),
                     "the room told of the /quit")

                # Exactly what each client saw, in order: nothing from another room, nothing
                # twice, nothing missing.
                alive = [c for c in clients if c is not quitter]
                alice.room = "r1"
                answers = who_barrier(alive)
                for c in alive:
                    room_now = sorted(m.nick for m in alive if m.room == c.room)
                    if c is alice:
                        want = ["* you are now known as alice", "* you are now in r1"]
                    elif c is refused:
                        want = ["error: nick 'alice' is taken", "* alice joined r1",
                                "alice: hello r1"]
                    elif c.room == "r0":
                        want = [f"* {old_alice} is now known as alice",
                                "* alice left r0 (joined r1)"]
                    elif c.room == "r1":
                        want = [f"{refused.nick}: after a refused rename", "* alice joined r1",
                                "alice: hello r1"]
                    elif c.room == "r2":
                        want = [f"* {quitter.nick} left r2 (quit)"]
                    else:
                        want = []
                    want.append(f"* in {c.room}: {' '.join(room_now)}")
                    self.assertEqual(c.since_mark(), want, f"what {c.nick} in {c.room} saw")
                self.assertTrue(srv.alive())
            finally:
                for c in clients:
                    c.close()

    def test_slow_reader(self):
        queue = 16
        with self.server("--queue-limit", queue) as srv:
            slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up quickly
            clients = []
            try:
                slow.settimeout(WAIT_S)
                slow.connect(srv.addr)
                slow.sendall(b"/join slow\n")
                got = b""
                while b"* you are now in slow\n" not in got:  # then it stops reading
                    data = slow.recv(4096)
                    self.assertTrue(data, "the slow client's /join answered")
                    got += data
                witness = Client(srv.addr, rcvbuf=1 << 21)
                flooder = Client(srv.addr)
                clients = [witness, flooder]
                greet(clients)
                join(clients, "slow")
                for c in clients:
                    c.set_mark()
                # The flooder talks; the witness reads everything; the slow client reads nothing.
                # The flood comes in bursts shorter than the queue, each read by the witness
                # before the next, so that the witness, whose writer task may not get a CPU
                # during a burst, never has a full queue.
                line = "y" * 4000
                sent = 0
                while "too slow" not in srv.stderr():
                    self.assertLess(sent, 10000, "the slow client is disconnected")
                    for _ in range(queue // 2):
                        flooder.send(f"{sent} {line}\n")
                        sent += 1
                    pump(clients, lambda: len(witness.messages()) == sent,
                         "the witness keeping up with the flood")
                # The slow client gets the reason once it reads, then end of stream.
                data = read_to_eof(slow, WAIT_S)
                self.assertTrue(
                    data.endswith(f"* disconnected: too slow (queue of {queue} lines full)\n"
                                  .encode()), f"the slow client's last bytes: {data[-200:]!r}")
                log = [ln for ln in srv.stderr().splitlines() if "too slow" in ln]
                self.assertEqual(len(log), 1, f"one line on stderr per disconnect: {log}")
                self.assertRegex(log[0], rf"disconnected guest\d+ \(127\.0\.0\.1:\d+\): too slow "
                                 rf"\(queue of {queue} lines full\)")
                slow_nick = re.search(r"disconnected (\S+)", log[0]).group(1)
                pump(clients, lambda: witness.has(f"* {slow_nick} left slow (too slow)"),
                     "the room told of the disconnect")
                # The others go on: every line of the flood reached the witness, in order.
                for _ in range(queue // 2):
                    flooder.send(f"{sent} {line}\n")
                    sent += 1
                pump(clients, lambda: len(witness.messages()) == sent, "the rest of the flood")
                self.assertEqual(witness.messages(),
                                 [f"{flooder.nick}: {k} {line}" for k in range(sent)])
                self.assertTrue(srv.alive())
            finally:
                slow.close()
                for c in clients:
                    c.close()

    def test_bad_input(self):
        with self.server() as srv:
            clients = []
            try:
                actor, peer, long1, long2, resetter = clients = [Client(srv.addr)
                                                                 for _ in range(5)]
                greet(clients)
                join(clients, "bad")
                for c in clients:
                    c.set_mark()
                errors = [
                    ("/frobnicate now", "error: unknown command '/frobnicate' (try /help)"),
                    ("/", "error: unknown command '/' (try /help)"),
                    ("/nick", "error: usage: /nick NAME"),
                    ("/nick a b", "error: usage: /nick NAME"),
                    ("/join", "error: usage: /join ROOM"),
                    ("/who me", "error: /who takes no argument"),
                    ("/join bad", "error: already in bad"),
                    (f"/nick {actor.nick}", f"error: you are {actor.nick} already"),
                ]
                invalid = ["x" * 33, "bad!name", "dot.ted", "café", "../etc", "a\tb"]
                errors += [(f"/nick {n}", f"error: invalid name '{n}'") for n in invalid]
                errors += [(f"/join {n}", f"error: invalid name '{n}'") for n in invalid]
                for command, _ in errors:
                    actor.send(command + "\n")
                pump(clients, lambda: sum(ln.startswith("error: ")
                                          for ln in actor.since_mark()) == len(errors),
                     "an error line per bad command")
                for (command, want), got in zip(errors, actor.since_mark()):
                    self.assertTrue(got.startswith(want), f"{command!r} answered {got!r}")

                # CR LF and LF both end a line; empty lines are ignored; bad bytes are replaced.
                actor.send(b"crlf\r\n\n\r\nlf\n")
                actor.send(b"\xff\xfe\x00 caf\xc3\xa9 \xed\xa0\x80 \xc0\xaf \x1b[2J \xe2\x82 end\n")
                garbage = random.Random(7).randbytes(8192)
                garbage = garbage.replace(b"/", b"_")  # messages, not commands
                actor.send(garbage + b"\n")
                pump(clients, lambda: peer.has(f"{actor.nick}: lf"), "lines after CR LF")
                self.assertEqual(peer.since_mark()[:2], [f"{actor.nick}: crlf",
                                                         f"{actor.nick}: lf"])
                n_garbage = sum(1 for ln in garbage.split(b"\n") if ln.rstrip(b"\r"))
                pump(clients, lambda: len(peer.messages()) >= 3 + n_garbage, "the garbage")
                mangled = peer.messages()[2]
                self.assertEqual(mangled, f"{actor.nick}: \ufffd\ufffd\ufffd café \ufffd\ufffd\ufffd"
                                 " \ufffd\ufffd \ufffd[2J \ufffd\ufffd end")
                for line in peer.messages():
                    self.assertFalse(re.search(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]", line),
                                     f"no control characters reach the peer: {line!r}")

                # An overlong line: an error, then the connection closes; a line of exactly
                # --max-line bytes is fine.
                long1.send("z" * 4096 + "\r\n")
                pump(clients, lambda: peer.has(f"{long1.nick}: {'z' * 4096}"),
                     "a line of 4096 bytes")
                long1.send("z" * 5000 + "\n")
                long2.send("w" * 6000)  # no line end at all
                pump(clients, lambda: long1.eof and long2.eof, "overlong lines closing")
                for c in (long1, long2):
                    self.assertEqual(c.since_mark()[-1],
                                     "error: line longer than 4096 bytes; closing the connection")
                    pump([actor, peer], lambda: peer.has(f"* {c.nick} left bad (line too long)"),
                         "the room told of the overlong line")
                # A reset ends that connection only; the room is told.
                rst_close(resetter.sock)
                pump([actor, peer], lambda: peer.has(f"* {resetter.nick} left bad "
                                                     "(connection closed)"), "the reset told")

                # The server goes on: old connections and a new one.
                actor.send("still here\n")
                pump([actor, peer], lambda: peer.has(f"{actor.nick}: still here"),
                     "a message after the bad input")
                fresh = Client(srv.addr)
                clients.append(fresh)
                greet([fresh])
                self.assertEqual(who_barrier([peer])[peer],
                                 f"* in bad: {' '.join(sorted([actor.nick, peer.nick]))}")
                self.assertTrue(srv.alive())
            finally:
                for c in clients:
                    c.close()

    def test_sigterm_with_clients(self):
        with self.server("--drain-timeout", 10) as srv:
            clients = []
            try:
                clients = [Client(srv.addr) for _ in range(5)]
                greet(clients)
                join(clients[:2], "elsewhere")
                # One more client that never reads; entered before the signal (a connection
                # still in the listener's queue would be closed without a word).
                silent = socket.create_connection(srv.addr, timeout=10)
                silent.sendall(b"/nick silent\n")
                pump(clients, lambda: any(ln.endswith(" is now known as silent")
                                          for ln in clients[2].lines), "the silent client in")
                clients[0].send("a message in flight\n")
                pump(clients, lambda: clients[1].has(f"{clients[0].nick}: a message in flight"),
                     "a message before the signal")
                start = time.monotonic()
                srv.proc.send_signal(signal.SIGTERM)
                rc = srv.proc.wait(timeout=WAIT_S)
                took = time.monotonic() - start
                self.assertEqual(rc, 0, "exit status after SIGTERM")
                self.assertLess(took, 3.0, "idle connections do not hold the drain")
                pump(clients, lambda: all(c.eof for c in clients), "every connection closed")
                for c in clients:
                    self.assertEqual(c.lines[-1], "* server shutting down")
                self.assertTrue(read_to_eof(silent, 5).endswith(b"* server shutting down\n"))
                silent.close()
            finally:
                for c in clients:
                    c.close()


class ChatCooperative(ChatModes, unittest.TestCase):
    pass


class ChatSingleLock2(ChatModes, unittest.TestCase):
    MODE_ARGS = ["--mode", "single-lock", "--workers", "2"]
    WORKERS = 2


class ChatMultiThread2(ChatModes, unittest.TestCase):
    MODE_ARGS = ["--mode", "multi-thread", "--workers", "2"]
    WORKERS = 2


class ChatMultiThread4(ChatModes, unittest.TestCase):
    MODE_ARGS = ["--mode", "multi-thread", "--workers", "4"]
    WORKERS = 4


class CommandLine(unittest.TestCase):
    def run_server(self, *args):
        return subprocess.run([PROGRAMS.chat_server, *args], capture_output=True, timeout=10,
                              preexec_fn=_die_with_parent)

    def test_bad_arguments(self):
        for bad in (["--port", "70000"], ["--bogus"], ["--mode", "nope"], ["--port"],
                    ["--queue-limit", "0"], ["--queue-limit", "abc"], ["--max-line", "5"],
                    ["--drain-timeout=-5"], ["--host", "localhost"], ["extra"]):
            with self.subTest(args=bad):
                r = self.run_server(*bad)
                self.assertEqual(r.returncode, 2)
                self.assertIn("usage", r.stderr.decode().lower())

    def test_help(self):
        r = self.run_server("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("--queue-limit", r.stdout.decode())
