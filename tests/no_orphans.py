#!/usr/bin/env python3
"""Runs a test command and fails when it leaves a process behind.

  python3 tests/no_orphans.py CMD [ARGS...]

Makes itself a child subreaper (PR_SET_CHILD_SUBREAPER), so every process the test starts
that outlives its parent is reparented here rather than to init. After CMD exits, any such
orphan (a zombie nobody reaped, or a process still running) is named with its /proc cmdline on
stderr, killed (SIGKILL, its whole subtree), reaped, and the exit status is 1 (CMD's own status
when it failed). A zombie whose parent is still alive is that parent's business, not an orphan;
a test binary that exits with children unreaped leaves orphans, which are caught here.
./run test runs every test under this wrapper (meson test --wrapper).
"""
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 0.5  # orphans on their way out (a worker that saw end of file) get this long


def ppid_and_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return int(fields[1]), fields[0]
    except (OSError, ValueError, IndexError):
        return None, None


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            text = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        return text or "(no cmdline: a zombie)"
    except OSError:
        return "(gone)"


def adopted():
    """Our children: after CMD was reaped, every one of them is an orphan that came to us."""
    me = os.getpid()
    return [int(p) for p in os.listdir("/proc")
            if p.isdigit() and ppid_and_state(int(p))[0] == me]


def reap_all():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"no_orphans: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}",
              file=sys.stderr)
        return 1
    proc = subprocess.Popen(sys.argv[1:])
    # meson ends a test that runs past its timeout with SIGTERM: pass it on.
    signal.signal(signal.SIGTERM, lambda s, f: proc.send_signal(s))
    rc = proc.wait()
    # Orphans that are exiting on their own (a pool worker that saw end of file) may take a
    # moment; a zombie is reported at once.
    deadline = time.monotonic() + GRACE_S
    orphans = adopted()
    while any(ppid_and_state(p)[1] != "Z" for p in orphans) and time.monotonic() < deadline:
        time.sleep(0.02)
        orphans = adopted()
    if not orphans:
        return rc
    print(f"no_orphans: {len(orphans)} process(es) left behind by {' '.join(sys.argv[1:])}:",
          file=sys.stderr)
    for pid in orphans:
        state = ppid_and_state(pid)[1]
        print(f"no_orphans:   pid {pid} [{'zombie' if state == 'Z' else 'running'}] "
              f"{cmdline(pid)}", file=sys.stderr)
    # Kill what is still running (their own children come to us in turn) until none is left.
    for _ in range(50):
        for pid in adopted():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reap_all()
        if not adopted():
            break
        time.sleep(0.02)
    return rc if rc != 0 else 1


if __name__ == "__main__":
    sys.exit(main())
