#!/usr/bin/env python3
"""Python's side of bench/process_bench's spawn figures: start a program and wait for it, with
asyncio (and subprocess.run, for context). bench/processes.py (./run bench processes) runs both
in one run.

    python3 bench/reference/asyncio_spawn.py [--children 2000] [--concurrency 8]
                                             [--warmup 100] [--program /bin/true]

spawn             --children times asyncio.create_subprocess_exec(program), then
                  await proc.wait(), one after the other; wall / children (us per child).
spawn_concurrent  the same number of children, --concurrency tasks each spawning and waiting for
                  its share one after the other (asyncio.gather); wall / children.
subprocess_run    --children times subprocess.run([program]) (blocking); wall / children.

Each runs under asyncio.run with the default event loop and child watcher, after --warmup
children. Stdout gets one line per measurement, in process_bench's format: the name, then
key=value numbers. Exit status 0 when it ran, 1 when it failed, 2 on bad arguments.
"""
import argparse
import asyncio
import subprocess
import time


async def spawn_wait_many(program, n):
    for _ in range(n):
        proc = await asyncio.create_subprocess_exec(program)
        status = await proc.wait()
        if status != 0:
            raise RuntimeError(f"{program} ended with status {status}")


async def timed(program, warmup, children, concurrency):
    await spawn_wait_many(program, warmup)
    start = time.perf_counter()
    if concurrency == 1:
        await spawn_wait_many(program, children)
    else:
        share = children // concurrency
        shares = [share] * (concurrency - 1) + [children - share * (concurrency - 1)]
        await asyncio.gather(*(spawn_wait_many(program, n) for n in shares))
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--children", type=int, default=2_000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--program", default="/bin/true")
    args = ap.parse_args()
    if args.children < 1 or args.concurrency < 1 or args.warmup < 0:
        ap.error("--children and --concurrency want 1 or more, --warmup 0 or more")

    for concurrency in (1, args.concurrency):
        wall = asyncio.run(timed(args.program, args.warmup, args.children, concurrency))
        name = "spawn" if concurrency == 1 else "spawn_concurrent"
        print(f"{name} concurrency={concurrency} children={args.children} wall_s={wall:.6f} "
              f"us_per_child={wall * 1e6 / args.children:.3f}", flush=True)
        if args.concurrency == 1:
            break

    for _ in range(args.warmup):
        subprocess.run([args.program], check=True)
    start = time.perf_counter()
    for _ in range(args.children):
        subprocess.run([args.program], check=True)
    wall = time.perf_counter() - start
    print(f"subprocess_run concurrency=1 children={args.children} wall_s={wall:.6f} "
          f"us_per_child={wall * 1e6 / args.children:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    from reference_main import run
    run(main)
