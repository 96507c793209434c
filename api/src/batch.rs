//! Collecting queued requests into batches: the part shared by the
//! submission batcher ([`crate::submit`]) and the rate limit's coalescer
//! ([`crate::ratelimit`]).
//!
//! The rule, per batch: wait for a first item; take everything already
//! queued behind it, up to `max` items (and, for submissions, a byte
//! budget); then, if there is room left, wait for more until the *first*
//! item has waited `window` since it was queued, and no longer. Because the
//! window counts from the first item's arrival, not from when the batcher
//! got to it, a batcher that is behind (items queued while it committed the
//! previous batch) adds no wait at all: the window has already passed.
//!
//! A lone request does not wait out the window: when the previous batch
//! held a single item and nothing else is queued, the new item is taken
//! alone at once. Under load batches form by themselves (items queue while
//! a commit runs), and the window then merges what would have been many
//! small commits into one; at rest a request pays no window.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// What the collector needs to know about a queued item.
pub trait Queued {
    /// When it was queued.
    fn queued_at(&self) -> Instant;
    /// Its share of a batch's byte budget (0 when there is none).
    fn weight(&self) -> usize {
        0
    }
}

/// Limits of one batch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most items.
    pub max: usize,
    /// Longest the first item waits for company, from when it was queued.
    pub window: Duration,
    /// Most total weight; an item heavier than this goes alone.
    pub max_weight: usize,
}

/// Takes batches off a channel.
pub struct Collector<T> {
    rx: mpsc::Receiver<T>,
    /// Taken off the channel but over the last batch's budget: the first
    /// item of the next.
    carry: Option<T>,
    limits: Limits,
    last_len: usize,
}

impl<T: Queued> Collector<T> {
    /// Collects from `rx` within `limits`.
    pub fn new(rx: mpsc::Receiver<T>, limits: Limits) -> Collector<T> {
        Collector {
            rx,
            carry: None,
            limits,
            last_len: 0,
        }
    }

    /// The next batch (never empty), or `None` once every sender is gone
    /// and the queue is drained.
    pub async fn next(&mut self) -> Option<Vec<T>> {
        let first = match self.carry.take() {
            Some(item) => item,
            None => self.rx.recv().await?,
        };
        let deadline = first.queued_at() + self.limits.window;
        let mut weight = first.weight();
        let mut batch = vec![first];
        let mut lingered = false;
        while batch.len() < self.limits.max {
            let item = match self.rx.try_recv() {
                Ok(item) => item,
                Err(_) if batch.len() == 1 && self.last_len <= 1 && !lingered => break,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    lingered = true;
                    match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                        Ok(Some(item)) => item,
                        Ok(None) | Err(_) => break,
                    }
                }
            };
            if weight.saturating_add(item.weight()) > self.limits.max_weight {
                self.carry = Some(item);
                break;
            }
            weight = weight.saturating_add(item.weight());
            batch.push(item);
        }
        self.last_len = batch.len();
        Some(batch)
    }

    /// Items waiting in the channel (the queue depth).
    pub fn queued(&self) -> usize {
        self.rx.len() + usize::from(self.carry.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(Instant, usize);

    impl Queued for Item {
        fn queued_at(&self) -> Instant {
            self.0
        }
        fn weight(&self) -> usize {
            self.1
        }
    }

    fn limits(max: usize, window_ms: u64, max_weight: usize) -> Limits {
        Limits {
            max,
            window: Duration::from_millis(window_ms),
            max_weight,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_after_a_lone_batch_does_not_wait() {
        let (tx, rx) = mpsc::channel(16);
        let mut c = Collector::new(rx, limits(8, 50, usize::MAX));
        let t0 = Instant::now();
        tx.send(Item(Instant::now(), 0)).await.unwrap();
        assert_eq!(c.next().await.unwrap().len(), 1);
        assert_eq!(Instant::now(), t0, "no window at rest");
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_busy_batch_the_first_item_waits_up_to_the_window() {
        let (tx, rx) = mpsc::channel(16);
        let mut c = Collector::new(rx, limits(8, 50, usize::MAX));
        for _ in 0..3 {
            tx.send(Item(Instant::now(), 0)).await.unwrap();
        }
        assert_eq!(c.next().await.unwrap().len(), 3, "what was queued, at once");
        let t0 = Instant::now();
        tx.send(Item(t0, 0)).await.unwrap();
        let tx2 = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx2.send(Item(Instant::now(), 0)).await.unwrap();
        });
        let b = c.next().await.unwrap();
        assert_eq!(b.len(), 2, "the late one joined within the window");
        assert_eq!(Instant::now(), t0 + Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_counts_from_arrival_and_batches_are_bounded() {
        let (tx, rx) = mpsc::channel(64);
        let mut c = Collector::new(rx, limits(4, 50, usize::MAX));
        c.last_len = 2;
        tx.send(Item(Instant::now(), 0)).await.unwrap();
        tokio::time::advance(Duration::from_millis(60)).await;
        let t = Instant::now();
        assert_eq!(c.next().await.unwrap().len(), 1);
        assert_eq!(Instant::now(), t, "its window had passed while queued");
        for _ in 0..10 {
            tx.send(Item(Instant::now(), 0)).await.unwrap();
        }
        let sizes: Vec<usize> = [c.next().await, c.next().await, c.next().await]
            .into_iter()
            .map(|b| b.unwrap().len())
            .collect();
        assert_eq!(sizes, [4, 4, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_byte_budget_splits_batches_and_a_heavy_item_goes_alone() {
        let (tx, rx) = mpsc::channel(64);
        let mut c = Collector::new(rx, limits(100, 0, 10));
        for w in [4, 4, 4, 30, 1] {
            tx.send(Item(Instant::now(), w)).await.unwrap();
        }
        drop(tx);
        let mut sizes = Vec::new();
        while let Some(b) = c.next().await {
            sizes.push(b.iter().map(|i| i.1).collect::<Vec<_>>());
        }
        assert_eq!(sizes, [vec![4, 4], vec![4], vec![30], vec![1]]);
    }
}
