//! Bounded waits: a condition is checked until it holds or a deadline
//! passes, and a timeout panics with one message naming what was awaited,
//! for how long, and what the condition last saw.
//!
//! Three flavours of the one rule:
//! - [`eventually`] polls an async condition; its clock is tokio's, so
//!   under a paused runtime (`#[tokio::test(start_paused = true)]`) the
//!   deadline is in simulated time and the waits auto-advance.
//! - [`eventually_blocking`] polls a plain closure on the wall clock, for
//!   tests that drive processes and namespaces from a std thread.
//! - [`eventually_watch`] checks a `watch` channel's value at every change
//!   instead of polling, so a test that times a transition sees it the
//!   moment it is published, not up to one poll later.
//!
//! A condition returns an [`Outcome`]: `bool`, `Option<T>` (the value is
//! returned when it is `Some`) or `Result<T, E>` (`Err` carries what was
//! seen, shown in the panic message when time runs out).
//!
//! Argument order everywhere: `(within, what, condition)`.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::Duration;

/// Poll period of [`eventually`] and [`eventually_blocking`].
pub const POLL: Duration = Duration::from_millis(10);

/// What a condition reports at one check: done, with a value, or not yet,
/// perhaps with what it saw.
pub trait Outcome {
    /// What the wait returns once the condition holds.
    type Value;
    /// `Ok(value)` when the condition holds; `Err(seen)` otherwise.
    fn check(self) -> Result<Self::Value, Option<String>>;
}

impl Outcome for bool {
    type Value = ();
    fn check(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn check(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;
    fn check(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

/// One bounded wait: how long, what for, and how often to look.
#[derive(Clone, Debug)]
pub struct Wait {
    within: Duration,
    what: String,
    every: Duration,
}

impl Wait {
    /// A wait of at most `within` for `what` (named in the panic message),
    /// polling every [`POLL`].
    pub fn new(within: Duration, what: impl Into<String>) -> Wait {
        Wait {
            within,
            what: what.into(),
            every: POLL,
        }
    }

    /// Polls every `every` instead: slower where each check is costly (it
    /// runs a process), faster where a test releases something the moment
    /// it appears.
    pub fn every(mut self, every: Duration) -> Wait {
        self.every = every;
        self
    }

    /// The panic of a wait that ran out of time.
    fn expired(&self, seen: Option<String>) -> ! {
        match seen {
            Some(seen) => panic!(
                "timed out after {:?} waiting for {}; last seen: {seen}",
                self.within, self.what
            ),
            None => panic!(
                "timed out after {:?} waiting for {} (the condition never held)",
                self.within, self.what
            ),
        }
    }

    /// Polls `cond` on tokio's clock until it holds; returns its value.
    pub async fn until<O, F, Fut>(&self, mut cond: F) -> O::Value
    where
        O: Outcome,
        F: FnMut() -> Fut,
        Fut: Future<Output = O>,
    {
        let deadline = tokio::time::Instant::now() + self.within;
        loop {
            let seen = match cond().await.check() {
                Ok(v) => return v,
                Err(seen) => seen,
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                self.expired(seen);
            }
            // One last check at the deadline itself.
            tokio::time::sleep(self.every.min(deadline - now)).await;
        }
    }

    /// Polls `cond` on the wall clock, sleeping the thread between checks.
    pub fn until_blocking<O: Outcome>(&self, cond: impl FnMut() -> O) -> O::Value {
        self.try_until_blocking(cond)
            .unwrap_or_else(|seen| self.expired(seen))
    }

    /// [`Wait::until_blocking`] for a caller that judges a timeout itself
    /// (the soak records a stuck event and carries on): `Err(last seen)`
    /// instead of a panic.
    pub fn try_until_blocking<O: Outcome>(
        &self,
        mut cond: impl FnMut() -> O,
    ) -> Result<O::Value, Option<String>> {
        let deadline = std::time::Instant::now() + self.within;
        loop {
            let seen = match cond().check() {
                Ok(v) => return Ok(v),
                Err(seen) => seen,
            };
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(seen);
            }
            std::thread::sleep(self.every.min(deadline - now));
        }
    }
}

/// Waits at most `within` (tokio's clock) for the async `cond` to hold,
/// polling every [`POLL`]; returns its value. Panics naming `what`.
pub async fn eventually<O, F, Fut>(within: Duration, what: &str, cond: F) -> O::Value
where
    O: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    Wait::new(within, what).until(cond).await
}

/// Waits at most `within` (wall clock) for `cond` to hold, polling every
/// [`POLL`]; returns its value. Panics naming `what`.
pub fn eventually_blocking<O: Outcome>(
    within: Duration,
    what: &str,
    cond: impl FnMut() -> O,
) -> O::Value {
    Wait::new(within, what).until_blocking(cond)
}

/// Waits at most `within` (tokio's clock) until `pred` holds for the
/// channel's value, checking it now and at every change; returns that
/// value and marks it seen. Panics naming `what`, with the last value.
pub async fn eventually_watch<T: Clone + Debug>(
    rx: &mut tokio::sync::watch::Receiver<T>,
    within: Duration,
    what: &str,
    pred: impl Fn(&T) -> bool,
) -> T {
    let wait = Wait::new(within, what);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let v = rx.borrow_and_update().clone();
        if pred(&v) {
            return v;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => panic!("the channel closed while waiting for {what}; last seen: {v:#?}"),
            Err(_) => wait.expired(Some(format!("{v:#?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn panic_text(r: std::thread::Result<()>) -> String {
        let e = r.expect_err("the wait should have panicked");
        e.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[tokio::test(start_paused = true)]
    async fn returns_the_value_once_the_condition_holds() {
        let n = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let got = eventually(Duration::from_secs(1), "the fifth check", || async {
            let k = n.fetch_add(1, Ordering::SeqCst) + 1;
            (k == 5).then_some(k)
        })
        .await;
        assert_eq!(got, 5);
        // Four polls apart: the checks run every POLL of simulated time.
        assert_eq!(start.elapsed(), POLL * 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_names_what_for_how_long_and_the_last_value() {
        let start = tokio::time::Instant::now();
        let r = tokio::spawn(async {
            eventually(Duration::from_millis(95), "the answer", || async {
                Err::<(), _>("41")
            })
            .await
        })
        .await;
        let e = r.expect_err("panics").into_panic();
        let text = e.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(
            text,
            "timed out after 95ms waiting for the answer; last seen: 41"
        );
        // Checked at the deadline itself, not one poll after it.
        assert_eq!(start.elapsed(), Duration::from_millis(95));
    }

    #[test]
    fn the_blocking_flavour_says_when_nothing_was_seen() {
        let text = panic_text(std::panic::catch_unwind(|| {
            eventually_blocking(Duration::from_millis(30), "never", || false)
        }));
        assert_eq!(
            text,
            "timed out after 30ms waiting for never (the condition never held)"
        );
        let late = Wait::new(Duration::from_millis(20), "a late value")
            .try_until_blocking(|| Err::<(), _>("not yet"));
        assert_eq!(late, Err(Some("not yet".to_owned())));
        let mut k = 0;
        eventually_blocking(Duration::from_secs(5), "three checks", || {
            k += 1;
            k == 3
        });
        assert_eq!(k, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_flavour_sees_each_change_at_once() {
        let (tx, mut rx) = tokio::sync::watch::channel(0u32);
        let start = tokio::time::Instant::now();
        tokio::spawn(async move {
            for i in 1..=3 {
                tokio::time::sleep(Duration::from_millis(7)).await;
                tx.send(i).unwrap();
            }
            std::future::pending::<()>().await;
        });
        let v = eventually_watch(&mut rx, Duration::from_secs(1), "three", |v| *v == 3).await;
        assert_eq!(v, 3);
        assert_eq!(start.elapsed(), Duration::from_millis(21));
        let r = tokio::spawn(async move {
            eventually_watch(&mut rx, Duration::from_millis(50), "four", |v| *v == 4).await;
        })
        .await;
        let e = r.expect_err("panics").into_panic();
        let text = e.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(text, "timed out after 50ms waiting for four; last seen: 3");
    }
}
