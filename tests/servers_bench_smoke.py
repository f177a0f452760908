#!/usr/bin/env python3
"""Smoke test of ./run bench servers: bench/servers.py --quick on the echo suite (weft's echo
server and client against the liburing reference, one pair of one-second runs) and on the file
suite (bench/file_read beside dd, 8 MiB). It checks the plumbing (servers start, load runs,
every byte is checked, the JSON holds the samples), never the speed."""
import json
import subprocess
import sys
from pathlib import Path

import harness

driver = str(harness.source_dir() / "bench" / "servers.py")
build = str(harness.build_dir())


def test_servers_driver(tmp_path):
    tmp = str(tmp_path)
    out = Path(tmp) / "servers.json"
    r = subprocess.run([sys.executable, driver, "--build", build, "--quick", "--only", "echo",
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    data = json.loads(out.read_text())
    rows = data["results"]
    assert rows and rows[0]["suite"] == "echo", rows
    assert rows[0]["good_pairs"] >= 1, rows[0]
    assert rows[0]["weft_median"] > 0 and rows[0]["reference_median"] > 0, rows[0]
    for key in ("cpu", "nproc", "kernel", "compiler"):
        assert key in data["machine"], data["machine"]
    # The file suite runs bench/file_read (weft's read_at) beside dd on a small file.
    r = subprocess.run([sys.executable, driver, "--build", build, "--quick", "--only", "file",
                        "--file-size-mib", "8", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    rows = json.loads(out.read_text())["results"]
    assert rows and rows[0]["suite"] == "file" and rows[0]["weft_median"] > 0, rows
    bad = subprocess.run([sys.executable, driver, "--pairs", "zero"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2, (bad.returncode, bad.stderr)
    print("servers bench smoke: ok")
