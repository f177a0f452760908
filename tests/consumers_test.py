#!/usr/bin/env python3
"""weft used from another project, in each of the usual ways, as that project would: `meson
install` into a scratch prefix, then a small consumer program built with pkg-config by hand, by
a plain Makefile, by CMake's pkg_check_modules and by Meson's dependency(); and weft as a Meson
subproject (subprojects/weft with dependency('weft') and a fallback). Each consumer runs and
checks that weft::version(), WEFT_VERSION_STRING, `pkg-config --modversion weft` and meson.build's
project version agree.

usage: CXX=g++ WEFT_VERSION=X.Y.Z pytest-3 tests/consumers_test.py --build=DIR [--source=DIR]
(meson sets both: the compiler weft was built with, and the project's version)."""
import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import harness

BUILD_DIR = SOURCE_DIR = CXX = VERSION = None
TMP = PREFIX = PC_DIR = None

# The consumer: a task on two modes, and the version the library and the headers report.
PROGRAM = r'''
#include <weft/weft.hpp>
#include <chrono>
#include <cstdio>
#include <string_view>

weft::task<int> two() { co_return 2; }
weft::task<int> amain() {
  co_await weft::sleep_for(std::chrono::milliseconds(1));
  auto [a, b] = co_await weft::when_all(two(), two());
  co_return a + b;
}
int main() {
  const int cooperative = weft::run(amain());
  const int threaded = weft::run({weft::mode::multi_thread, 2}, amain());
  std::printf("weft %.*s headers %s sum %d %d\n", static_cast<int>(weft::version().size()),
              weft::version().data(), WEFT_VERSION_STRING, cooperative, threaded);
  return weft::version() == std::string_view(WEFT_VERSION_STRING) && cooperative == 4 &&
      threaded == 4 ? 0 : 1;
}
'''

MAKEFILE = '''\
# A plain Makefile, as a user who knows only pkg-config would write it.
CXXFLAGS += -std=c++20 $(shell pkg-config --cflags weft)
LDLIBS += $(shell pkg-config --libs weft)

user: user.cpp
\t$(CXX) $(CXXFLAGS) $< -o $@ $(LDLIBS)
'''

CMAKELISTS = '''\
cmake_minimum_required(VERSION 3.16)
project(consumer CXX)
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
find_package(PkgConfig REQUIRED)
pkg_check_modules(WEFT REQUIRED IMPORTED_TARGET weft)
add_executable(user user.cpp)
target_link_libraries(user PRIVATE PkgConfig::WEFT)
'''

MESON_BUILD = '''\
project('consumer', 'cpp', default_options : ['cpp_std=c++20'])
weft_dep = dependency('weft'{fallback})
executable('user', 'user.cpp', dependencies : weft_dep)
'''


def sh(*cmd, cwd=None, env=None, timeout=600):
    """Runs cmd; on failure the test fails with its output."""
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {r.returncode}\n"
                             f"{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r.stdout


def consumer_env():
    # Only the scratch install is visible to pkg-config: a weft installed on the machine must not
    # make a test pass.
    return dict(os.environ, PKG_CONFIG_PATH=str(PC_DIR), CXX=CXX)


def project_dir(name):
    d = Path(TMP) / name
    d.mkdir()
    (d / "user.cpp").write_text(PROGRAM)
    return d


def setUpModule():
    global TMP, PREFIX, PC_DIR, BUILD_DIR, SOURCE_DIR, CXX, VERSION
    BUILD_DIR, SOURCE_DIR = harness.build_dir(), harness.source_dir()
    CXX, VERSION = os.environ.get("CXX", "c++"), os.environ["WEFT_VERSION"]
    TMP = tempfile.mkdtemp(prefix="weft-consumers-")
    # Installed under DESTDIR, then moved to a prefix of its own: weft.pc is relocatable (its
    # prefix is relative to where it lies), so the moved install must work as it is.
    dest = Path(TMP) / "destdir"
    sh("meson", "install", "-C", BUILD_DIR, "--destdir", dest, "--quiet", timeout=300)
    pcs = list(dest.rglob("weft.pc"))
    assert len(pcs) == 1, pcs
    # DESTDIR/<prefix>/lib/<triplet>/pkgconfig/weft.pc -> move DESTDIR/<prefix> as a whole.
    installed_prefix = next(p for p in pcs[0].parents if (p / "include" / "weft").is_dir())
    PREFIX = Path(TMP) / "prefix"
    shutil.move(str(installed_prefix), PREFIX)
    PC_DIR = next(PREFIX.rglob("weft.pc")).parent


def tearDownModule():
    shutil.rmtree(TMP, ignore_errors=True)


class Installed(unittest.TestCase):
    def check_runs(self, exe):
        out = sh(exe, timeout=60)
        self.assertEqual(out.strip(), f"weft {VERSION} headers {VERSION} sum 4 4")

    def test_headers_and_pc_file_are_installed(self):
        headers = PREFIX / "include" / "weft"
        for h in ("weft.hpp", "task.hpp", "version.hpp", "io/reactor.hpp", "sched/run.hpp",
                  "detail/transfer.hpp", "pool/process_pool.hpp", "pool/serialize.hpp"):
            self.assertTrue((headers / h).is_file(), h)
        # The pool's private headers (pool/*.hpp outside pool/weft/) are not installed.
        self.assertEqual(sorted(p.name for p in (headers / "pool").iterdir()),
                         ["process_pool.hpp", "serialize.hpp"])
        # The build files of the source tree are not headers.
        self.assertFalse((headers / "meson.build").exists())
        self.assertFalse((headers / "version.hpp.in").exists())
        # Internals stay next to the sources (docs/decisions/private-internals.md).
        for h in ("sched/run_queue.hpp", "sched/seeded_order.hpp", "sched/steal_queue.hpp",
                  "sched/live_set.hpp", "sched/park.hpp", "io/fault_hook.hpp"):
            self.assertFalse((headers / h).exists(), h)
        self.assertNotIn("fault_injection.hpp", (headers / "io" / "reactor.hpp").read_text())

    def test_pkg_config_version_is_the_project_version(self):
        self.assertEqual(sh("pkg-config", "--modversion", "weft", env=consumer_env()).strip(),
                         VERSION)

    def test_pkg_config_by_hand(self):
        d = project_dir("by-hand")
        flags = sh("pkg-config", "--cflags", "--libs", "weft", env=consumer_env()).split()
        # Relocated: the flags name the scratch prefix, not the configured one.
        self.assertIn(f"-I{PREFIX}/include", [os.path.normpath(f) for f in flags])
        sh(CXX, "-std=c++20", d / "user.cpp", "-o", d / "user", *flags)
        self.check_runs(d / "user")

    def test_plain_makefile(self):
        d = project_dir("make")
        (d / "Makefile").write_text(MAKEFILE)
        sh("make", "-C", d, env=consumer_env())
        self.check_runs(d / "user")

    def test_cmake_pkg_check_modules(self):
        d = project_dir("cmake")
        (d / "CMakeLists.txt").write_text(CMAKELISTS)
        sh("cmake", "-S", d, "-B", d / "build", env=consumer_env())
        sh("cmake", "--build", d / "build", env=consumer_env())
        self.check_runs(d / "build" / "user")

    def test_readme_programs_build_as_documented(self):
        """Every ```cpp block of README.md, exactly as written, compiled with the flags that
        `pkg-config --cflags --libs weft` gives (as docs/using-weft.md says), and run."""
        blocks = re.findall(r"^```cpp\n(.*?)^```", (Path(SOURCE_DIR) / "README.md").read_text(),
                            re.S | re.M)
        self.assertTrue(blocks)
        flags = sh("pkg-config", "--cflags", "--libs", "weft", env=consumer_env()).split()
        for i, code in enumerate(blocks):
            with self.subTest(block=i):
                d = Path(TMP) / f"readme-{i}"
                d.mkdir()
                (d / "program.cpp").write_text(code)
                sh(CXX, "-std=c++20", d / "program.cpp", "-o", d / "program", *flags)
                sh(d / "program", timeout=60)
                r = subprocess.run([d / "program", "--no-such-option"], capture_output=True,
                                   text=True, timeout=60)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("usage:", r.stderr)

    def test_meson_dependency_from_pkg_config(self):
        d = project_dir("meson-installed")
        (d / "meson.build").write_text(MESON_BUILD.format(fallback=""))
        sh("meson", "setup", d / "build", d, env=consumer_env())
        sh("ninja", "-C", d / "build", env=consumer_env())
        self.check_runs(d / "build" / "user")


class Subproject(unittest.TestCase):
    def test_meson_subproject_fallback(self):
        d = project_dir("meson-subproject")
        (d / "meson.build").write_text(
            MESON_BUILD.format(fallback=", fallback : ['weft', 'weft_dep']"))
        (d / "subprojects").mkdir()
        (d / "subprojects" / "weft").symlink_to(SOURCE_DIR, target_is_directory=True)
        # No weft for pkg-config to find: the fallback must build the subproject.
        env = dict(os.environ, PKG_CONFIG_PATH="", CXX=CXX)
        out = sh("meson", "setup", d / "build", d, "--force-fallback-for=weft", env=env)
        self.assertIn("Executing subproject weft", out)
        # The subproject builds weft's library only: not its examples, tests or benchmarks.
        self.assertNotIn("Catch2", out)
        sh("ninja", "-C", d / "build", env=env)
        self.assertFalse(list((d / "build" / "subprojects").rglob("*_test")))
        self.check_runs(d / "build" / "user")

    check_runs = Installed.check_runs
