#!/usr/bin/env python3
"""The docs tell the truth: every command in a ```console block of docs/*.md runs as written,
and prints what the block shows; every code excerpt marked `<!-- excerpt: FILE -->` is still in
FILE, word for word; every relative link points at a file that exists.

A console block is a little session: lines starting with `$ ` are commands (run with bash from a
scratch directory where `build` is the build tree under test and `examples` the examples'
sources), the lines after one are its expected output (stdout and stderr together). Expected
lines must appear in that order in what the command printed, other lines may come between;
numbers match any number (timings and counts differ from run to run) and `…` matches any text.
A command must exit 0 (a page that shows a failure writes `; echo "exit status $?"`). A command
ending in ` &` starts a server in the background: the test waits for its `listening on` line
and, at the end of the block, stops it with SIGINT and requires exit status 0. The `%1` of
`kill -INT %1` is that server. Ports 9000-9099 in a block are replaced by free ones.

usage: pytest-3 tests/docs_test.py --build DIR [--source DIR]"""
import re
import signal
import subprocess
import tempfile
import unittest
from pathlib import Path

import harness
from harness import free_port

NUMBER = re.compile(r"\d+(?:\.\d+)?")


def doc_pages():
    return sorted((harness.source_dir() / "docs").rglob("*.md"))


def line_pattern(expected):
    """A regex for one expected output line: numbers match numbers, … matches anything."""
    parts = []
    for piece in re.split(r"(…|\d+(?:\.\d+)?)", expected.strip()):
        if piece == "…":
            parts.append(r".*")
        elif NUMBER.fullmatch(piece):
            parts.append(r"\d+(?:\.\d+)?")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def blocks(text, language):
    """(line number, lines) of every fenced block in the given language."""
    found, lines, start, indent = [], None, 0, 0
    for number, line in enumerate(text.splitlines(), 1):
        if lines is None and line.strip() == "```" + language:
            lines, start, indent = [], number, len(line) - len(line.lstrip())
        elif lines is not None and line.strip() == "```":
            found.append((start, lines))
            lines = None
        elif lines is not None:
            lines.append(line[indent:])  # a block in a list item is indented with the item
    return found


class Session:
    """Runs one console block: commands, expected output, background servers."""

    def __init__(self, test, where, cwd):
        self.test, self.where, self.cwd = test, where, cwd
        self.servers = []

    def run(self, lines):
        ports = {}
        for line in lines:
            for p in re.findall(r"(?:--port[= ]|127\.0\.0\.1:)(90\d\d)\b", line):
                ports.setdefault(p, str(free_port()))
        steps = []  # (command, expected lines)
        for line in lines:
            for doc_port, port in ports.items():
                line = re.sub(rf"\b{doc_port}\b", port, line)
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps and line.strip():
                steps[-1][1].append(line)
        try:
            for command, expected in steps:
                self.step(command, expected)
        finally:
            self.stop_servers()

    def step(self, command, expected):
        where = f"{self.where}: `{command}`"
        if command.startswith("kill -INT %1"):
            self.test.assertTrue(self.servers, f"{where}: no server in the background")
            self.stop_server(self.servers.pop(0))
            return
        if command.endswith(" &"):
            self.start_server(command[:-2], expected, where)
            return
        r = subprocess.run(["bash", "-c", "exec 2>&1; " + command], cwd=self.cwd, text=True,
                           stdout=subprocess.PIPE, timeout=120)
        self.test.assertEqual(r.returncode, 0, f"{where} exited {r.returncode}:\n{r.stdout}")
        self.match(where, expected, r.stdout.splitlines())

    def match(self, where, expected, actual):
        at = 0
        for want in expected:
            pattern = line_pattern(want)
            while at < len(actual) and not pattern.fullmatch(actual[at].strip()):
                at += 1
            self.test.assertLess(at, len(actual),
                                 f"{where}: expected a line like {want.strip()!r} (in order) in:\n"
                                 + "\n".join(actual))
            at += 1

    def start_server(self, command, expected, where):
        proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=self.cwd, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.servers.append(proc)
        first = proc.stdout.readline()  # blocks until the server is up (or has died)
        self.test.assertTrue(first.startswith("listening on"),
                             f"{where}: no 'listening on' line, got {first!r}; stderr: "
                             f"{proc.stderr.read() if proc.poll() is not None else ''}")
        self.match(where, expected, [first.strip()])

    def stop_server(self, proc):
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            self.test.fail(f"{self.where}: a server ignored SIGINT for 20 s")
        self.test.assertEqual(proc.returncode, 0, f"{self.where}: server exited "
                              f"{proc.returncode} after SIGINT: {err}")

    def stop_servers(self):
        while self.servers:
            self.stop_server(self.servers.pop(0))


class Docs(unittest.TestCase):
    def test_console_blocks_run_as_written(self):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "build").symlink_to(harness.build_dir())
            (Path(tmp) / "examples").symlink_to(harness.source_dir() / "examples")
            count = 0
            for page in doc_pages():
                for start, lines in blocks(page.read_text(), "console"):
                    with self.subTest(page=page.name, line=start):
                        Session(self, f"{page.name}:{start}", tmp).run(lines)
                        count += 1
            self.assertGreater(count, 10)

    def test_excerpts_are_still_in_their_files(self):
        count = 0
        for page in doc_pages():
            text = page.read_text()
            for m in re.finditer(r"<!-- excerpt: (\S+) -->\n```\w*\n(.*?)\n```", text, re.S):
                source = (harness.source_dir() / m.group(1)).read_text()
                with self.subTest(page=page.name, file=m.group(1)):
                    self.assertTrue(m.group(2) in source,
                                    f"{page.name}: this excerpt is no longer in {m.group(1)}:\n"
                                    f"{m.group(2)}")
                count += 1
        self.assertGreater(count, 5)

    def test_relative_links_resolve(self):
        for page in doc_pages():
            for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
                if re.match(r"[a-z]+:", target):
                    continue  # http(s), mailto
                with self.subTest(page=page.name, link=target):
                    self.assertTrue((page.parent / target).exists(),
                                    f"{page.name} links to {target}, which does not exist")
