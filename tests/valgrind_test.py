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

usage: [WEFT_VALGRIND_SOAK_SECONDS=S] pytest-3 tests/valgrind_test.py --build=DIR"""
import os
import shutil
import subprocess
import sys

import pytest

import harness

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


@pytest.fixture(autouse=True)
def valgrind_installed():
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed (apt-get install valgrind)")


SCENARIOS = list(scenarios("BUILD"))


@pytest.mark.parametrize("cmd,expected", SCENARIOS,
                         ids=[" ".join([os.path.basename(c[0])] + c[1:]) for c, _ in SCENARIOS])
def test_example_under_memcheck(cmd, expected):
    cmd = [c.replace("BUILD", str(harness.build_dir()), 1) if i == 0 else c
           for i, c in enumerate(cmd)]
    r = subprocess.run(VALGRIND + cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and expected in r.stdout, (
        f"exit {r.returncode}\n{r.stdout[-1000:]}\n{r.stderr[-4000:]}")


def test_servers_under_memcheck_and_the_soak():
    seconds = os.environ.get("WEFT_VALGRIND_SOAK_SECONDS", "9")
    soak = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "soak.py"),
                           "--build", str(harness.build_dir()), "--seconds", seconds,
                           "--clients", "4", "--wrapper", " ".join(VALGRIND)],
                          capture_output=True, text=True, timeout=1200)
    print(soak.stdout, end="", flush=True)
    assert soak.returncode == 0, (f"servers under the soak's clients: exit {soak.returncode}\n"
                                  f"{soak.stdout[-3000:]}\n{soak.stderr[-3000:]}")
