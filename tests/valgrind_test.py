#!/usr/bin/env python3
"""The integration scenarios under Valgrind's memcheck: every example program on every mode it
runs, and the echo and HTTP servers under the soak's good and bad clients (tests/soak.py
--wrapper), each process under `valgrind --error-exitcode=99` with leak checking. Any memcheck
error (an invalid read or write, a use of uninitialised memory, a definite or indirect leak)
makes that run exit 99 and this test fail, with Valgrind's report.

Sizes are small (Valgrind runs code 20-50 times slower, one thread at a time); timings are
never checked here, only exit statuses and what the programs say they checked. Programs that
start processes (pipeline, word_count, countdown --mode=processes) are left out: Valgrind 3.19
has no pidfd_open (syscall 434), so weft's spawner gets ENOSYS under it; they run under ASan and
LeakSanitizer instead.

usage: valgrind_test.py --build DIR [--soak-seconds S]"""
import argparse
import os
import shutil
import subprocess
import sys
import time

VALGRIND = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
            "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect"]
THREADED = (["--mode=cooperative"], ["--mode=single-lock", "--workers=2"],
            ["--mode=multi-thread", "--workers=2"])


def scenarios(build):
    ex = lambda name: os.path.join(build, "examples", name)  # noqa: E731
    for mode in THREADED:
        yield [ex("hello"), *mode], "sum of squares = 385"
        yield [ex("threading"), *mode, "--tasks=4", "--deposits=50"], "balance=200 (expected 200)"
        yield ([ex("producer_consumer"), *mode, "--queue=all", "--items=10",
                "--thread-producers=1"],
               "priority: items=10")
        yield ([ex("countdown"), f"--mode={mode[0].split('=')[1]}", "--workers=2",
                "--count=200000"], "countdown of 200000")
    yield [ex("loops")], "All tasks done"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", required=True)
    parser.add_argument("--soak-seconds", type=float, default=9)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind): skipped")
        return 77
    failures = []
    for cmd, expected in scenarios(args.build):
        start = time.monotonic()
        r = subprocess.run(VALGRIND + cmd, capture_output=True, text=True, timeout=600)
        ok = r.returncode == 0 and expected in r.stdout
        name = " ".join([os.path.basename(cmd[0])] + cmd[1:])
        print(f"{'ok  ' if ok else 'FAIL'} {name} ({time.monotonic() - start:.1f} s)",
              flush=True)
        if not ok:
            failures.append(f"{name}: exit {r.returncode}\n{r.stdout[-1000:]}\n"
                            f"{r.stderr[-4000:]}")
    soak = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "soak.py"),
                           "--build", args.build, "--seconds", str(args.soak_seconds),
                           "--clients", "4", "--wrapper", " ".join(VALGRIND)],
                          capture_output=True, text=True, timeout=1200)
    print(soak.stdout, end="", flush=True)
    if soak.returncode != 0:
        failures.append(f"servers under the soak's clients: exit {soak.returncode}\n"
                        f"{soak.stdout[-3000:]}\n{soak.stderr[-3000:]}")
    for f in failures:
        print("\n" + f, file=sys.stderr)
    print(f"valgrind: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
