// Reference for bench/threads_micro.cpp in Tokio, measured beside weft's multi-thread executor
// and Go (threads.go) in the same run (bench/threads.py, ./run bench threads).
//
//   tokio_threads [--runtime multi_thread|current_thread] [--procs 2] [--tasks N]
//                 [--round-trips N] [--capacity 1] [--only NAME]
//
// NAME is spawn_join or ping_pong. multi_thread runs --procs worker threads (2: the same two
// threads as weft's two workers). Stdout gets exactly one JSON object, {"runtime": ...,
// "workers": P, "results": [...]}, with the keys of threads.go; notes go to stderr.
//
//   spawn_join  spawn N trivial tasks, then await every JoinHandle in turn; wall time / N.
//   ping_pong   two tasks pass a token back and forth over two tokio::sync::mpsc channels of
//               --capacity (1 matches weft's bounded(1); Tokio has no unbuffered channel),
//               N round trips; wall time / N. The scheduler decides where they run (Tokio's
//               LIFO slot, as weft's).
//
// As in weft's and Go's versions, the clock starts after a 1 ms sleep that lets the runtime's
// threads start.
#[path = "options.rs"]
mod options;
#[path = "workloads.rs"]
mod workloads;

use std::time::Duration;

struct Args {
    runtime: String,
    procs: usize,
    tasks: usize,
    round_trips: usize,
    capacity: usize,
    only: String,
}

fn parse_args() -> Args {
    let o = options::parse(
        "tokio_threads",
        "[--runtime multi_thread|current_thread] [--procs N] [--tasks N] [--round-trips N] \
         [--capacity N] [--only spawn_join|ping_pong]",
        "multi_thread",
        &[("--procs", 2), ("--tasks", 1_000_000), ("--round-trips", 200_000), ("--capacity", 1)],
        &["spawn_join", "ping_pong"],
    );
    Args {
        runtime: o.runtime.clone(),
        procs: o.count("--procs"),
        tasks: o.count("--tasks"),
        round_trips: o.count("--round-trips"),
        capacity: o.count("--capacity"),
        only: o.only.clone(),
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

async fn spawn_join(n: usize) -> String {
    settle().await;
    let ns = workloads::ns_per_spawn_join(n).await;
    format!(r#"{{"name": "spawn_join", "tasks": {n}, "ns_per_task": {ns:.3}}}"#)
}

async fn ping_pong(n: usize, capacity: usize) -> String {
    settle().await;
    let ns = workloads::ns_per_round_trip(n, capacity).await;
    format!(
        r#"{{"name": "ping_pong", "round_trips": {n}, "capacity": {capacity}, "ns_per_round_trip": {ns:.3}}}"#
    )
}

fn main() {
    let a = parse_args();
    let workers = if a.runtime == "current_thread" { 1 } else { a.procs };
    let rt = if a.runtime == "current_thread" {
        tokio::runtime::Builder::new_current_thread().enable_time().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_time()
            .build()
    }
    .unwrap_or_else(|e| {
        eprintln!("tokio_threads: cannot build the runtime: {e}");
        std::process::exit(1);
    });
    eprintln!("tokio {} workers={workers}", a.runtime);
    let results = rt.block_on(async {
        let mut r = Vec::new();
        if a.only.is_empty() || a.only == "spawn_join" {
            r.push(spawn_join(a.tasks).await);
        }
        if a.only.is_empty() || a.only == "ping_pong" {
            r.push(ping_pong(a.round_trips, a.capacity).await);
        }
        r
    });
    println!(
        r#"{{"runtime": "tokio {}", "workers": {workers}, "results": [{}]}}"#,
        a.runtime,
        results.join(", ")
    );
}
