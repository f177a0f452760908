"""pytest's configuration for the Python suites (tests/*_test.py, the bench smokes): the tree
under test, its programs, free ports, servers that are always killed and checked for orphans,
and a time limit per test. meson runs each suite as `pytest-3 -q tests/SUITE.py --build DIR`."""
import signal

import pytest

import harness


def pytest_addoption(parser):
    parser.addoption("--build", help="the build tree under test (its examples/ and tests/)")
    parser.addoption("--source", help="the source tree (default: this file's repository)")
    parser.addoption("--test-timeout", type=float, default=300.0,
                     help="seconds one test may take before it fails (default 300; 0: none)")


def pytest_configure(config):
    harness.OPTIONS["build"] = config.getoption("--build")
    harness.OPTIONS["source"] = config.getoption("--source")
    harness.OPTIONS["test_timeout"] = config.getoption("--test-timeout")


class TimeLimitExceeded(Exception):
    pass


@pytest.fixture(autouse=True)
def time_limit():
    """Fails a test that runs past --test-timeout (SIGALRM in the main thread), so a hang is a
    failure that names the test, not a suite killed by meson's timeout."""
    seconds = harness.OPTIONS.get("test_timeout") or 0

    def expired(signum, frame):
        raise TimeLimitExceeded(f"the test ran past its {seconds:g} s limit")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def build_dir():
    return harness.build_dir()


@pytest.fixture(scope="session")
def source_dir():
    return harness.source_dir()


@pytest.fixture(scope="session")
def programs():
    return harness.PROGRAMS


@pytest.fixture
def free_port():
    return harness.free_port()


@pytest.fixture
def server():
    """start(argv) -> a ServerProcess that is up; every one is killed at the end of the test,
    and one that leaves a process of its session behind fails the test."""
    started = []

    def start(argv, **kw):
        s = harness.ServerProcess(argv, **kw)
        started.append(s)
        return s

    yield start
    orphans = []
    for s in started:
        s.kill()
        orphans += s.orphans()
    assert not orphans, f"processes left behind by the servers: {orphans}"
