// The workloads both Tokio references time: each returns wall nanoseconds per item.
use std::time::Instant;

/// Spawns `n` trivial tasks, all alive at once, then awaits every JoinHandle in turn.
pub async fn ns_per_spawn_join(n: usize) -> f64 {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        handles.push(tokio::spawn(async {}));
    }
    for h in handles {
        h.await.expect("task panicked");
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Two spawned tasks pass a token back and forth `n` times over two mpsc channels of
/// `capacity`.
pub async fn ns_per_round_trip(n: usize, capacity: usize) -> f64 {
    let (ping_tx, mut ping_rx) = tokio::sync::mpsc::channel::<usize>(capacity);
    let (pong_tx, mut pong_rx) = tokio::sync::mpsc::channel::<usize>(capacity);
    let start = Instant::now();
    let echo = tokio::spawn(async move {
        while let Some(v) = ping_rx.recv().await {
            if pong_tx.send(v).await.is_err() {
                break;
            }
        }
    });
    let driver = tokio::spawn(async move {
        for i in 0..n {
            ping_tx.send(i).await.expect("echo task gone");
            pong_rx.recv().await.expect("echo task gone");
        }
    });
    driver.await.expect("task panicked");
    echo.await.expect("task panicked");
    start.elapsed().as_nanos() as f64 / n as f64
}
