#!/usr/bin/env python3
"""Smoke test of ./run bench threads: bench/threads.py --quick with tiny sizes (countdown, I/O-bound
sleepers, spawn+join and channel ping-pong on 2 workers, the echo server on 1 and 2 workers), and
its workers sweep at 1 and 2 workers. It
checks the plumbing and the JSON schema (keys present, numbers positive), never the speed.

    pytest-3 tests/threads_bench_smoke.py --build=BUILD_DIR
"""
import sys
from pathlib import Path

from harness import build_dir, positive, refused, run_driver


def test_threads_driver(tmp_path):
    r, data = run_driver("threads.py", tmp_path / "threads.json", "--count=5000000",
                         "--io-tasks=200", "--io-rounds=2", "--io-sleep-ms=10", "--tasks=5000",
                         "--round-trips=5000", "--echo-connections=10", "--echo-duration=0.3",
                         timeout=100)
    assert "threads benchmark" in r.stdout, r.stdout[-2000:]
    for key in ("date", "command", "machine", "reps", "load_before", "load_after", "results",
                "countdown", "io", "micro", "echo"):
        assert key in data, (key, sorted(data))
    assert data["reps"] == 1 and data["quick"] is True, data["reps"]
    for key in ("cpu", "nproc", "kernel", "compiler"):
        assert key in data["machine"], data["machine"]

    suites = {row["suite"] for row in data["results"]}
    assert suites == {"countdown", "io", "micro", "echo"}, suites
    for row in data["results"]:
        assert not row.get("failed"), row
        if "skipped" in row:  # the Go reference, when go is not installed
            assert "go" in row["skipped"], row
            continue
        for key in ("value", "baseline_value", "ratio"):
            positive(row[key], (row["figure"], key))

    cd = data["countdown"]
    for config in ("sequential", "multi-thread w=2", "single-lock w=2",
                   "single-lock w=2 ticks:100"):
        positive(cd["medians_s"][config], config)
    lock = cd["samples"]["single-lock w=2"][0]["lock"]
    for key in ("switches", "forced_switches", "lock_wait_s"):
        assert key in lock, lock

    io = data["io"]
    for config in ("single-lock w=2", "multi-thread w=2", "thread per task"):
        positive(io["medians_s"][config], config)
    positive(io["threads_created"], "threads_created")

    micro = data["micro"]
    for config, m in micro["medians"].items():
        positive(m["ns_per_task"], (config, "ns_per_task"))
        positive(m["ns_per_round_trip"], (config, "ns_per_round_trip"))
    weft = micro["samples"]["weft multi-thread w=2"][0]
    for key in ("tasks_run", "steals", "stolen", "lifo_runs", "parks"):
        assert key in weft["spawn_join"] and key in weft["ping_pong"], (key, weft)
    assert "cross_thread_round_trips" in weft["ping_pong"], weft["ping_pong"]

    for config, v in data["echo"]["medians_msg_per_s"].items():
        positive(v, config)
    assert len(data["echo"]["medians_msg_per_s"]) == 5, data["echo"]["medians_msg_per_s"]

    # The workers sweep: every workload at each count, with a speed-up and its interval.
    r, sweep = run_driver("threads.py", tmp_path / "sweep.json", "--workers=1,2",
                          "--count=2000000", "--tasks=2000", "--echo-connections=4",
                          "--echo-duration=0.2", timeout=100)
    assert "workers sweep" in r.stdout, r.stdout[-2000:]
    assert {row["suite"] for row in sweep["results"]} == {"sweep"}, sweep["results"]
    assert [e["workers"] for e in sweep["sweep"]["table"]] == [1, 2], sweep["sweep"]["table"]
    for e in sweep["sweep"]["table"]:
        for kind in ("countdown", "spawn", "echo"):
            positive(e[kind]["median"], (e["workers"], kind))
            positive(e[kind]["speedup"], (e["workers"], kind, "speedup"))

    # Bad arguments are refused with status 2, not ignored.
    driver = Path(__file__).parent.parent / "bench" / "threads.py"
    for arg in (["--reps", "0"], ["--workers", "0,2"], ["--workers", "two"]):
        refused([sys.executable, driver, *arg])
    for exe, arg in (("bench/io_bound", "--tasks=0"), ("bench/threads_micro", "--tasks=zero")):
        refused([build_dir() / exe, arg])
    print("threads bench smoke: ok")
