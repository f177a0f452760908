#!/usr/bin/env python3
"""CPython's side of the contrast benchmark's countdown (bench/contrast.py, ./run bench): the
seed's `while n > 0: n -= 1` over --count, run sequentially, split over threads, or split over
a multiprocessing.Pool, measured the way build/bench/contrast measures weft's countdown.

    python3 bench/reference/countdown.py --mode=sequential|threads|pool [--workers=N]
                                         [--count=C]

sequential  countdown(C) once in the main thread (--workers is ignored, reported as 1).
threads     N threading.Threads, each counting its part of C (the parts add up to C exactly),
            started together and joined: the GIL lets one count at a time.
pool        multiprocessing.Pool(N) with the default start method (stated on stdout), the N
            parts given to pool.map with chunksize 1; the pool's start-up and shutdown are
            inside the wall time, as weft's process pool's are.

Stdout: human lines, then as the LAST line space-separated key=value numbers, the contrast
program's format: wall_s cpu_s peak_rss_kib workers.
  cpu_s         user+system time of this process and (pool) of its reaped worker processes.
  peak_rss_kib  this process's peak resident set (VmHWM); for pool, plus each worker's own
                peak as the worker measured it after its part (summed over distinct worker
                pids; pages a forked worker shares with the parent count in both).
Exit status 0 when it ran, 1 when it failed (reason on stderr), 2 on bad arguments.
"""
import argparse
import multiprocessing
import os
import platform
import resource
import sys
import threading
import time


def countdown(n):
    while n > 0:
        n -= 1


def peak_rss_kib():
    """This process's own peak RSS. Not getrusage's ru_maxrss: Linux carries that across
    execve, so a child started by a big parent would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def pool_part(n):
    """A pool worker's job: its part of the countdown, then who it is and its peak RSS so that
    the parent can add up the workers' memory (RUSAGE_CHILDREN gives only the largest one)."""
    countdown(n)
    return os.getpid(), peak_rss_kib()


def parts(count, n):
    share, extra = divmod(count, n)
    return [share + (1 if i < extra else 0) for i in range(n)]


def cpu_time(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--mode", required=True, choices=("sequential", "threads", "pool"))
    ap.add_argument("--workers", type=int, default=1, help="threads or pool processes (N)")
    ap.add_argument("--count", type=int, default=100_000_000, help="total count (the seed's 1e8)")
    args = ap.parse_args()
    if args.workers < 1 or args.count < 1:
        ap.error("--workers and --count want a positive number")
    workers = 1 if args.mode == "sequential" else args.workers
    print(f"python {platform.python_implementation()} {platform.python_version()}, "
          f"countdown of {args.count:,} in mode {args.mode} over {workers}")

    cpu_before = cpu_time(resource.RUSAGE_SELF) + cpu_time(resource.RUSAGE_CHILDREN)
    worker_rss = {}
    start = time.perf_counter()
    if args.mode == "sequential":
        countdown(args.count)
    elif args.mode == "threads":
        threads = [threading.Thread(target=countdown, args=(n,))
                   for n in parts(args.count, workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        method = multiprocessing.get_start_method()
        print(f"multiprocessing start method {method} (the default here)")
        with multiprocessing.Pool(workers) as pool:
            for pid, rss in pool.map(pool_part, parts(args.count, workers), chunksize=1):
                worker_rss[pid] = max(rss, worker_rss.get(pid, 0))
            pool.close()
            pool.join()  # the workers are reaped here: their CPU time is in RUSAGE_CHILDREN
    wall = time.perf_counter() - start
    cpu = cpu_time(resource.RUSAGE_SELF) + cpu_time(resource.RUSAGE_CHILDREN) - cpu_before
    rss = peak_rss_kib() + sum(worker_rss.values())
    print(f"wall_s={wall:.6f} cpu_s={cpu:.6f} peak_rss_kib={rss} workers={workers}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # a failed run says why on stderr, status 1 (argparse's own is 2)
        print(f"countdown.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
