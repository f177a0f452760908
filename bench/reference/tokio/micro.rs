// Reference micro-benchmarks in Tokio, measured beside weft's own (bench/micro) and Go's
// (micro.go) in the same run of ./run bench micro.
//
//   tokio_micro --runtime current_thread|multi_thread [--workers N] [--tasks N]
//               [--switches N] [--round-trips N] [--only NAME]
//
// NAME is one of spawn_join, switch, channel_round_trip. Stdout gets exactly one JSON object,
// {"runtime": ..., "results": [...]}, with the keys of micro.go; notes go to stderr.
//
//   spawn_join          spawn N trivial tasks, all alive at once, then await every JoinHandle
//                       in turn from the block_on future; wall time / N.
//   switch              two spawned tasks each call tokio::task::yield_now in a loop; every
//                       yield is one switch; wall time / N. Tokio 1.24 defers a yielded task's
//                       wake-up until the scheduler has polled its driver, so this includes
//                       the driver's turn (a non-blocking timer check here: no I/O driver).
//   channel_round_trip  two spawned tasks pass a token back and forth over two
//                       tokio::sync::mpsc channels of capacity 1; wall time / round trip.
//
// multi_thread uses --workers worker threads (default 1, so that both runtimes run the tasks
// on one thread and differ only in the scheduler; ./run also runs it with 2).
#[path = "options.rs"]
mod options;
#[path = "workloads.rs"]
mod workloads;

use std::time::Instant;

struct Args {
    runtime: String,
    workers: usize,
    tasks: usize,
    switches: usize,
    round_trips: usize,
    only: String,
}

fn parse_args() -> Args {
    let o = options::parse(
        "tokio_micro",
        "--runtime current_thread|multi_thread [--workers N] [--tasks N] [--switches N] \
         [--round-trips N] [--only spawn_join|switch|channel_round_trip]",
        "current_thread",
        &[("--workers", 1), ("--tasks", 1_000_000), ("--switches", 1_000_000),
          ("--round-trips", 500_000)],
        &["spawn_join", "switch", "channel_round_trip"],
    );
    if o.count("--switches") < 2 {
        o.usage("--switches must be at least 2");
    }
    Args {
        runtime: o.runtime.clone(),
        workers: o.count("--workers"),
        tasks: o.count("--tasks"),
        switches: o.count("--switches"),
        round_trips: o.count("--round-trips"),
        only: o.only.clone(),
    }
}

async fn spawn_join(n: usize) -> String {
    let ns = workloads::ns_per_spawn_join(n).await;
    format!(r#"{{"name": "spawn_join", "tasks": {n}, "ns_per_task": {ns:.3}}}"#)
}

async fn switch(n: usize) -> String {
    let each = n / 2;
    let start = Instant::now();
    let yielder = move || {
        tokio::spawn(async move {
            for _ in 0..each {
                tokio::task::yield_now().await;
            }
        })
    };
    let (a, b) = (yielder(), yielder());
    a.await.expect("task panicked");
    b.await.expect("task panicked");
    let ns = start.elapsed().as_nanos() as f64 / (2 * each) as f64;
    format!(r#"{{"name": "switch", "switches": {}, "ns_per_switch": {ns:.3}}}"#, 2 * each)
}

async fn channel_round_trip(n: usize) -> String {
    let ns = workloads::ns_per_round_trip(n, 1).await;
    format!(r#"{{"name": "channel_round_trip", "round_trips": {n}, "ns_per_round_trip": {ns:.3}}}"#)
}

fn main() {
    let a = parse_args();
    let rt = if a.runtime == "current_thread" {
        tokio::runtime::Builder::new_current_thread().enable_time().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(a.workers)
            .enable_time()
            .build()
    }
    .unwrap_or_else(|e| {
        eprintln!("tokio_micro: cannot build the runtime: {e}");
        std::process::exit(1);
    });
    let workers = if a.runtime == "current_thread" { 1 } else { a.workers };
    eprintln!("tokio {} workers={workers}", a.runtime);
    let results = rt.block_on(async {
        let mut r = Vec::new();
        if a.only.is_empty() || a.only == "spawn_join" {
            r.push(spawn_join(a.tasks).await);
        }
        if a.only.is_empty() || a.only == "switch" {
            r.push(switch(a.switches).await);
        }
        if a.only.is_empty() || a.only == "channel_round_trip" {
            r.push(channel_round_trip(a.round_trips).await);
        }
        r
    });
    println!(
        r#"{{"runtime": "tokio {} workers={workers}", "results": [{}]}}"#,
        a.runtime,
        results.join(", ")
    );
}
