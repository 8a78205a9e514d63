//! Which deliveries were already handled, so a redelivered webhook or update is not answered
//! (and sent) twice. Kept in memory for a day, bounded in size; across restarts, AnyReply's
//! idempotency keys still make a redelivery cost no second reply or charge.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bounded, time-limited set of delivery ids.
#[derive(Debug)]
pub struct Seen {
    entries: Mutex<Entries>,
    ttl: Duration,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Entries {
    ids: HashSet<String>,
    order: VecDeque<(Instant, String)>,
}

impl Default for Seen {
    /// A day, a million ids: Telegram keeps updates for 24 hours.
    fn default() -> Self {
        Self::new(Duration::from_secs(24 * 3600), 1_000_000)
    }
}

impl Seen {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: Mutex::new(Entries::default()),
            ttl,
            capacity: capacity.max(1),
        }
    }

    /// True the first time `id` is offered (within the time and size limits).
    pub fn first_time(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some((at, _)) = entries.order.front() {
            if now.duration_since(*at) < self.ttl && entries.order.len() < self.capacity {
                break;
            }
            if let Some((_, old)) = entries.order.pop_front() {
                entries.ids.remove(&old);
            }
        }
        if !entries.ids.insert(id.to_owned()) {
            return false;
        }
        entries.order.push_back((now, id.to_owned()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_its_limits() {
        let seen = Seen::new(Duration::from_secs(60), 2);
        assert!(seen.first_time("a"));
        assert!(!seen.first_time("a"));
        assert!(seen.first_time("b"));
        assert!(seen.first_time("c")); // evicts "a"
        assert!(seen.first_time("a"));
        let brief = Seen::new(Duration::ZERO, 10);
        assert!(brief.first_time("x"));
        assert!(brief.first_time("x"));
    }
}
