#!/usr/bin/env python3
"""Python's side of bench/process_bench's round trips: multiprocessing.Pool, measured the way
weft's process_pool is (bench/processes.py, ./run bench processes, runs both in one run).

    python3 bench/reference/pool_apply.py [--jobs 20000] [--warmup 1000] [--map-items 10000]
                                          [--start-method fork|spawn|forkserver]

pool_start            Pool(1) created, then the first apply returns (both start methods,
                      fork=1 / fork=0; the other figures use --start-method, default Python's
                      own default: fork on Linux before 3.14).
roundtrip             Pool(1): --warmup applies, then --jobs sequential
                      pool.apply(square, (x,)); wall / jobs (us per job).
roundtrip_concurrent  Pool(2), 2 threads each calling pool.apply for --jobs/2 jobs at once
                      (weft: 2 tasks submitting to 2 workers); wall / jobs.
map                   pool.map(square, items) with the default chunksize over --map-items items,
                      Pool(1) and Pool(2), after a warm-up map; wall / items (us per item).

Stdout gets one line per measurement, in process_bench's format: the name, then key=value
numbers. Exit status 0 when it ran, 1 when it failed, 2 on bad arguments.
"""
import argparse
import multiprocessing
import threading
import time


def square(x):
    return x * x


def check(x, got):
    if got != x * x:
        raise RuntimeError(f"square({x}) came back as {got}")


def submit_many(pool, first, n):
    for x in range(first, first + n):
        check(x, pool.apply(square, (x,)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--warmup", type=int, default=1_000)
    ap.add_argument("--map-items", type=int, default=10_000)
    ap.add_argument("--start-method", default=None,
                    choices=multiprocessing.get_all_start_methods())
    args = ap.parse_args()
    if args.jobs < 2 or args.warmup < 0 or args.map_items < 1:
        ap.error("--jobs wants 2 or more, --warmup 0 or more, --map-items 1 or more")
    method = args.start_method or multiprocessing.get_start_method()
    ctx = multiprocessing.get_context(method)

    for start in ("spawn", "fork"):
        t0 = time.perf_counter()
        pool = multiprocessing.get_context(start).Pool(1)
        constructed = time.perf_counter() - t0
        check(1, pool.apply(square, (1,)))
        first = time.perf_counter() - t0
        pool.close()
        pool.join()
        print(f"pool_start workers=1 fork={int(start == 'fork')} constructor_s={constructed:.6f} "
              f"first_result_s={first:.6f}", flush=True)

    fork = int(method == "fork")
    for workers in (1, 2):
        with ctx.Pool(workers) as pool:
            submit_many(pool, 0, args.warmup)
            start = time.perf_counter()
            if workers == 1:
                submit_many(pool, 0, args.jobs)
            else:
                share = args.jobs // 2
                errors = []

                def submitter(first, n):
                    try:
                        submit_many(pool, first, n)
                    except Exception as e:  # reported after the join
                        errors.append(e)
                threads = [threading.Thread(target=submitter, args=(0, share)),
                           threading.Thread(target=submitter, args=(share, args.jobs - share))]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                if errors:
                    raise errors[0]
            wall = time.perf_counter() - start
        name = "roundtrip" if workers == 1 else "roundtrip_concurrent"
        print(f"{name} workers={workers} submitters={workers} fork={fork} jobs={args.jobs} "
              f"wall_s={wall:.6f} us_per_job={wall * 1e6 / args.jobs:.3f}", flush=True)

    items = list(range(args.map_items))
    for workers in (1, 2):
        with ctx.Pool(workers) as pool:
            pool.map(square, items)
            start = time.perf_counter()
            got = pool.map(square, items)
            wall = time.perf_counter() - start
        for x, y in zip(items, got):
            check(x, y)
        if len(got) != len(items):
            raise RuntimeError("map gave a wrong number of results")
        print(f"map workers={workers} fork={fork} items={args.map_items} wall_s={wall:.6f} "
              f"us_per_item={wall * 1e6 / args.map_items:.3f}", flush=True)
    stop_resource_tracker()
    return 0


def stop_resource_tracker():
    """The spawn start method starts multiprocessing's resource tracker, which otherwise exits
    only after this process, as an orphan nobody reaps (./run test's orphan check reports it).
    Stop and reap it now: CPython's own shutdown does the same through this private call."""
    from multiprocessing import resource_tracker
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    if tracker is not None and hasattr(tracker, "_stop"):
        tracker._stop()


if __name__ == "__main__":
    from reference_main import run
    run(main)
