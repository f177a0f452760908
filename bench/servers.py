#!/usr/bin/env python3
"""weft's servers benchmark: weft's echo server, HTTP server and file reads against references.

    python3 bench/servers.py [--build build] [--pairs 5] [--duration 3] [--only echo|http|file]
                             [--file-size-mib 1024] [--quick] [--out bench-results/servers.json]

Every comparison runs interleaved pairs (weft, reference, weft, reference, ...; the order is
reversed every other round so that drift over time hits both sides alike). Each run starts a
fresh server pinned to one CPU (--server-cpu, default 0), waits until it listens, runs the load
generator pinned to the other (--client-cpu, default 1), then stops the server. The table shows
the medians of the absolute figures and the median of the per-pair ratios weft / reference,
with the goal and PASS or MISS beside it. The JSON file keeps every raw sample.

Suites:
  echo  weft's examples/echo_server against bench/reference/echo_uring, echo_epoll and echo.go
        (when go is installed), loaded by weft's examples/echo_client: 64 and 4096-byte messages,
        50 and 500 connections. Also the server's CPU time (utime+stime) per 1,000 messages.
  http  weft's examples/http_server against nginx (one worker, single process), loaded by wrk:
        "Hello, World!" and a 100 KiB static file on 50 keep-alive connections; CPU per 1,000
        requests too. Skipped when wrk or nginx is missing (apt-get install wrk nginx-light).
  file  reading a file of --file-size-mib MiB from the page cache: weft's bench/file_read
        against dd bs=1M.

Not part of CI; the default run takes about six minutes. Exit status 0 when every run worked
(whatever the goals say), 1 when some run failed, 2 on bad arguments.
"""
import argparse
import datetime
import json
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import threads  # shared with ./run bench threads: the machine's description

ECHO_SIZES = (64, 4096)
ECHO_CONNECTIONS = (50, 500)
HTTP_CONNECTIONS = 50
HTTP_FILE_BYTES = 100 * 1024
READY_TIMEOUT_S = 10.0

# (suite, reference, metric) -> (operator, bound). Throughput ratios are weft / reference, so
# higher is better; CPU ratios are weft's CPU per 1,000 messages / the reference's, lower is better.
GOALS = {
    ("echo", "echo_uring", "throughput"): (">=", 0.95),
    ("echo", "echo_epoll", "throughput"): (">=", 1.0),
    ("echo", "go", "throughput"): (">=", 1.3),
    ("echo", "echo_uring", "cpu"): ("<=", 1.0),
    ("http", "nginx", "throughput"): (">=", 1.0),
    ("http hello", "nginx", "throughput"): (">=", 1.2),  # issue 21: hello 1.2x nginx
    ("http", "nginx", "cpu"): ("<=", 0.9),
    ("file", "dd", "throughput"): (">=", 0.95),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# processes


def free_port():
    """A port nobody listens on now (bound to port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    """utime + stime of a whole process, in clock ticks, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()  # the name may hold spaces and parentheses
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def tail(path, n=2000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


class Server:
    """A server process pinned to a CPU, with stdout and stderr in files; a context manager
    that always kills and reaps it."""

    def __init__(self, name, argv, port, cpu, workdir, cwd=None):
        self.name, self.argv, self.port = name, argv, port
        self.out_path = os.path.join(workdir, f"{name}.{port}.out")
        self.err_path = os.path.join(workdir, f"{name}.{port}.err")
        self.proc = None
        self.exit_status = None
        self.cmd = ["taskset", "-c", str(cpu)] + argv
        self.cwd = cwd

    def __enter__(self):
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, cwd=self.cwd, start_new_session=True)
        self.wait_ready()
        return self

    def wait_ready(self):
        """Until the 'listening on' line shows or the port accepts a connection."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with status {self.proc.returncode} "
                                   f"before listening: {tail(self.err_path, 500).strip()}")
            if "listening on" in tail(self.out_path):
                return
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not listen on port {self.port} within "
                           f"{READY_TIMEOUT_S:.0f} s")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None or self.exit_status is not None:
            return self.exit_status
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.exit_status = self.proc.wait()
        # Whatever it left behind in its process group (nginx's workers, if any) goes too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return self.exit_status

    def __exit__(self, *exc):
        self.stop()
        return False


# A load generator runs to its end (killed at the timeout): (status, out, err).
run_client = threads.run_cmd


def measured(server_name, server_argv, port, args, workdir, load, cwd=None):
    """One sample: starts the server, runs load(port) -> dict with 'count' (messages or
    requests), stops the server. Adds the server's CPU time. Never raises."""
    sample = {"server": server_name, "ok": False, "argv": server_argv}
    try:
        with Server(server_name, server_argv, port, args.server_cpu, workdir, cwd) as srv:
            before = cpu_ticks(srv.proc.pid)
            result = load(port)
            after = cpu_ticks(srv.proc.pid) if srv.alive() else None
            crashed = not srv.alive()
            status = srv.stop()
        sample.update(result)
        sample["server_exit_status"] = status
        if crashed:
            sample["ok"] = False
            sample["error"] = (f"server died during the load (status {status}): "
                               f"{tail(srv.err_path, 500).strip()}")
        elif after is not None:
            cpu_s = (after - before) / os.sysconf("SC_CLK_TCK")
            sample["server_cpu_s"] = cpu_s
            if sample.get("count"):
                sample["cpu_ms_per_1k"] = cpu_s * 1e3 / sample["count"] * 1e3
        if status not in (0, None) and sample.get("ok"):
            sample["warning"] = f"server exited with status {status} on SIGTERM"
    except Exception as e:  # a failed run is a result, not the end of the benchmark
        sample["ok"] = False
        sample["error"] = f"{type(e).__name__}: {e}"
    return sample


# ---------------------------------------------------------------------------------------------
# comparisons


def compare(rows, suite, config, sides, rounds, metric_unit):
    """Runs rounds of interleaved samples. sides: list of (name, run()) with weft first;
    run() -> sample dict with 'ok', 'value' (higher is better) and maybe 'cpu_ms_per_1k'.
    Appends one row per reference to rows."""
    samples = {name: [] for name, _ in sides}
    for r in range(rounds):
        order = sides if r % 2 == 0 else list(reversed(sides))
        for name, run in order:
            s = run()
            s["round"] = r
            samples[name].append(s)
            state = f"{s['value']:,.1f} {metric_unit}" if s.get("ok") else f"FAILED: {s.get('error')}"
            log(f"  {suite} {config} round {r + 1}/{rounds} {name}: {state}")
    weft_name = sides[0][0]
    for ref_name, _ in sides[1:]:
        rows.append(summarize(suite, config, weft_name, ref_name, samples[weft_name],
                              samples[ref_name], metric_unit))


def median_or_none(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def verdict(suite, ref, metric, ratio, config=""):
    # A goal for one configuration ("http hello") wins over the suite's.
    goal = GOALS.get((f"{suite} {config.split()[0]}" if config else suite, ref, metric),
                     GOALS.get((suite, ref, metric)))
    if goal is None:
        return None, None
    op, bound = goal
    if ratio is None:
        return f"{op} {bound:.2f}x", "n/a"
    ok = ratio >= bound if op == ">=" else ratio <= bound
    return f"{op} {bound:.2f}x", "PASS" if ok else "MISS"


def summarize(suite, config, weft_name, ref_name, weft_samples, ref_samples, unit):
    pairs = list(zip(weft_samples, ref_samples))
    good = [(w, r) for w, r in pairs if w.get("ok") and r.get("ok")]
    ratios = [w["value"] / r["value"] for w, r in good if r["value"] > 0]
    cpu_ratios = [w["cpu_ms_per_1k"] / r["cpu_ms_per_1k"] for w, r in good
                  if w.get("cpu_ms_per_1k") and r.get("cpu_ms_per_1k")]
    row = {
        "suite": suite, "config": config, "weft": weft_name, "reference": ref_name,
        "unit": unit,
        "pairs": len(pairs), "good_pairs": len(good),
        "weft_median": median_or_none(s["value"] for s in weft_samples if s.get("ok")),
        "reference_median": median_or_none(s["value"] for s in ref_samples if s.get("ok")),
        "ratio_median": median_or_none(ratios), "ratios": ratios,
        "weft_cpu_ms_per_1k": median_or_none(s.get("cpu_ms_per_1k") for s in weft_samples
                                             if s.get("ok")),
        "reference_cpu_ms_per_1k": median_or_none(s.get("cpu_ms_per_1k") for s in ref_samples
                                                  if s.get("ok")),
        "cpu_ratio_median": median_or_none(cpu_ratios), "cpu_ratios": cpu_ratios,
        "weft_samples": weft_samples, "reference_samples": ref_samples,
    }
    row["goal"], row["verdict"] = verdict(suite, ref_name, "throughput", row["ratio_median"],
                                          config)
    row["cpu_goal"], row["cpu_verdict"] = verdict(suite, ref_name, "cpu", row["cpu_ratio_median"])
    errors = [f"{s['server']}: {s['error']}" for s in weft_samples + ref_samples
              if not s.get("ok") and s.get("error")]
    if errors:
        row["errors"] = sorted(set(errors))
    warnings = [f"{s['server']}: {s['warning']}" for s in weft_samples + ref_samples
                if s.get("warning")]
    if warnings:
        row["warnings"] = sorted(set(warnings))
    if not good:
        row["failed"] = True
        row["verdict"] = row["cpu_verdict"] = "FAILED"
    return row


def skipped_row(suite, config, ref_name, reason):
    if not reason.startswith("skipped"):
        reason = f"skipped: {reason}"
    return {"suite": suite, "config": config, "reference": ref_name, "skipped": reason}


def failed_row(suite, config, ref_name, reason):
    return {"suite": suite, "config": config, "reference": ref_name, "failed": True,
            "errors": [reason]}


# ---------------------------------------------------------------------------------------------
# echo


KV = re.compile(r"(\w+)=([-+0-9.eE]+)")


def echo_load(args, client_argv, connections, size):
    def load(port):
        argv = ["taskset", "-c", str(args.client_cpu)] + [
            a.format(host="127.0.0.1", port=port, connections=connections, size=size,
                     duration=args.duration) for a in client_argv]
        status, out, err = run_client(argv, timeout=args.duration + 60)
        lines = [line for line in out.splitlines() if line.strip()]
        fields = dict(KV.findall(lines[-1])) if lines else {}
        res = {"client_status": status, "client_out": lines[-1] if lines else "",
               "client_err": err[-500:]}
        needed = ("messages", "messages_per_s", "errors")
        if status != 0 or not all(k in fields for k in needed):
            res["ok"] = False
            res["error"] = (f"echo_client status {status}: "
                            f"{(err.strip() or out.strip())[-300:]}")
            return res
        res.update({k: float(v) for k, v in fields.items()})
        return load_result(res, res["errors"] == 0,
                           f"echo_client counted {int(res['errors'])} errors",
                           res["messages_per_s"], res["messages"])
    return load


def load_result(res, ok, error, value, count):
    """A load run's result: ok or the error, the figure (per second) and what it counted."""
    res["ok"] = ok
    if not ok:
        res["error"] = error
    res["value"], res["count"] = value, count
    return res


def build_go(workdir):
    """Builds bench/reference/echo.go into workdir; returns (argv, None) or (None, reason)."""
    go = shutil.which("go")
    if not go:
        return None, "go is not installed (apt-get install golang-go)"
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "echo.go")
    exe = os.path.join(workdir, "echo_go")
    shutil.copy(src, os.path.join(workdir, "echo.go"))  # outside any module: a plain file build
    proc = subprocess.run([go, "build", "-o", exe, "echo.go"], cwd=workdir, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        return None, f"go build failed: {proc.stderr.strip()[-300:]}"
    return [exe, "{port}"], None


def suite_echo(args, rows, workdir):
    b = args.build
    weft_server = shlex.split(args.weft_echo_cmd) if args.weft_echo_cmd else [
        f"{b}/examples/echo_server", "--port", "{port}"]
    client = shlex.split(args.echo_client_cmd) if args.echo_client_cmd else [
        f"{b}/examples/echo_client", "--host", "{host}", "--port", "{port}",
        "--connections", "{connections}", "--size", "{size}", "--duration", "{duration}"]
    uring = shlex.split(args.echo_uring_cmd) if args.echo_uring_cmd else [
        f"{b}/bench/echo_uring", "{port}"]
    refs = [("echo_uring", uring),
            ("echo_epoll", [f"{b}/bench/echo_epoll", "{port}"])]
    if args.quick:
        refs = refs[:1]
    else:
        go_argv, why = build_go(workdir)
        refs.append(("go", go_argv) if go_argv else ("go", why))
    sizes, conns = ((64,), (50,)) if args.quick else (ECHO_SIZES, ECHO_CONNECTIONS)

    for size in sizes:
        for n in conns:
            config = f"size={size} connections={n}"
            problem = missing_program(client[0], "load generator") or \
                missing_program(weft_server[0], "weft server")
            if problem:
                for name, _ in refs:
                    rows.append(failed_row("echo", config, name, problem))
                continue
            sides = [("weft", weft_server)]
            for name, argv in refs:
                if isinstance(argv, str):
                    rows.append(skipped_row("echo", config, name, argv))
                elif missing_program(argv[0], name):
                    rows.append(failed_row("echo", config, name, missing_program(argv[0], name)))
                else:
                    sides.append((name, argv))
            if len(sides) < 2:
                continue
            load = echo_load(args, client, n, size)
            runs = [(name, (lambda name=name, argv=argv: run_server_sample(
                name, argv, args, workdir, load))) for name, argv in sides]
            compare(rows, "echo", config, runs, args.pairs, "msg/s")


def run_server_sample(name, argv_template, args, workdir, load, **fmt):
    port = free_port()
    argv = [a.format(port=port, **fmt) for a in argv_template]
    return measured(name, argv, port, args, workdir, load)


def missing_program(path, what):
    if os.sep in path:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{what} {path} is missing (build it first)"
    elif not shutil.which(path):
        return f"{what} {path} is not installed"
    return None


# ---------------------------------------------------------------------------------------------
# http

NGINX_CONF = """\
# Generated by bench/servers.py: one worker, a single process, Debian's defaults otherwise,
# except keep-alive connections that are never closed by a request count.
worker_processes 1;
master_process off;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    types {{ text/html html; }}
    default_type text/plain;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{{port}};
        root {root};
        location = / {{ return 200 "Hello, World!"; }}
    }}
}}
"""

WRK_UNITS = {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6}


def wrk_load(args, path):
    def load(port):
        argv = ["taskset", "-c", str(args.client_cpu), "wrk", "-t1", f"-c{HTTP_CONNECTIONS}",
                f"-d{args.duration}s", f"http://127.0.0.1:{port}{path}"]
        status, out, err = run_client(argv, timeout=args.duration + 60)
        res = {"client_status": status, "client_out": out[-2000:], "client_err": err[-500:]}
        rps = re.search(r"Requests/sec:\s*([0-9.]+)", out)
        total = re.search(r"(\d+) requests in", out)
        if status != 0 or not rps or not total:
            res["ok"] = False
            res["error"] = f"wrk status {status}: {(err.strip() or out.strip())[-300:]}"
            return res
        res["requests_per_s"] = float(rps.group(1))
        res["requests"] = int(total.group(1))
        transfer = re.search(r"Transfer/sec:\s*([0-9.]+)([KMG]?B)", out)
        if transfer:
            scale = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}[transfer.group(2)]
            res["bytes_per_s"] = float(transfer.group(1)) * scale
        bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
        sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                         out)
        res["non_2xx"] = int(bad.group(1)) if bad else 0
        res["socket_errors"] = sum(map(int, sock.groups())) if sock else 0
        return load_result(res, res["non_2xx"] == 0 and res["requests"] > 0,
                           f"{res['non_2xx']} non-2xx responses of {res['requests']}",
                           res["requests_per_s"], res["requests"])
    return load


def check_body(port, path, expected):
    """One GET on a fresh connection; raises unless the body is the expected one."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    if " 200 " not in status + " ":
        raise RuntimeError(f"GET {path}: {status!r}")
    if body != expected:
        raise RuntimeError(f"GET {path}: body of {len(body)} bytes is not the expected "
                           f"{len(expected)} bytes")


def suite_http(args, rows, workdir):
    configs = [("hello", "/", b"Hello, World!")]
    root = os.path.join(workdir, "www")
    os.makedirs(root, exist_ok=True)
    file_body = os.urandom(HTTP_FILE_BYTES)
    with open(os.path.join(root, "file"), "wb") as f:
        f.write(file_body)
    if not args.quick:
        configs.append(("file 100 KiB", "/file", file_body))
    missing = [p for p in ("wrk", "nginx") if not shutil.which(p) and
               not os.path.exists(f"/usr/sbin/{p}")]
    if "wrk" in missing:
        for name, _, _ in configs:
            rows.append(skipped_row("http", f"{name} c={HTTP_CONNECTIONS}", "nginx",
                                    "skipped: wrk/nginx missing (apt-get install wrk nginx-light)"))
        return
    weft_server = shlex.split(args.weft_http_cmd) if args.weft_http_cmd else [
        f"{args.build}/examples/http_server", "--port", "{port}", "--root", "{root}"]
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    ndir = os.path.join(workdir, "nginx")
    os.makedirs(ndir, exist_ok=True)
    conf_template = NGINX_CONF.format(dir=ndir, root=root)

    def nginx_sample(load, path, body):
        port = free_port()
        conf = os.path.join(ndir, f"nginx.{port}.conf")
        with open(conf, "w") as f:
            f.write(conf_template.replace("{port}", str(port)))
        argv = [nginx, "-p", ndir, "-e", os.path.join(ndir, "error.log"), "-c", conf]
        return measured("nginx", argv, port, args, workdir, checked(load, path, body))

    def weft_sample(load, path, body):
        port = free_port()
        argv = [a.format(port=port, root=root) for a in weft_server]
        return measured("weft", argv, port, args, workdir, checked(load, path, body))

    for name, path, body in configs:
        config = f"{name} c={HTTP_CONNECTIONS}"
        if "nginx" in missing:
            rows.append(skipped_row("http", config, "nginx",
                                    "skipped: wrk/nginx missing (apt-get install wrk nginx-light)"))
            continue
        problem = missing_program(weft_server[0], "weft server")
        if problem:
            rows.append(failed_row("http", config, "nginx", problem))
            continue
        load = wrk_load(args, path)
        compare(rows, "http", config,
                [("weft", lambda: weft_sample(load, path, body)),
                 ("nginx", lambda: nginx_sample(load, path, body))],
                args.pairs, "req/s")
    args.nginx_conf = conf_template


def checked(load, path, body):
    """The load, after one request that checks the answer is the expected body."""
    def run(port):
        check_body(port, path, body)
        return load(port)
    return run


# ---------------------------------------------------------------------------------------------
# file


def on_tmpfs(path):
    best, fstype = "", None
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1].replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, parts[2]
    return fstype == "tmpfs"


def timed_child(argv):
    """Runs argv pinned to the server CPU; returns (status, out, err, cpu_s, wall_s)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc.returncode, proc.stdout, proc.stderr, cpu, wall


def suite_file(args, rows, workdir_unused):
    size = args.file_size_mib * 1024 * 1024
    config = f"{args.file_size_mib} MiB, page cache"
    reader = shlex.split(args.weft_file_cmd) if args.weft_file_cmd else [
        f"{args.build}/bench/file_read", "{path}"]
    problem = missing_program(reader[0], "weft reader")
    if problem:
        rows.append(failed_row("file", config, "dd", problem))
        return
    base = "/var/tmp" if on_tmpfs("/tmp") else tempfile.gettempdir()
    if shutil.disk_usage(base).free < size + (256 << 20):
        rows.append(failed_row("file", config, "dd", f"not enough free space in {base}"))
        return
    fd, path = tempfile.mkstemp(prefix="weft-file-read-", dir=base)
    os.close(fd)
    try:
        log(f"  file: writing {args.file_size_mib} MiB of zeros to {path}")
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M",
                        f"count={args.file_size_mib}", "status=none"], check=True)
        subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)  # warm the cache
        pin = ["taskset", "-c", str(args.server_cpu)]

        def weft_run():
            s = {"server": "weft", "ok": False}
            try:
                status, out, err, cpu, wall = timed_child(
                    pin + [a.format(path=path) for a in reader])
                fields = dict(KV.findall(out.strip().splitlines()[-1])) if out.strip() else {}
                s.update({"status": status, "out": out[-300:], "cpu_s": cpu, "wall_s": wall})
                if status != 0 or "bytes" not in fields or "seconds" not in fields:
                    s["error"] = f"file_read status {status}: {(err.strip() or out.strip())[-300:]}"
                elif int(float(fields["bytes"])) != size:
                    s["error"] = f"file_read read {fields['bytes']} bytes, not {size}"
                else:
                    s["bytes"], s["seconds"] = int(float(fields["bytes"])), float(fields["seconds"])
                    s["value"] = s["bytes"] / s["seconds"] / 1e6
                    s["ok"] = True
            except Exception as e:
                s["error"] = f"{type(e).__name__}: {e}"
            return s

        def dd_run():
            s = {"server": "dd", "ok": False}
            try:
                status, out, err, cpu, wall = timed_child(
                    pin + ["dd", f"if={path}", "of=/dev/null", "bs=1M"])
                m = re.search(r"^(\d+) bytes .* copied, ([0-9.e-]+) s", err, re.M)
                s.update({"status": status, "out": err[-300:], "cpu_s": cpu, "wall_s": wall})
                if status != 0 or not m:
                    s["error"] = f"dd status {status}: {err.strip()[-300:]}"
                elif int(m.group(1)) != size:
                    s["error"] = f"dd copied {m.group(1)} bytes, not {size}"
                else:
                    s["bytes"], s["seconds"] = int(m.group(1)), float(m.group(2))
                    s["value"] = s["bytes"] / s["seconds"] / 1e6
                    s["ok"] = True
            except Exception as e:
                s["error"] = f"{type(e).__name__}: {e}"
            return s

        compare(rows, "file", config, [("weft", weft_run), ("dd", dd_run)], args.pairs, "MB/s")
    finally:
        os.unlink(path)


# ---------------------------------------------------------------------------------------------
# report


def machine(args):
    """threads.py's machine, and what the servers suite adds: the build type, nginx, wrk and
    the CPUs the server and the load generator are pinned to."""
    buildtype = None
    try:
        with open(os.path.join(args.build, "meson-info", "intro-buildoptions.json")) as f:
            buildtype = next((o["value"] for o in json.load(f) if o["name"] == "buildtype"), None)
    except (OSError, ValueError):
        pass
    return {
        **threads.machine(args), "buildtype": buildtype,
        "nginx": (subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
                  if shutil.which("nginx") else None),
        "wrk": threads.first_line(["wrk", "-v"]) if shutil.which("wrk") else None,
        "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
    }


def fmt_num(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def print_table(rows, quick=False):
    head = ["suite", "config", "vs", "weft", "reference", "unit", "ratio", "goal", "",
            "cpu/1k weft", "cpu/1k ref", "cpu ratio", "goal", ""]
    table = []
    notes = []
    for r in rows:
        if "skipped" in r:
            table.append([r["suite"], r["config"], r["reference"], r["skipped"]])
            continue
        if "weft_median" not in r:
            table.append([r["suite"], r["config"], r["reference"], "FAILED"])
            notes.extend(f"{r['suite']} {r['config']} vs {r['reference']}: {e}"
                         for e in r.get("errors", []))
            continue
        table.append([
            r["suite"], r["config"], r["reference"], fmt_num(r["weft_median"]),
            fmt_num(r["reference_median"]), r["unit"], fmt_ratio(r["ratio_median"]),
            r["goal"] or "", r["verdict"] or "",
            fmt_num(r["weft_cpu_ms_per_1k"], 2), fmt_num(r["reference_cpu_ms_per_1k"], 2),
            fmt_ratio(r["cpu_ratio_median"]), r["cpu_goal"] or "", r["cpu_verdict"] or ""])
        if r.get("good_pairs", 0) < r.get("pairs", 0):
            notes.append(f"{r['suite']} {r['config']} vs {r['reference']}: only "
                         f"{r['good_pairs']} of {r['pairs']} pairs worked")
        notes.extend(f"{r['suite']} {r['config']} vs {r['reference']}: {e}"
                     for e in r.get("errors", []) + r.get("warnings", []))
    full = [row for row in table if len(row) == len(head)]
    widths = [max([len(head[i])] + [len(row[i]) for row in full]) for i in range(len(head))]
    def line(row):
        if len(row) < len(head):  # skipped or failed: the message spans the rest
            return "  ".join(c.ljust(widths[i]) for i, c in enumerate(row[:3])) + "  " + row[3]
        return "  ".join(c.rjust(widths[i]) if 3 <= i else c.ljust(widths[i])
                         for i, c in enumerate(row)).rstrip()
    print("servers benchmark: medians of the samples; ratio = median of the per-pair ratios "
          "weft / reference; cpu = server CPU ms per 1,000 messages or requests")
    print(line(head))
    print("-" * len(line(head)))
    for row in table:
        print(line(row))
    for n in dict.fromkeys(notes):
        print(f"note: {n}")
    if quick:
        print("note: --quick runs one short pair per row: a smoke test of the set-up, not a "
              "measurement (PASS/MISS there mean nothing)")


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="weft's echo, HTTP and file-read servers benchmark against references",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--build", default="build", help="meson build directory (default: build)")
    ap.add_argument("--pairs", type=int, default=5, help="interleaved pairs per comparison")
    ap.add_argument("--duration", type=int, default=3, help="seconds per load run")
    ap.add_argument("--only", action="append", choices=["echo", "http", "file"],
                    help="run only this suite (repeatable)")
    ap.add_argument("--file-size-mib", type=int, default=1024, help="file size for the file suite")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 pair, 1 s, 64 B/50 connections vs echo_uring, hello vs "
                         "nginx, 64 MiB file")
    ap.add_argument("--out", default="bench-results/servers.json", help="JSON output file")
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    # Overrides for testing the driver itself; templates with {port}, {root}, {path}, {host},
    # {connections}, {size}, {duration}.
    for opt in ("--weft-echo-cmd", "--echo-client-cmd", "--weft-http-cmd", "--weft-file-cmd",
                "--echo-uring-cmd"):
        ap.add_argument(opt, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.pairs, args.duration = 1, 1
        args.file_size_mib = min(args.file_size_mib, 64)
    if args.pairs < 1 or args.duration < 1 or args.file_size_mib < 1:
        ap.error("--pairs, --duration and --file-size-mib want positive numbers")
    ncpu = len(os.sched_getaffinity(0))
    for cpu in (args.server_cpu, args.client_cpu):
        if cpu not in os.sched_getaffinity(0):
            ap.error(f"CPU {cpu} is not available here ({ncpu} CPUs: "
                     f"{sorted(os.sched_getaffinity(0))}); pick --server-cpu/--client-cpu")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:  # inherited by every child: 500 connections on both sides
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    suites = args.only or ["echo", "http", "file"]
    rows = []
    started = datetime.datetime.now(datetime.timezone.utc)
    args.nginx_conf = None
    with tempfile.TemporaryDirectory(prefix="weft-servers-") as workdir:
        for name, fn in (("echo", suite_echo), ("http", suite_http), ("file", suite_file)):
            if name in suites:
                log(f"== {name}")
                try:
                    fn(args, rows, workdir)
                except Exception as e:  # keep going: the other suites still run
                    rows.append(failed_row(name, "-", "-", f"{type(e).__name__}: {e}"))
    print_table(rows, quick=args.quick)
    result = {
        "date": started.isoformat(timespec="seconds"),
        "command": [sys.executable] + sys.argv,
        "machine": machine(args),
        "settings": {k: v for k, v in vars(args).items() if k != "nginx_conf"},
        "nginx_conf": args.nginx_conf,
        "goals": {f"{s} vs {r} {m}": f"{op} {b}" for (s, r, m), (op, b) in GOALS.items()},
        "results": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"raw samples: {args.out}")
    return 1 if any(r.get("failed") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
