//! What the soak observed, as time lines: who held the VIP when
//! ([`Holders`], from both nodes' VIP events and the SIGKILLs) and what the
//! client saw ([`Attempts`], the prober's connects). Pure: built from
//! recorded times, queried by time window. Part of tests/support/soak.rs.
#![allow(dead_code)]

use std::time::Duration;

use super::HOSTS;

/// Who held the VIP, as segments `(from_us, held[node])`, each lasting until
/// the next. A node SIGKILLed while holding the VIP keeps the address (the
/// namespace's kernel outlives the process, as a crashed machine's would
/// not) but is no master: it counts again only once it deleted that stale
/// address at its next start, or added the VIP anew.
pub struct Holders {
    segs: Vec<(u64, [bool; 2])>,
}

impl Holders {
    pub fn build(vip_events: [&[(u64, bool)]; 2], kills: &[(u64, usize)]) -> Holders {
        // (time, node, Some(added) | None = killed)
        let mut all: Vec<(u64, usize, Option<bool>)> = kills
            .iter()
            .map(|&(t, n)| (t, n, None))
            .chain(
                vip_events
                    .iter()
                    .enumerate()
                    .flat_map(|(n, ev)| ev.iter().map(move |&(t, a)| (t, n, Some(a)))),
            )
            .collect();
        all.sort_by_key(|e| e.0);
        let mut held = [false; 2];
        let mut stale = [false; 2];
        let mut segs = vec![(0, [false; 2])];
        for (t, n, what) in all {
            match what {
                None => stale[n] = held[n],
                Some(added) => {
                    held[n] = added;
                    stale[n] = false;
                }
            }
            let live = [held[0] && !stale[0], held[1] && !stale[1]];
            if segs.last().is_some_and(|s| s.1 != live) {
                segs.push((t, live));
            }
        }
        Holders { segs }
    }

    fn sole(state: [bool; 2], node: usize) -> bool {
        state[node] && !state[1 - node]
    }

    /// The first instant in [from, until) at which `node` is the only holder.
    pub fn sole_from(&self, node: usize, from: u64, until: u64) -> Option<u64> {
        let i = self.segs.partition_point(|s| s.0 <= from) - 1;
        if Self::sole(self.segs[i].1, node) {
            return Some(from);
        }
        self.segs[i + 1..]
            .iter()
            .take_while(|s| s.0 < until)
            .find(|s| Self::sole(s.1, node))
            .map(|s| s.0)
    }

    /// Whether anything but `node` alone held the VIP at some point in
    /// [from, until).
    pub fn lost(&self, node: usize, from: u64, until: u64) -> bool {
        let i = self.segs.partition_point(|s| s.0 <= from) - 1;
        !Self::sole(self.segs[i].1, node)
            || self.segs[i + 1..]
                .iter()
                .take_while(|s| s.0 < until)
                .any(|s| !Self::sole(s.1, node))
    }

    /// The holder changes in [from, until), in ms after `from`, as
    /// `+351 lb1+lb2`, with the state at `from` first (`+0 -` = nobody).
    pub fn describe(&self, from: u64, until: u64) -> String {
        let i = self.segs.partition_point(|s| s.0 <= from) - 1;
        let name = |st: [bool; 2]| {
            let v: Vec<&str> = (0..2).filter(|n| st[*n]).map(|n| HOSTS[n]).collect();
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join("+")
            }
        };
        std::iter::once((from, self.segs[i].1))
            .chain(
                self.segs[i + 1..]
                    .iter()
                    .take_while(|s| s.0 < until)
                    .copied(),
            )
            .map(|(t, st)| format!("+{} {}", (t - from) / 1000, name(st)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every stretch during which both nodes held the VIP: (from, until).
    /// One still open ends at `now_us`.
    pub fn two_holder_windows(&self, now_us: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (i, s) in self.segs.iter().enumerate() {
            if s.1 == [true, true] {
                let until = self.segs.get(i + 1).map_or(now_us, |n| n.0);
                out.push((s.0, until));
            }
        }
        out
    }
}

/// The prober's attempts, sorted by start: (start µs, end µs, succeeded).
pub struct Attempts(Vec<(u64, u64, bool)>);

impl Attempts {
    pub fn new(mut all: Vec<(u64, u64, bool)>) -> Attempts {
        all.sort_by_key(|a| a.0);
        Attempts(all)
    }

    /// The longest client-visible outage among attempts started in
    /// [from, until): from the start of the first failed attempt of a run
    /// (from `reference` if the very first attempt fails: the outage began
    /// with the event) to the end of the next successful attempt. Zero
    /// without a failed attempt. A failure that ended at or after `until`
    /// is left out: the next event (a kill) may have caused it. The bool is
    /// false if an outage was still going on at `until` (it is then counted
    /// up to `until`).
    pub fn outage(&self, from: u64, until: u64, reference: u64) -> (Duration, bool) {
        let lo = self.0.partition_point(|a| a.0 < from);
        let hi = self.0.partition_point(|a| a.0 < until);
        let mut worst = 0;
        let mut run: Option<u64> = None;
        for (i, &(start, end, ok)) in self.0[lo..hi].iter().enumerate() {
            if !ok && end >= until {
                continue;
            }
            match (ok, run) {
                (false, None) => run = Some(if i == 0 { reference } else { start }),
                (true, Some(s)) => {
                    worst = worst.max(end.saturating_sub(s));
                    run = None;
                }
                _ => {}
            }
        }
        let restored = run.is_none();
        if let Some(s) = run {
            worst = worst.max(until.saturating_sub(s));
        }
        (Duration::from_micros(worst), restored)
    }
}

impl Attempts {
    /// The failed attempts started in [from, until), as start..end in ms
    /// after `from`, runs of consecutive ones merged.
    pub fn failed(&self, from: u64, until: u64) -> String {
        let lo = self.0.partition_point(|a| a.0 < from);
        let hi = self.0.partition_point(|a| a.0 < until);
        let mut runs: Vec<(u64, u64, usize)> = Vec::new();
        let mut open = false;
        for &(start, end, ok) in &self.0[lo..hi] {
            match (ok, open, runs.last_mut()) {
                (false, true, Some(r)) => {
                    r.1 = r.1.max(end);
                    r.2 += 1;
                }
                (false, _, _) => {
                    runs.push((start, end, 1));
                    open = true;
                }
                (true, _, _) => open = false,
            }
        }
        let ms = |t: u64| (t.saturating_sub(from)) / 1000;
        let v: Vec<String> = runs
            .iter()
            .map(|(s, e, n)| format!("{}..{} ({n})", ms(*s), ms(*e)))
            .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }
}

#[test]
fn outage_runs_from_the_first_failure_to_the_next_success() {
    let a = Attempts::new(vec![
        (100, 101, true),
        (110, 260, false),
        (120, 270, false),
        (130, 135, true),
        (140, 141, true),
        (150, 400, false),
        (160, 175, true),
    ]);
    // Two runs: 110..135 and 150..175.
    assert_eq!(a.outage(100, 1000, 100), (Duration::from_micros(25), true));
    // A window whose first attempt fails counts from the reference.
    assert_eq!(a.outage(105, 1000, 90), (Duration::from_micros(45), true));
    assert_eq!(a.outage(140, 152, 140), (Duration::ZERO, true));
    assert_eq!(a.outage(140, 400, 140), (Duration::ZERO, true));
    assert_eq!(a.outage(140, 401, 140), (Duration::from_micros(25), true));
    let b = Attempts::new(vec![(100, 101, true), (110, 120, false)]);
    // Failed before the next event began, nothing served since.
    assert_eq!(b.outage(100, 130, 100), (Duration::from_micros(20), false));
}

#[test]
fn a_stale_vip_after_sigkill_is_no_holder() {
    // lb1 holds from 10; SIGKILL at 20 (VIP stays); lb2 adds at 50; lb1
    // restarts and deletes its stale VIP at 80, claims at 100; lb2 deletes
    // at 101.
    let lb1 = [(10, true), (80, false), (100, true)];
    let lb2 = [(50, true), (101, false)];
    let h = Holders::build([&lb1, &lb2], &[(20, 0)]);
    assert_eq!(h.sole_from(1, 20, 1000), Some(50));
    assert_eq!(h.sole_from(0, 60, 1000), Some(101));
    assert_eq!(h.two_holder_windows(1000), [(100, 101)]);
    assert!(!h.lost(1, 50, 100));
    assert!(h.lost(1, 50, 101));
}
