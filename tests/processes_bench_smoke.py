#!/usr/bin/env python3
"""Smoke test of ./run bench processes: bench/processes.py --quick with tiny sizes (countdown over
2 worker processes with both start methods, pool round trips beside multiprocessing.Pool, spawn
and wait beside asyncio). It checks the plumbing and the JSON schema (keys present, numbers
positive), never the speed.

    pytest-3 tests/processes_bench_smoke.py --build=BUILD_DIR
"""
import sys
from pathlib import Path

from harness import build_dir, positive, refused, run_driver


def test_processes_driver(tmp_path):
    r, data = run_driver("processes.py", tmp_path / "processes.json", "--count=5000000",
                         "--jobs=200", "--warmup=10", "--map-items=200", "--children=20",
                         "--spawn-warmup=2", timeout=100)
    assert "processes benchmark" in r.stdout, r.stdout[-2000:]
    for key in ("date", "command", "machine", "reps", "quick", "settings", "load_before",
                "load_after", "results", "countdown", "roundtrip", "spawn"):
        assert key in data, (key, sorted(data))
    assert data["reps"] == 1 and data["quick"] is True, data["reps"]
    for key in ("cpu", "nproc", "kernel", "compiler", "python"):
        assert key in data["machine"], data["machine"]
    positive(data["machine"]["nproc"], "nproc")
    assert len(data["load_before"]) == 3, data["load_before"]

    suites = {row["suite"] for row in data["results"]}
    assert suites == {"countdown", "roundtrip", "spawn"}, suites
    goals = set()
    for row in data["results"]:
        assert not row.get("failed") and "skipped" not in row, row
        for key in ("value", "baseline_value", "ratio"):
            positive(row[key], (row["figure"], key))
        for key in ("figure", "unit", "baseline", "ratios"):
            assert key in row, (key, row)
        if "goal" in row:
            assert row["verdict"] in ("PASS", "MISS"), row
            goals.add(row["goal"])
    assert goals == {">= 1.85x", ">= 10.00x", ">= 3.00x"}, goals

    cd = data["countdown"]
    for config in ("sequential", "processes w=2 spawn", "processes w=2 fork",
                   "2 processes x C/2 (no runtime)"):
        positive(cd["medians_s"][config], config)
    assert not cd["errors"], cd["errors"]

    rt = data["roundtrip"]
    assert set(rt["medians"]) == {"weft process_pool", "python multiprocessing.Pool"}, rt
    for config, m in rt["medians"].items():
        for key in ("roundtrip_us", "concurrent_us", "map1_us", "map2_us", "start_spawn_ms",
                    "start_fork_ms"):
            positive(m[key], (config, key))
    weft = rt["samples"]["weft process_pool"][0]["raw"]
    assert weft["roundtrip"]["jobs"] == 200 and weft["map w=2"]["items"] == 200, weft

    sp = data["spawn"]
    for config, m in sp["medians"].items():
        for key, v in m.items():
            positive(v, (config, key))
    positive(sp["medians"]["python asyncio"]["subprocess_run_us"], "subprocess_run_us")
    assert sp["samples"]["weft io::command"][0]["raw"]["spawn"]["children"] == 20, sp

    # Bad arguments are refused with status 2, not ignored.
    refused([sys.executable, Path(__file__).parent.parent / "bench" / "processes.py", "--reps",
             "0"])
    for arg in ("--jobs=zero", "--only=nothing", "--start-method=vfork", "--children=0"):
        refused([build_dir() / "bench" / "process_bench", arg])
    print("processes bench smoke: ok")
