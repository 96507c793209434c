//! The bookkeeping of the handover soak (tests/vrrp_soak.rs): what each
//! event expects and within which bound ([`Kind`]), the events as they
//! happened ([`Recorder`]), and the verdict and table ([`analyse`],
//! [`report`]). Submodules: `observed` (who held the VIP when, what the
//! client saw) and [`pair`] (the two nodes and their observers, driven).
//!
//! Nothing here waits or talks to a process: the soak records times while
//! it drives the nodes, and everything is judged from those times, the VIP
//! events of both nodes and the prober's attempts, so that one run reports
//! every bad event rather than stopping at the first.
#![allow(dead_code)]

use std::time::Duration;

use crate::vrrp_bed::{ADVERT, skew};

#[path = "soak_observed.rs"]
mod observed;
#[path = "soak_pair.rs"]
pub mod pair;

pub use observed::{Attempts, Holders};

/// The two nodes, by index: lb1 (priority 150, preempting) and lb2 (100).
pub const HOSTS: [&str; 2] = ["lb1", "lb2"];
pub const PRIORITIES: [u8; 2] = [150, 100];

/// Allowance on top of each RFC bound for what the client adds: gratuitous
/// ARP reaching it, the 10 ms between probe attempts, and scheduling on a
/// loaded 2-core machine.
pub const SLACK: Duration = Duration::from_millis(50);

/// RFC 5798 §6.1 Master_Down_Interval of a backup at `priority`.
pub fn mdi(priority: u8) -> Duration {
    3 * ADVERT + skew(ADVERT, priority)
}

/// What an event is, which fixes the node expected to hold the VIP after it
/// and the bounds it is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// SIGKILL of the master (lb1): lb2 takes over when its
    /// Master_Down_Timer runs out.
    SigKill,
    /// SIGTERM of the master (lb1): it resigns with a priority-0 advert,
    /// lb2 takes over after its skew time.
    SigTerm,
    /// lb1 started again while lb2 is master: it waits a full
    /// Master_Down_Interval in Backup, then preempts.
    Preempt,
    /// lb2 (the backup) stopped and started again: lb1 keeps the VIP.
    BackupRestart,
    /// Both released from a gate at once (lb1 sometimes a little late): lb1
    /// claims after its Master_Down_Interval, lb2 never holds the VIP with it.
    Start,
    /// lb1's link cut at the switch: it faults (releasing the VIP at once),
    /// lb2 takes over at its Master_Down_Interval.
    LinkCut,
    /// lb1's link back: it starts again in Backup and preempts once its
    /// health checks have caught up.
    LinkRestore,
    /// The same with lb1 running no active health checks: nothing to wait
    /// for, it preempts after its Master_Down_Interval. Before the balancer
    /// flushed the interface's half-resolved ARP entries on link up, about
    /// one such restore in ten cost clients ~0.3 s (an INCOMPLETE entry
    /// created during the cut retries only a second later).
    LinkRestoreUnprobed,
    /// Bring-up, stops and resets between events: judged only for
    /// two-holder windows.
    Setup,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::SigKill,
        Kind::SigTerm,
        Kind::Preempt,
        Kind::BackupRestart,
        Kind::Start,
        Kind::LinkCut,
        Kind::LinkRestore,
        Kind::LinkRestoreUnprobed,
        Kind::Setup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::SigKill => "sigkill",
            Kind::SigTerm => "sigterm",
            Kind::Preempt => "preempt",
            Kind::BackupRestart => "backup-restart",
            Kind::Start => "start",
            Kind::LinkCut => "link-cut",
            Kind::LinkRestore => "link-restore",
            Kind::LinkRestoreUnprobed => "link-restore-unprobed",
            Kind::Setup => "setup",
        }
    }

    /// Longest time from the event's reference to the expected node being
    /// the only holder; None where it must hold the VIP throughout (or, for
    /// Setup, nothing is expected).
    pub fn takeover_bound(self) -> Option<Duration> {
        match self {
            // The backup's timer runs from the last advert it heard, sent
            // before the kill: <= MDI after it. One interval more is the
            // acceptance bound (issue 11), then the client's slack.
            Kind::SigKill | Kind::LinkCut => Some(mdi(PRIORITIES[1]) + ADVERT + SLACK),
            // Skew time (61 ms at priority 100) < one interval.
            Kind::SigTerm => Some(ADVERT + SLACK),
            // Counted from lb1's "vrrp instance starting" (link restore:
            // from its health view catching up, see Ref::Settled): a full
            // MDI in Backup (RFC 5798 §6.4.1), then it claims.
            Kind::Preempt | Kind::Start | Kind::LinkRestore | Kind::LinkRestoreUnprobed => {
                Some(mdi(PRIORITIES[0]) + ADVERT + SLACK)
            }
            Kind::BackupRestart | Kind::Setup => None,
        }
    }

    /// Longest client-visible outage allowed.
    pub fn outage_bound(self) -> Option<Duration> {
        match self {
            // The VIP is gone until the backup claims.
            Kind::SigKill | Kind::SigTerm | Kind::LinkCut | Kind::Start => self.takeover_bound(),
            // Planned moves and restarts of the backup: the VIP moves at
            // most once, announced by gratuitous ARP.
            Kind::Preempt | Kind::BackupRestart | Kind::LinkRestore | Kind::LinkRestoreUnprobed => {
                Some(ADVERT + SLACK)
            }
            Kind::Setup => None,
        }
    }
}

/// Where an event's RFC clock starts.
#[derive(Clone, Copy, Debug)]
pub enum Ref {
    /// At this unix µs (the signal, the link change).
    At(u64),
    /// At this node's first "vrrp instance starting" log line after the
    /// event began (its Master_Down_Timer starts there).
    InstanceStart(usize),
    /// At this node's first "health checks caught up after the fault" log
    /// line after the event began: leaving Fault, a node claims only once
    /// its health view has caught up (lb/src/failover/settle.rs).
    Settled(usize),
}

/// One event as driven.
#[derive(Clone, Debug)]
pub struct Ev {
    pub kind: Kind,
    /// When the event began (unix µs): the signal, link change or release.
    pub at_us: u64,
    /// When the next event began: the event is judged on [at_us, end_us).
    pub end_us: u64,
    /// When the node of a [`Ref::InstanceStart`] was spawned or released
    /// (at_us unless set later): start-up is counted from here.
    pub started_us: u64,
    /// Index into [`HOSTS`] of the node that must hold the VIP.
    pub expect: usize,
    pub reference: Ref,
    /// The expected node did not hold the VIP within the soak's stuck limit.
    pub stuck: bool,
    /// What was done, for failure messages ("SIGKILL lb1", "lb1 50 ms late").
    pub note: String,
}

/// The events and SIGKILLs of a run, in order.
#[derive(Default)]
pub struct Recorder {
    pub events: Vec<Ev>,
    /// (unix µs, node) of every SIGKILL.
    pub kills: Vec<(u64, usize)>,
}

impl Recorder {
    /// Ends the current event and begins another; returns its index.
    pub fn begin(&mut self, kind: Kind, at_us: u64, expect: usize, reference: Ref) -> usize {
        self.close(at_us);
        self.events.push(Ev {
            kind,
            at_us,
            end_us: u64::MAX,
            started_us: at_us,
            expect,
            reference,
            stuck: false,
            note: String::new(),
        });
        self.events.len() - 1
    }

    pub fn close(&mut self, at_us: u64) {
        if let Some(e) = self.events.last_mut()
            && e.end_us == u64::MAX
        {
            e.end_us = at_us;
        }
    }

    pub fn killed(&mut self, node: usize, at_us: u64) {
        self.kills.push((at_us, node));
    }
}

/// The verdict on one event.
pub struct Outcome {
    pub index: usize,
    pub kind: Kind,
    /// Index into [`HOSTS`] of the node that had to hold the VIP.
    pub expect: usize,
    pub note: String,
    pub outage: Duration,
    /// An outage was still going on when the event's window ended.
    pub unrestored: bool,
    /// Reference to the expected node being the only holder.
    pub takeover: Option<Duration>,
    /// Event to the reference, for events timed from an instance start.
    pub startup: Option<Duration>,
    pub stuck: bool,
    pub late: bool,
    /// After taking (or while it should keep) the VIP, the expected node
    /// did not stay its only holder until the next event.
    pub lost: bool,
    /// Lengths of the two-holder windows that began in this event.
    pub two_holder: Vec<Duration>,
    /// The holder changes and failed client attempts during the event, for
    /// the failure message.
    pub detail: String,
}

impl Outcome {
    pub fn long_two_holder(&self) -> usize {
        self.two_holder.iter().filter(|w| **w > ADVERT).count()
    }

    pub fn outage_over(&self) -> bool {
        self.kind.outage_bound().is_some_and(|b| self.outage > b)
    }

    /// Every way this event failed, in words; empty if it passed.
    pub fn problems(&self) -> Vec<String> {
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
        let mut p = Vec::new();
        if self.stuck {
            p.push(format!("stuck: {} never held the VIP", self.expected()));
        } else if self.late {
            p.push(format!(
                "late: {} the only holder after {} (bound {})",
                self.expected(),
                self.takeover.map_or("never".into(), ms),
                ms(self.kind.takeover_bound().unwrap_or_default())
            ));
        }
        if self.lost && !self.stuck {
            p.push(format!(
                "lost: {} was not the only holder until the next event",
                self.expected()
            ));
        }
        if self.outage_over() {
            p.push(format!(
                "outage {}{} (bound {})",
                ms(self.outage),
                if self.unrestored {
                    ", not restored"
                } else {
                    ""
                },
                ms(self.kind.outage_bound().unwrap_or_default())
            ));
        }
        for w in self.two_holder.iter().filter(|w| **w > ADVERT) {
            p.push(format!("two holders for {} (bound {})", ms(*w), ms(ADVERT)));
        }
        p
    }

    fn expected(&self) -> &'static str {
        HOSTS[self.expect]
    }
}

/// Judges every event. `starts[n]` are node n's "vrrp instance starting"
/// times, `settles[n]` its "health checks caught up after the fault" times,
/// `now_us` the end of the run.
pub fn analyse(
    rec: &Recorder,
    holders: &Holders,
    attempts: &Attempts,
    starts: [&[u64]; 2],
    settles: [&[u64]; 2],
    now_us: u64,
) -> Vec<Outcome> {
    let windows = holders.two_holder_windows(now_us);
    let mut out: Vec<Outcome> = rec
        .events
        .iter()
        .enumerate()
        .map(|(index, e)| {
            let end = e.end_us.min(now_us);
            let reference = match e.reference {
                Ref::At(t) => Some(t),
                Ref::InstanceStart(n) => starts[n]
                    .iter()
                    .copied()
                    .find(|&s| s >= e.started_us && s < end),
                Ref::Settled(n) => settles[n]
                    .iter()
                    .copied()
                    .find(|&s| s >= e.at_us && s < end),
            };
            let startup = match e.reference {
                Ref::InstanceStart(_) | Ref::Settled(_) => {
                    reference.map(|r| Duration::from_micros(r - e.started_us))
                }
                Ref::At(_) => None,
            };
            let r = reference.unwrap_or(e.at_us);
            let (outage, restored) = attempts.outage(e.at_us, end, r);
            let held = holders.sole_from(e.expect, r, end);
            let bound = e.kind.takeover_bound();
            let takeover = held
                .filter(|_| bound.is_some())
                .map(|h| Duration::from_micros(h.saturating_sub(r)));
            let late = bound.is_some() && takeover.is_none_or(|t| Some(t) > bound);
            let lost = match (e.kind, held) {
                (Kind::Setup, _) => false,
                (Kind::BackupRestart, _) => holders.lost(e.expect, e.at_us, end),
                (_, Some(h)) => holders.lost(e.expect, h, end),
                (_, None) => true,
            };
            Outcome {
                index,
                kind: e.kind,
                expect: e.expect,
                note: e.note.clone(),
                outage,
                unrestored: !restored && e.kind != Kind::Setup,
                takeover,
                startup,
                stuck: e.stuck,
                late,
                lost,
                two_holder: Vec::new(),
                detail: format!(
                    "holders {}; failed attempts (ms after the event) {}",
                    holders.describe(e.at_us, end),
                    attempts.failed(e.at_us, end)
                ),
            }
        })
        .collect();
    for (from, until) in windows {
        // The event during which the window began.
        let i = rec.events.partition_point(|e| e.at_us <= from);
        if let Some(o) = i.checked_sub(1).and_then(|i| out.get_mut(i)) {
            o.two_holder.push(Duration::from_micros(until - from));
        }
    }
    out
}

/// Nearest-rank percentile `p` (0..=100) of sorted `v`.
fn pct(v: &[Duration], p: usize) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[(v.len() * p).div_ceil(100).clamp(1, v.len()) - 1]
}

/// "median p99 max" in ms, or "-" for none.
pub fn dist(mut v: Vec<Duration>) -> String {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if v.is_empty() {
        return format!("{:>20}", "-");
    }
    format!(
        "{:>6.0} {:>6.0} {:>6.0}",
        ms(pct(&v, 50)),
        ms(pct(&v, 99)),
        ms(v[v.len() - 1])
    )
}

/// The per-scenario table: counts, outage and takeover distributions (ms:
/// median, p99, max) against their bounds, and the bad outcomes.
pub fn print_tables(outcomes: &[Outcome]) {
    let ms =
        |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.0}", d.as_secs_f64() * 1000.0));
    println!(
        "{:<15} {:>4} | {:>20} {:>5} | {:>20} {:>5} | {:>20} | {:>4} {:>4} {:>5} {:>4} {:>4} {:>7}",
        "scenario",
        "n",
        "outage med/p99/max",
        "bound",
        "takeover med/p99/max",
        "bound",
        "start-up med/p99/max",
        "over",
        "late",
        "stuck",
        "2h>I",
        "lost",
        "2h<=I"
    );
    for kind in Kind::ALL {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.kind == kind).collect();
        if of.is_empty() {
            continue;
        }
        let count = |f: &dyn Fn(&Outcome) -> bool| of.iter().filter(|o| f(o)).count();
        let measured = kind != Kind::Setup;
        println!(
            "{:<15} {:>4} | {} {:>5} | {} {:>5} | {} | {:>4} {:>4} {:>5} {:>4} {:>4} {:>7}",
            kind.name(),
            of.len(),
            if measured {
                dist(of.iter().map(|o| o.outage).collect())
            } else {
                format!("{:>20}", "-")
            },
            ms(kind.outage_bound()),
            dist(of.iter().filter_map(|o| o.takeover).collect()),
            ms(kind.takeover_bound()),
            dist(of.iter().filter_map(|o| o.startup).collect()),
            count(&|o| o.outage_over()),
            count(&|o| o.late && !o.stuck),
            count(&|o| o.stuck),
            count(&|o| o.long_two_holder() > 0),
            count(&|o| o.lost && !o.stuck),
            of.iter()
                .map(|o| o.two_holder.len() - o.long_two_holder())
                .sum::<usize>(),
        );
    }
}

/// Prints the tables and returns every failure, one line each (with the
/// event's holder changes and failed attempts on a second line).
pub fn report(outcomes: &[Outcome]) -> Vec<String> {
    print_tables(outcomes);
    outcomes
        .iter()
        .flat_map(|o| {
            o.problems().into_iter().map(move |p| {
                format!(
                    "event {} ({}, {}): {p}\n    {}",
                    o.index,
                    o.kind.name(),
                    o.note,
                    o.detail
                )
            })
        })
        .collect()
}
