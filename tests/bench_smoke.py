#!/usr/bin/env python3
"""Smoke test of the benchmark pipeline that ./run bench uses: bench/micro with tiny sizes, then
bench/report.py on its JSON. It checks the plumbing, not the speed (speed is never a test)."""
import json
import subprocess
import sys
from pathlib import Path

import harness

micro = str(harness.build_dir() / "bench" / "micro")
report = str(harness.source_dir() / "bench" / "report.py")


def test_micro_and_report(tmp_path):
    tmp = str(tmp_path)
    out = Path(tmp)
    subprocess.run([micro, "--tasks=2000", "--switches=2000", "--sleepers=2000", "--sleep-ms=200",
                    f"--benchmark_out={out / 'micro.json'}", "--benchmark_out_format=json"],
                   check=True, capture_output=True, timeout=120)
    (out / "go.json").write_text('{"skipped": "not part of the smoke test"}')
    r = subprocess.run([sys.executable, report, "--micro", str(out / "micro.json"),
                        "--go", str(out / "go.json"), "--out", str(out / "report.json")],
                       check=True, capture_output=True, text=True, timeout=60)
    data = json.loads((out / "report.json").read_text())
    for name, counter in (("spawn_join", "ns_per_task"), ("spawn_join_each", "ns_per_task"),
                          ("switch", "ns_per_switch"), ("sleepers", "bytes_per_sleeper"),
                          ("sleepers", "late_max_s")):
        value = data["weft"][name][counter]
        assert value > 0, (name, counter, value)
    assert "skipped" in r.stdout, r.stdout
    # The floor is measured in the same run and weft's ratios to it are reported.
    for name in ("spawn_join", "spawn_join_each", "switch"):
        assert data["floor"][name]["ratio"] > 0, data["floor"]
    assert data["weft"]["channel_round_trip"]["ns_per_round_trip"] > 0, data["weft"]
    assert "against the floor" in r.stdout, r.stdout
    # Bad flags are refused with status 2, not ignored.
    bad = subprocess.run([micro, "--tasks=zero"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2, (bad.returncode, bad.stderr)
    print("bench smoke: ok")
