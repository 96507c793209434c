//! Warnings that could repeat per request or per connection are logged at
//! most once in 10 s; the rest go to debug (and their counters, where they
//! have one, count them all), so a flood of them cannot flood the log.

use std::sync::atomic::{AtomicU64, Ordering};

/// When the last warning of one kind was logged, in seconds since the Unix
/// epoch (0: never).
#[derive(Debug, Default)]
pub struct RateWarn(AtomicU64);

impl RateWarn {
    /// Never warned yet.
    pub const fn new() -> RateWarn {
        RateWarn(AtomicU64::new(0))
    }

    /// Whether 10 s have passed since the last warning; if so, now becomes
    /// the last one (one caller wins a race).
    pub fn now(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let prev = self.0.load(Ordering::Relaxed);
        now >= prev + 10
            && self
                .0
                .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_then_quiet() {
        let w = RateWarn::new();
        assert!(w.now());
        assert!(!w.now(), "a second warning within 10 s is not one");
    }
}
