#!/usr/bin/env python3
"""`meson install` into a scratch prefix, then build and run a program against the installed
headers, library and weft.pc, as another project would (pkg-config only, no meson)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

build_dir, cxx = sys.argv[1], sys.argv[2]
# A plain program on the umbrella header.
PROGRAM = r'''
#include <weft/weft.hpp>
#include <chrono>
weft::task<int> two() { co_return 2; }
weft::task<int> amain() {
  co_await weft::sleep_for(std::chrono::milliseconds(1));
  auto [a, b] = co_await weft::when_all(two(), two());
  co_return a + b;
}
int main() { return weft::run(amain()) == 4 ? 0 : 1; }
'''

with tempfile.TemporaryDirectory() as tmp:
    dest = Path(tmp) / "root"
    prefix = Path(tmp) / "prefix"
    subprocess.run(["meson", "install", "-C", build_dir, "--destdir", str(dest), "--quiet"],
                   check=True, capture_output=True, timeout=300)
    # The install lands under DESTDIR/<prefix>; move it so that the .pc file's prefix is real.
    installed_prefix = subprocess.run(
        ["meson", "introspect", build_dir, "--buildoptions"], check=True, capture_output=True,
        text=True).stdout
    options = {o["name"]: o["value"] for o in json.loads(installed_prefix)}
    shutil.move(str(dest / options["prefix"].lstrip("/")), prefix)
    pcs = list(prefix.rglob("weft.pc"))
    assert len(pcs) == 1, pcs
    headers = prefix / "include" / "weft"
    for h in ("weft.hpp", "task.hpp", "io/reactor.hpp", "sched/run.hpp", "detail/transfer.hpp"):
        assert (headers / h).is_file(), h
    env = dict(os.environ, PKG_CONFIG_PATH=str(pcs[0].parent))
    flags = subprocess.run(["pkg-config", "--define-variable=prefix=" + str(prefix), "--cflags",
                            "--libs", "weft"], check=True, capture_output=True, text=True,
                           env=env).stdout.split()
    source = Path(tmp) / "user.cpp"
    source.write_text(PROGRAM)
    exe = Path(tmp) / "user"
    subprocess.run([cxx, "-std=c++20", str(source), "-o", str(exe)] + flags, check=True,
                   timeout=300)
    subprocess.run([str(exe)], check=True, timeout=60)
print("install: ok")
