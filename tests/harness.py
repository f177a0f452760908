"""What the Python suites share: the tree under test, its programs, free ports, and servers that
are always killed and checked for orphans. conftest.py fills OPTIONS from pytest's command line
(`--build DIR`, `--source DIR`); a suite reads them through PROGRAMS and the fixtures."""
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

OPTIONS = {}  # set by conftest.pytest_configure: build, source


def build_dir():
    if not OPTIONS.get("build"):
        raise RuntimeError("run the suite with pytest --build BUILD_DIR (the tree under test)")
    return Path(OPTIONS["build"]).resolve()


def source_dir():
    return Path(OPTIONS.get("source") or Path(__file__).resolve().parent.parent).resolve()


class Programs:
    """The build tree's programs by name: PROGRAMS.echo_server is build/examples/echo_server,
    PROGRAMS.no_uring build/tests/no_uring (the test helper that fakes a refused ring)."""

    HELPERS = {"no_uring": "tests"}

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return str(build_dir() / self.HELPERS.get(name, "examples") / name)


PROGRAMS = Programs()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    """The pids below `pid` in the process tree, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.append(c)
            todo.append(c)
    return found


def session_members(sid):
    """The live pids of session `sid` (a server started with start_new_session=True)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry))
    return found


class ServerProcess:
    """A server started in a session of its own, up once it printed `listening on ADDR`.
    stop() (or leaving the `with`) ends it; leftovers of its session (pool workers, children)
    are killed and reported, so a test that leaves a process behind fails."""

    def __init__(self, argv, startup_s=10.0, env=None, **popen):
        self.argv = [str(a) for a in argv]
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=True, **popen)
        self.pid = self.proc.pid
        line = self._first_line(startup_s)
        m = re.match(r"listening on (\S+)", line)
        if not m:
            self.kill()
            raise AssertionError(f"{' '.join(self.argv)}: no 'listening on' line, got "
                                 f"{line!r}; stderr: {self.proc.stderr.read()!r}")
        host, _, port = m.group(1).rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)

    def _first_line(self, startup_s):
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=startup_s):
            return ""
        return self.proc.stdout.readline()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self, sig=signal.SIGINT, timeout=20):
        """Sends `sig`, waits; returns (exit status, stdout, stderr). Kills on a timeout."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            out, err = self.proc.communicate()
            raise AssertionError(f"{' '.join(self.argv)} ignored signal {sig} for {timeout} s")
        return self.proc.returncode, out, err

    def orphans(self, grace_s=2.0):
        """Kills what is left of the server's session after grace_s; returns those pids."""
        deadline = time.monotonic() + grace_s
        left = session_members(self.pid)
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = session_members(self.pid)
        if left:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
        return left

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        left = self.orphans()
        if left and exc[0] is None:
            raise AssertionError(f"{' '.join(self.argv)} left processes behind: {left}")


def positive(value, what):
    """Asserts a figure is a number above zero (a smoke test checks plumbing, never speed)."""
    assert isinstance(value, (int, float)) and value > 0, (what, value)


def run_driver(script, out, *args, timeout=120):
    """Runs bench/SCRIPT --build BUILD --quick ARGS --out OUT under this python3; asserts it
    exited 0 and returns (the completed process, the JSON it wrote)."""
    import json
    import sys
    r = subprocess.run([sys.executable, str(source_dir() / "bench" / script), "--build",
                        str(build_dir()), "--quick", *map(str, args), "--out", str(out)],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    return r, json.loads(Path(out).read_text())


def refused(argv, timeout=30):
    """Asserts argv exits 2 (bad arguments are refused, not ignored)."""
    bad = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    assert bad.returncode == 2, (argv, bad.returncode, bad.stderr)


class EndOfStream(ConnectionError, EOFError):
    """The peer closed before the bytes a test waited for (both an EOFError and a
    ConnectionError, so either kind of handler sees it)."""


def recv_exact(s, n, chunk=1 << 20):
    """Exactly n bytes from socket s, or EndOfStream naming how many came."""
    parts, got = [], 0
    while got < n:
        b = s.recv(min(n - got, chunk))
        if not b:
            raise EndOfStream(f"end of stream after {got} of {n} bytes")
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def reset(s):
    """Closes s with an RST (SO_LINGER 0): a peer that vanishes mid-conversation."""
    import struct
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
