//! One queue per customer: jobs of one key run one after another, in the order they were
//! queued; different keys run concurrently. Workers end when their queue has been idle a while.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Ordered queues by key.
#[derive(Debug, Clone)]
pub struct Queues {
    senders: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>>,
    workers: TaskTracker,
    idle: Duration,
}

impl Default for Queues {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

impl Queues {
    pub fn new(idle: Duration) -> Self {
        Self {
            senders: Arc::default(),
            workers: TaskTracker::new(),
            idle,
        }
    }

    /// Runs `job` after every job queued before under `key`.
    pub fn push(&self, key: &str, job: impl Future<Output = ()> + Send + 'static) {
        let mut job: Job = Box::pin(job);
        let mut senders = self
            .senders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = senders.get(key) {
            match sender.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => job = returned,
            }
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        let _ = sender.send(job);
        senders.insert(key.to_owned(), sender);
        self.workers
            .spawn(self.clone().work(key.to_owned(), receiver));
    }

    async fn work(self, key: String, mut receiver: mpsc::UnboundedReceiver<Job>) {
        loop {
            match tokio::time::timeout(self.idle, receiver.recv()).await {
                Ok(Some(job)) => job.await,
                Ok(None) => return,
                Err(_idle) => {
                    // Leave only with an empty queue, checked under the lock `push` takes.
                    let mut senders = self
                        .senders
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    match receiver.try_recv() {
                        Ok(job) => {
                            drop(senders);
                            job.await;
                        }
                        Err(_) => {
                            senders.remove(&key);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Takes no more jobs and waits until every queued one has run.
    pub async fn finish(&self) {
        self.senders
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
        self.workers.close();
        self.workers.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_keys_jobs_run_in_order_others_alongside() {
        let queues = Queues::new(Duration::from_millis(50));
        let log = Arc::new(Mutex::new(Vec::new()));
        for (key, name, pause) in [
            ("a", "a1", 60),
            ("a", "a2", 0),
            ("b", "b1", 0),
            ("a", "a3", 0),
        ] {
            let log = log.clone();
            queues.push(key, async move {
                tokio::time::sleep(Duration::from_millis(pause)).await;
                log.lock().unwrap().push(name);
            });
        }
        tokio::time::sleep(Duration::from_millis(150)).await; // the workers go idle and end
        let late = log.clone();
        queues.push("a", async move { late.lock().unwrap().push("a4") });
        queues.finish().await;
        let log = log.lock().unwrap().clone();
        assert_eq!(log[0], "b1", "another key does not wait");
        let only_a: Vec<&str> = log.iter().copied().filter(|n| n.starts_with('a')).collect();
        assert_eq!(only_a, ["a1", "a2", "a3", "a4"]);
    }
}
