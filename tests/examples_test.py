#!/usr/bin/env python3
"""Integration tests: run the example programs as a user would and check what they print.

usage: pytest-3 tests/examples_test.py --build=DIR"""
import ctypes
import os
import re
import signal
import subprocess
import time
import unittest

from harness import PROGRAMS as ARGS, descendants

PR_SET_CHILD_SUBREAPER = 36


def run(*cmd, timeout=60):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)


def wall_s(stdout):
    last = stdout.strip().splitlines()[-1]
    match = re.fullmatch(r"wall_s=([0-9.]+)", last)
    assert match, f"last line is not wall_s=...: {last!r}"
    return float(match.group(1))


class Hello(unittest.TestCase):
    """The tutorial's first program: ten 100 ms sleeps overlap on every mode."""

    def test_every_mode(self):
        for mode, workers, most_threads in (("cooperative", 1, 1), ("single-lock", 2, 2),
                                            ("multi-thread", 2, 2)):
            with self.subTest(mode=mode):
                r = run(ARGS.hello, f"--mode={mode}", f"--workers={workers}")
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertIn(f"on mode={mode}", r.stdout)
                self.assertIn("sum of squares = 385 (expected 385)", r.stdout)
                threads = int(re.search(r"ran on (\d+) OS thread", r.stdout).group(1))
                self.assertTrue(1 <= threads <= most_threads, r.stdout)
                # Ten sleeps of 100 ms, together: about 0.1 s, never a second.
                self.assertGreaterEqual(wall_s(r.stdout), 0.099)
                self.assertLess(wall_s(r.stdout), 0.9)

    def test_processes_and_bad_options_exit_2(self):
        for bad in (["--mode=processes"], ["--mode=bogus"], ["--workers=0"], ["--nope"]):
            r = run(ARGS.hello, *bad)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn("usage:", r.stderr)


class Threading(unittest.TestCase):
    """The seed's threading module: spawn/join, mutex, event and semaphore keep the balance."""

    def test_every_mode(self):
        for mode, workers in (("cooperative", 1), ("single-lock", 2), ("multi-thread", 2),
                              ("multi-thread", 4)):
            with self.subTest(mode=mode, workers=workers):
                r = run(ARGS.threading, f"--mode={mode}", f"--workers={workers}", "--tasks=16",
                        "--deposits=500", "--tellers=3")
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("balance=8000 (expected 8000)", r.stdout)
                most = int(re.search(r"at most (\d+) deposit", r.stdout).group(1))
                self.assertTrue(1 <= most <= 3, r.stdout)
                wall_s(r.stdout)

    def test_bad_options_exit_2(self):
        for bad in (["--tasks=0"], ["--tellers=0"], ["--mode=processes"], ["--mode=x"],
                    ["--workers=5000"], ["--deposits=-1"]):
            r = run(ARGS.threading, *bad)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn("threading:", r.stderr)


class Loops(unittest.TestCase):
    def test_two_loops_overlap_on_every_mode(self):
        # The modes run in parallel (each takes 4 s of sleeping), to keep the suite short.
        modes = (["--mode=cooperative"], ["--mode=single-lock", "--workers=4"],
                 ["--mode=multi-thread", "--workers=2"])
        start = time.monotonic()
        procs = [(m, subprocess.Popen([str(ARGS.loops), *m], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)) for m in modes]
        for mode, p in procs:
            out, err = p.communicate(timeout=60)
            with self.subTest(mode=mode):
                self.assertEqual(p.returncode, 0, err)
                lines = out.splitlines()
                # Both loops start before either finishes, and loop 2 (2 s) finishes first.
                order = [l.split(" at:")[0] for l in lines if " at:" in l]
                self.assertEqual(order, ["Starting", "Start loop 1", "Start loop 2",
                                         "Loop 2 done", "Loop 1 done", "All tasks done"])
                # About 4 s, not 6 s: the sleeps overlap. Generous bound for a loaded machine.
                self.assertGreaterEqual(wall_s(out), 3.99)
                self.assertLess(wall_s(out), 5.5)
        self.assertLess(time.monotonic() - start, 8)

    def test_bad_arguments_exit_2_with_usage(self):
        for bad in (["--mode=bogus"], ["--workers=0"], ["--frobnicate"], ["--mode"]):
            r = run(ARGS.loops, *bad)
            self.assertEqual(r.returncode, 2, bad)
            self.assertIn("usage:", r.stderr)

    def test_processes_mode_is_a_clear_error(self):
        # --mode=processes runs functions in a process pool, not a task.
        r = run(ARGS.loops, "--mode=processes", "--workers=2")
        self.assertEqual(r.returncode, 2)
        self.assertIn("not available", r.stderr)
        self.assertIn("process pool", r.stderr)

    def test_help(self):
        r = run(ARGS.loops, "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage:", r.stdout)


class Countdown(unittest.TestCase):
    def test_every_mode(self):
        for mode, workers in (("sequential", 1), ("cooperative", 1), ("cooperative", 4),
                              ("multi-thread", 2), ("multi-thread", 4), ("single-lock", 2),
                              ("single-lock", 3)):
            r = run(ARGS.countdown, f"--mode={mode}", f"--workers={workers}", "--count=20000000",
                    "--switch-interval=1ms")
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.strip().splitlines()
            self.assertEqual(len(lines), 3 if mode == "single-lock" else 2, r.stdout)
            self.assertIn(f"mode={mode}", lines[0])
            if mode == "sequential":
                self.assertNotIn("workers", lines[0])  # sequential has no workers
            self.assertIn("countdown of 20000000", lines[0])
            if mode == "single-lock":
                # The lock's story comes before the last line.
                stats = dict(kv.split("=") for kv in lines[1].split()[1:])
                self.assertEqual(stats["gil"], "interval")
                for key in ("switches", "forced_switches", "drop_requests", "lock_wait_s"):
                    self.assertIn(key, stats)
                self.assertGreaterEqual(float(stats["lock_wait_s"]), 0.0)
            self.assertGreater(wall_s(r.stdout), 0.0)

    def test_old_gil(self):
        r = run(ARGS.countdown, "--mode=single-lock", "--workers=2", "--count=1000000",
                "--gil=ticks:100")
        self.assertEqual(r.returncode, 0, r.stderr)
        stats = dict(kv.split("=") for kv in r.stdout.splitlines()[1].split()[1:])
        self.assertEqual(stats["gil"], "ticks:100")
        self.assertEqual(int(stats["releases_at_check"]), 1000000 // 100)
        self.assertEqual(int(stats["drop_requests"]), 0)

    def test_bad_arguments_exit_2(self):
        for bad in (["--mode=threads"], ["--workers=0"], ["--count=-5"], ["--count=abc"],
                    ["--unknown"], ["--workers=2000"], ["--gil=ticks:0"], ["--gil=new"],
                    ["--switch-interval=5h"], ["--switch-interval=-1ms"],
                    ["--switch-interval=0"], ["--switch-interval=0ms"]):
            r = run(ARGS.countdown, *bad)
            self.assertEqual(r.returncode, 2, (bad, r.stdout, r.stderr))
            self.assertIn("usage:", r.stderr, bad)

    def test_processes_mode_counts_in_worker_processes(self):
        for method in ("spawn", "fork"):
            r = run(ARGS.countdown, "--mode=processes", "--workers=3", "--count=1000001",
                    "--start-method=" + method)
            self.assertEqual(r.returncode, 0, (method, r.stdout, r.stderr))
            self.assertIn("mode=processes workers=3", r.stdout)
            self.assertRegex(r.stdout.splitlines()[-1], r"^wall_s=\d+\.\d+$")
        r = run(ARGS.countdown, "--mode=processes", "--start-method=vfork")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--start-method", r.stderr)

    def test_killed_mid_run_its_workers_end_with_it(self):
        # weft installs no handler in processes mode: SIGINT/SIGTERM kill the parent at their
        # default action; its workers, mid-job, must not compute on as orphans. This process
        # becomes their subreaper, so the orphans come to it: it sees them end and reaps them.
        libc = ctypes.CDLL(None, use_errno=True)
        self.assertEqual(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0)
        try:
            for method in ("spawn", "fork"):
                for sig in (signal.SIGINT, signal.SIGTERM):
                    with self.subTest(method=method, signal=sig.name):
                        self.kill_mid_run(method, sig)
        finally:
            libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)

    def kill_mid_run(self, method, sig):
        p = subprocess.Popen([ARGS.countdown, "--mode=processes", "--workers=2",
                              "--count=400000000000", "--start-method=" + method],
                             stdout=subprocess.DEVNULL)
        workers = []
        try:
            # Two workers (spawn), or the fork server and two workers (fork), all counting.
            want = 2 if method == "spawn" else 3
            deadline = time.monotonic() + 20
            while len(workers) < want and time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.02)
                workers = descendants(p.pid)
            self.assertEqual(len(workers), want, f"{method}: the pool's processes started")
            time.sleep(0.2)
            p.send_signal(sig)
            self.assertEqual(p.wait(10), -sig, "the parent dies of the signal")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        # Within 5 s every worker has ended (the bound is generous: it takes milliseconds).
        left, deadline = set(workers), time.monotonic() + 5
        while left and time.monotonic() < deadline:
            for pid in list(left):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        left.discard(pid)  # an orphan that came to us, reaped
                        continue
                except ChildProcessError:  # not ours: gone, or still the fork server's child
                    pass
                if not os.path.exists(f"/proc/{pid}"):
                    left.discard(pid)
            time.sleep(0.02)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        self.assertEqual(left, set(), f"{method}: workers alive 5 s after the parent died")

    def test_help_shows_defaults(self):
        r = run(ARGS.countdown, "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("=sequential", r.stdout)
        self.assertIn("=1000000000", r.stdout)


class ProducerConsumer(unittest.TestCase):
    ORDERS = {"fifo": "3 1 4 5 2", "lifo": "2 5 4 1 3", "priority": "1 2 3 4 5"}

    def test_every_queue_kind_on_every_mode(self):
        for mode, workers in (("cooperative", 1), ("multi-thread", 2), ("multi-thread", 4),
                              ("single-lock", 2)):
            r = run(ARGS.producer_consumer, f"--mode={mode}", f"--workers={workers}",
                    "--items=20000", "--producers=3", "--consumers=3", "--thread-producers=2",
                    "--maxsize=8")
            with self.subTest(mode=mode, workers=workers):
                self.assertEqual(r.returncode, 0, r.stderr)
                lines = r.stdout.strip().splitlines()
                for kind, order in self.ORDERS.items():
                    self.assertIn(f"{kind}: put 3 1 4 5 2, got {order}", lines)
                    summary = [l for l in lines if l.startswith(f"{kind}: items=")]
                    self.assertEqual(len(summary), 1, r.stdout)
                    fields = dict(kv.split("=") for kv in summary[0].split()[1:])
                    # Every item arrived exactly once, through a queue bounded at 8 shared by
                    # tasks and plain threads.
                    self.assertEqual(fields["consumed"], "20000")
                    self.assertEqual(fields["exact"], "yes")
                self.assertGreater(wall_s(r.stdout), 0.0)

    def test_unbounded_and_single_kind(self):
        r = run(ARGS.producer_consumer, "--queue=lifo", "--maxsize=0", "--items=1000",
                "--thread-producers=0", "--producers=1", "--consumers=1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("lifo: put 3 1 4 5 2, got 2 5 4 1 3", r.stdout)
        self.assertNotIn("fifo:", r.stdout)
        self.assertIn("exact=yes", r.stdout)

    def test_bad_arguments_exit_2(self):
        for bad in (["--queue=stack"], ["--mode=processes"], ["--items=-1"], ["--consumers=0"],
                    ["--producers=0", "--thread-producers=0"], ["--maxsize=-3"], ["--nope"]):
            r = run(ARGS.producer_consumer, *bad)
            self.assertEqual(r.returncode, 2, (bad, r.stdout, r.stderr))
            self.assertIn("usage:", r.stderr, bad)


class Pipeline(unittest.TestCase):
    SUMMARY = re.compile(r"pipeline: fed (\d+) lines \((\d+) bytes\) to '(.*)', "
                         r"read (\d+) lines \((\d+) bytes\) back: (.*)")

    def summary(self, stdout):
        match = self.SUMMARY.fullmatch(stdout.splitlines()[0])
        self.assertTrue(match, stdout)
        return match.groups()

    def test_sort_on_every_mode(self):
        for mode, workers, lines in (("cooperative", 1, 1000), ("multi-thread", 2, 1000),
                                     ("multi-thread", 4, 5000), ("single-lock", 2, 1000),
                                     ("cooperative", 1, 100000)):
            r = run(ARGS.pipeline, f"--mode={mode}", f"--workers={workers}", f"--lines={lines}")
            with self.subTest(mode=mode, workers=workers, lines=lines):
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stderr, "")
                fed, fed_bytes, program, got, got_bytes, status = self.summary(r.stdout)
                self.assertEqual((fed, got, program), (str(lines), str(lines), "sort"))
                self.assertEqual(fed_bytes, got_bytes)
                self.assertEqual(status, "exit code 0")
                out_lines = r.stdout.strip().splitlines()
                self.assertIn("sorted=yes complete=yes", out_lines)
                self.assertIn(f"mode={mode}", r.stdout)
                self.assertGreater(wall_s(r.stdout), 0.0)

    def test_words_depend_on_the_seed_only(self):
        a = run(ARGS.pipeline, "--lines=500", "--seed=7")
        b = run(ARGS.pipeline, "--lines=500", "--seed=7", "--mode=multi-thread")
        c = run(ARGS.pipeline, "--lines=500", "--seed=8")
        for r in (a, b, c):
            self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.summary(a.stdout)[1], self.summary(b.stdout)[1])
        self.assertNotEqual(self.summary(a.stdout)[1], self.summary(c.stdout)[1])

    def test_feeding_and_reading_are_concurrent(self):
        # cat echoes as it reads: 200000 lines (1.5 MB) would fill both pipes and deadlock if
        # the feeder and the reader took turns. The order is not sorted, so exit 1, but every
        # line comes back.
        for mode in ("cooperative", "multi-thread", "single-lock"):
            r = run(ARGS.pipeline, f"--mode={mode}", "--program=cat", "--lines=200000",
                    timeout=60)
            with self.subTest(mode=mode):
                self.assertEqual(r.returncode, 1, r.stderr)
                fed, _, program, got, _, status = self.summary(r.stdout)
                self.assertEqual((fed, got, program, status), ("200000", "200000", "cat",
                                                               "exit code 0"))
                self.assertIn("sorted=NO complete=yes", r.stdout)

    def test_program_that_cannot_start_is_one_clear_error(self):
        for mode in ("cooperative", "multi-thread", "single-lock"):
            for program in ("/nonexistent", "weft-no-such-program-4f1c9a"):
                r = run(ARGS.pipeline, f"--mode={mode}", f"--program={program}")
                with self.subTest(mode=mode, program=program):
                    self.assertEqual(r.returncode, 1, (r.stdout, r.stderr))
                    self.assertEqual(r.stdout, "")
                    self.assertEqual(r.stderr.strip().splitlines(),
                                     [f"pipeline: cannot start '{program}': spawn: "
                                      "No such file or directory"])

    def test_failing_child_is_exit_1(self):
        r = run(ARGS.pipeline, "--program=false")
        self.assertEqual(r.returncode, 1)
        self.assertIn("pipeline: 'false' failed: exit code 1", r.stderr)
        self.assertNotIn("terminate", r.stderr)

    def test_bad_arguments_exit_2(self):
        for bad in (["--lines=-1"], ["--lines=abc"], ["--mode=bogus"], ["--workers=0"],
                    ["--program="], ["--nope"]):
            r = run(ARGS.pipeline, *bad)
            self.assertEqual(r.returncode, 2, (bad, r.stdout, r.stderr))
            self.assertIn("usage:", r.stderr, bad)


class WordCount(unittest.TestCase):
    """The seed's Pool.map: files counted in worker processes, merged in the parent."""

    def make_tree(self, root):
        import collections
        import os
        import random
        expected = collections.Counter()
        rng = random.Random(7)
        vocabulary = ["ring", "pool", "weft", "Task", "fork", "spawn", "pipe", "x1"]
        for i in range(23):
            words = [rng.choice(vocabulary) for _ in range(rng.randrange(0, 3000))]
            text = ""
            for w in words:
                text += w + rng.choice([" ", "\n", ", ", "--", "\t"])
            with open(os.path.join(root, f"file{i:02}.txt"), "w") as f:
                f.write(text)
            expected.update(w.lower() for w in words)
        os.mkdir(os.path.join(root, "subdir"))  # not a file: not counted
        os.symlink("/nonexistent", os.path.join(root, "dangling"))  # not a regular file
        return expected

    def parse(self, stdout):
        last = stdout.strip().splitlines()[-1]
        match = re.fullmatch(r"files=(\d+) words=(\d+) distinct=(\d+) skipped=(\d+)", last)
        self.assertTrue(match, stdout)
        return [int(g) for g in match.groups()]

    def test_counts_match_a_python_count(self):
        import tempfile
        with tempfile.TemporaryDirectory() as root:
            expected = self.make_tree(root)
            for method, workers in (("spawn", "1"), ("spawn", "3"), ("fork", "2")):
                r = run(ARGS.word_count, root, "--workers=" + workers, "--top=3",
                        "--start-method=" + method)
                self.assertEqual(r.returncode, 0, (method, r.stdout, r.stderr))
                files, words, distinct, skipped = self.parse(r.stdout)
                self.assertEqual((files, words, distinct, skipped),
                                 (23, sum(expected.values()), len(expected), 0), method)
                top = r.stdout.strip().splitlines()[:3]
                best = expected.most_common(1)[0]
                self.assertEqual(top[0].split(), [str(best[1]), best[0]], r.stdout)

    def test_empty_directory_and_errors(self):
        import tempfile
        with tempfile.TemporaryDirectory() as root:
            r = run(ARGS.word_count, root)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(self.parse(r.stdout), [0, 0, 0, 0])
        r = run(ARGS.word_count, "/nonexistent/dir")
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot list /nonexistent/dir", r.stderr)
        for bad in (["--workers=0"], ["--start-method=vfork"], []):
            r = run(ARGS.word_count, *bad)
            self.assertNotEqual(r.returncode, 0, bad)


class CommandLines(unittest.TestCase):
    """Every example takes weft's options one way (weft::add_run_options): the same spelling,
    the same checks, help on stdout with status 0, a bad value with usage on stderr and 2."""

    def programs(self):
        return [ARGS.hello, ARGS.threading, ARGS.loops, ARGS.producer_consumer, ARGS.pipeline,
                ARGS.chat_client]

    def test_help_and_bad_weft_options(self):
        for program in self.programs():
            r = run(program, "--help")
            self.assertEqual(r.returncode, 0, (program, r.stderr))
            for flag in ("--mode", "--workers", "--switch-interval", "--gil"):
                self.assertIn(flag, r.stdout, program)
            for bad in (["--workers=0"], ["--workers=1025"], ["--mode=bogus"],
                        ["--switch-interval=5h"], ["--gil=new"]):
                r = run(program, *bad)
                self.assertEqual(r.returncode, 2, (program, bad, r.stderr))
                self.assertIn("usage:", r.stderr, (program, bad))


class RingSetupFailure(unittest.TestCase):
    """io_uring refused by policy: one clear message naming the cause, no crash."""

    def test_refused_ring_names_the_cause(self):
        for errno_name, expected in (("EPERM", "io_uring"), ("ENOSYS", "no io_uring"),
                                     ("ENOMEM", "RLIMIT_MEMLOCK")):
            r = run(ARGS.no_uring, errno_name, ARGS.loops)
            self.assertEqual(r.returncode, 1, (errno_name, r.stderr))
            self.assertIn("cannot create an io_uring ring", r.stderr)
            self.assertIn(expected, r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
            self.assertNotIn("terminate", r.stderr)
