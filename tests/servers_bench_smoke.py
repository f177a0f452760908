#!/usr/bin/env python3
"""Smoke test of ./run bench servers: bench/servers.py --quick on the echo suite (weft's echo
server and client against the liburing reference, one pair of one-second runs) and on the file
suite (bench/file_read beside dd, 8 MiB). It checks the plumbing (servers start, load runs,
every byte is checked, the JSON holds the samples), never the speed."""
import sys

from harness import refused, run_driver, source_dir


def test_servers_driver(tmp_path):
    out = tmp_path / "servers.json"
    r, data = run_driver("servers.py", out, "--only", "echo")
    rows = data["results"]
    assert rows and rows[0]["suite"] == "echo", rows
    assert rows[0]["good_pairs"] >= 1, rows[0]
    assert rows[0]["weft_median"] > 0 and rows[0]["reference_median"] > 0, rows[0]
    for key in ("cpu", "nproc", "kernel", "compiler"):
        assert key in data["machine"], data["machine"]
    # The file suite runs bench/file_read (weft's read_at) beside dd on a small file.
    r, data = run_driver("servers.py", out, "--only", "file", "--file-size-mib", "8")
    rows = data["results"]
    assert rows and rows[0]["suite"] == "file" and rows[0]["weft_median"] > 0, rows
    refused([sys.executable, source_dir() / "bench" / "servers.py", "--pairs", "zero"])
    print("servers bench smoke: ok")
