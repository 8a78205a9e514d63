//! What the workspace's tests share (feature `testing`): one way to wait for what a test can
//! only see, with one deadline.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long [`eventually`] waits: long enough for a loaded 2-core machine, short enough that a
/// test waiting for what never comes fails in reasonable time.
pub const EVENTUALLY_DEADLINE: Duration = Duration::from_secs(15);

/// Waits until `done` holds, asking every 20 ms; fails the test, naming `what`, after
/// [`EVENTUALLY_DEADLINE`]. For what a test cannot be told of but can see (a row, a request a
/// stub received); where the code under test can signal, wait for the signal instead.
pub async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < EVENTUALLY_DEADLINE,
            "timed out after {EVENTUALLY_DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
