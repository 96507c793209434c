//! The limiter in simulated time: replicas with endless work share a pool of
//! workers that answer 503 when their slots are full, as the dispatcher and
//! the worker do. Thousands of generated pools check that the pool is kept
//! busy, that replicas converge to fair shares, that a joining worker is
//! put to use within a few round trips, and that the bounds hold.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// One way hop between a replica and a worker (through the balancer).
const HOP_US: u64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    /// A call of `replica` reaches the pool (through the balancer).
    Arrive {
        replica: usize,
        sent: u64,
        ticket: Ticket,
    },
    /// `worker` finished a call and frees its slot.
    Finish {
        replica: usize,
        worker: usize,
        sent: u64,
        ticket: Ticket,
    },
    /// An answer reaches `replica`: taken (`Some(sent)`) or refused.
    Answer {
        replica: usize,
        sent: Option<u64>,
        ticket: Ticket,
    },
    /// The end of a replica's pause after a refusal.
    Resume { replica: usize },
}

struct Replica {
    limiter: Limiter,
    in_flight: usize,
    /// Calls this replica may have out at once (endless work when `None`).
    demand: Option<usize>,
    /// A Resume event is pending.
    resume_armed: bool,
    done_in_window: u64,
    max_limit_seen: usize,
}

struct Sim {
    now: u64,
    t0: Instant,
    events: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    replicas: Vec<Replica>,
    /// (slots, busy) per worker.
    workers: Vec<(u32, u32)>,
    service_us: u64,
    rng: StdRng,
    window_from: u64,
    /// The pool queues instead of refusing: latency grows with load.
    queueing: bool,
}

impl Sim {
    fn new(seed: u64, replicas: usize, workers: usize, slots: u32, service_us: u64) -> Sim {
        Sim {
            now: 0,
            t0: Instant::now(),
            events: BinaryHeap::new(),
            seq: 0,
            replicas: (0..replicas)
                .map(|i| Replica {
                    limiter: Limiter::new(512, seed * 31 + i as u64),
                    in_flight: 0,
                    demand: None,
                    resume_armed: false,
                    done_in_window: 0,
                    max_limit_seen: 0,
                })
                .collect(),
            workers: vec![(slots, 0); workers],
            service_us,
            rng: StdRng::seed_from_u64(seed),
            window_from: u64::MAX,
            queueing: false,
        }
    }

    fn at(&self, us: u64) -> Instant {
        self.t0 + Duration::from_micros(us)
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, ev)));
    }

    fn capacity_per_sec(&self) -> f64 {
        let slots: u32 = self.workers.iter().map(|w| w.0).sum();
        f64::from(slots) * 1e6 / self.service_us as f64
    }

    /// Sends what the limit allows from replica `r`, as the dispatcher does.
    fn pump(&mut self, r: usize) {
        let now = self.at(self.now);
        loop {
            let rep = &self.replicas[r];
            if rep.demand.is_some_and(|d| rep.in_flight >= d) {
                return;
            }
            match rep.limiter.next_send(rep.in_flight, now) {
                None => return,
                Some(at) if at > now => {
                    if !rep.resume_armed {
                        // The dispatcher's jitter on top of the pause.
                        let jitter = self.rng.random_range(0..2_000);
                        let us = (at - self.t0).as_micros() as u64 + jitter;
                        self.replicas[r].resume_armed = true;
                        self.push(us, Ev::Resume { replica: r });
                    }
                    return;
                }
                Some(_) => {}
            }
            let ticket = rep.limiter.send(rep.in_flight);
            self.replicas[r].in_flight += 1;
            let sent = self.now;
            self.push(
                sent + HOP_US,
                Ev::Arrive {
                    replica: r,
                    sent,
                    ticket,
                },
            );
        }
    }

    /// A call reaches the pool: the balancer picks the worker with the
    /// fewest calls (least connections, one call per connection).
    fn arrive(&mut self, replica: usize, sent: u64, ticket: Ticket) {
        let w = (0..self.workers.len())
            .min_by_key(|&i| (self.workers[i].1, self.rng.random::<u32>()))
            .unwrap_or(0);
        let (slots, busy) = self.workers[w];
        if busy < slots || self.queueing {
            self.workers[w].1 += 1;
            // A queueing pool: every call past the slots waits its turn.
            let extra = u64::from(busy.saturating_sub(slots)) * self.service_us / u64::from(slots);
            // Jobs of a kind vary: ±25% around the kind's length.
            let len = self.service_us * self.rng.random_range(75..=125) / 100;
            let end = self.now + len + extra;
            self.push(
                end,
                Ev::Finish {
                    replica,
                    worker: w,
                    sent,
                    ticket,
                },
            );
        } else {
            let at = self.now + HOP_US;
            self.push(
                at,
                Ev::Answer {
                    replica,
                    sent: None,
                    ticket,
                },
            );
        }
    }

    fn run_until(&mut self, end: u64) {
        for r in 0..self.replicas.len() {
            self.pump(r);
        }
        while let Some(Reverse((at, _, ev))) = self.events.peek().copied() {
            if at > end {
                break;
            }
            self.events.pop();
            self.now = at;
            let now = self.at(at);
            match ev {
                Ev::Arrive {
                    replica,
                    sent,
                    ticket,
                } => self.arrive(replica, sent, ticket),
                Ev::Finish {
                    replica,
                    worker,
                    sent,
                    ticket,
                } => {
                    self.workers[worker].1 -= 1;
                    let sent = Some(sent);
                    self.push(
                        at + HOP_US,
                        Ev::Answer {
                            replica,
                            sent,
                            ticket,
                        },
                    );
                }
                Ev::Answer {
                    replica,
                    sent,
                    ticket,
                } => {
                    let counted = at >= self.window_from;
                    let rep = &mut self.replicas[replica];
                    rep.in_flight -= 1;
                    let signal = match sent {
                        Some(s) => {
                            rep.done_in_window += u64::from(counted);
                            Signal::Taken(Duration::from_micros(at - s))
                        }
                        None => Signal::Full,
                    };
                    let out = rep.in_flight;
                    rep.limiter.answer(ticket, signal, out, now);
                    rep.max_limit_seen = rep.max_limit_seen.max(rep.limiter.limit());
                    self.pump(replica);
                }
                Ev::Resume { replica } => {
                    self.replicas[replica].resume_armed = false;
                    self.pump(replica);
                }
            }
        }
        self.now = end;
    }

    /// Jobs per second completed by each replica in `[from, to)`.
    fn rates(&mut self, from: u64, to: u64) -> Vec<f64> {
        self.run_until(from);
        self.window_from = from;
        for r in &mut self.replicas {
            r.done_in_window = 0;
        }
        self.run_until(to);
        let secs = (to - from) as f64 / 1e6;
        self.replicas
            .iter()
            .map(|r| r.done_in_window as f64 / secs)
            .collect()
    }
}

/// Jain's fairness index: 1 when all equal, 1/n when one has everything.
fn jain(xs: &[f64]) -> f64 {
    let s: f64 = xs.iter().sum();
    let q: f64 = xs.iter().map(|x| x * x).sum();
    if q == 0.0 {
        1.0
    } else {
        s * s / (xs.len() as f64 * q)
    }
}

/// A random pool: 1–4 replicas, 1–6 workers of 1–8 slots, 2–300 ms jobs.
fn case(seed: u64) -> (Sim, u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let replicas = rng.random_range(1..=4);
    let workers = rng.random_range(1..=6);
    let slots = rng.random_range(1..=8);
    let service_us = rng.random_range(2_000..300_000);
    (
        Sim::new(seed, replicas, workers, slots, service_us),
        service_us,
    )
}

#[test]
fn the_pool_is_kept_busy_and_shared_fairly_in_generated_pools() {
    let (mut low_use, mut unfair) = (Vec::new(), Vec::new());
    let cases = 300;
    let mut use_sum = 0.0;
    for seed in 0..cases {
        let (mut sim, service_us) = case(seed);
        // Warm up for 60 round trips, measure over the next 400: shares
        // move around the fair one, and converge over a few hundred.
        let rates = sim.rates(60 * service_us, 460 * service_us);
        let total: f64 = rates.iter().sum();
        let used = total / sim.capacity_per_sec();
        use_sum += used;
        let slots: u32 = sim.workers.iter().map(|w| w.0).sum();
        if used < 0.85 {
            low_use.push((seed, used, sim.replicas.len(), slots));
        }
        // Fair shares need at least a slot per replica to share.
        if slots as usize >= 2 * sim.replicas.len() && jain(&rates) < 0.9 {
            unfair.push((seed, jain(&rates), rates));
        }
    }
    let mean = use_sum / cases as f64;
    assert!(mean >= 0.92, "mean use of the pool {mean:.3}");
    assert!(
        low_use.len() * 100 <= cases as usize,
        "{} of {cases} pools used below 85%: {:?}",
        low_use.len(),
        &low_use[..low_use.len().min(10)]
    );
    assert!(
        unfair.is_empty(),
        "{} unfair pools: {:?}",
        unfair.len(),
        &unfair[..unfair.len().min(5)]
    );
}

#[test]
fn a_joining_worker_is_used_within_a_few_round_trips() {
    for seed in 0..150 {
        let (mut sim, service_us) = case(seed);
        sim.run_until(60 * service_us);
        let before = sim.capacity_per_sec();
        let (slots, _) = sim.workers[0];
        sim.workers.push((slots, 0));
        sim.workers.push((slots, 0));
        let after = sim.capacity_per_sec();
        let t = sim.now;
        // Within 40 round trips of the join, the new slots are in use.
        let rates = sim.rates(t + 40 * service_us, t + 140 * service_us);
        let total: f64 = rates.iter().sum();
        assert!(
            total >= 0.85 * after,
            "seed {seed}: {total:.0}/s after two workers joined, capacity {before:.0} → {after:.0}"
        );
    }
}

#[test]
fn a_leaving_worker_brings_the_limit_down() {
    for seed in 0..150 {
        let (mut sim, service_us) = case(seed);
        sim.workers.push((8, 0));
        sim.run_until(60 * service_us);
        // It takes no new call; the ones it holds finish.
        sim.workers.last_mut().unwrap().0 = 0;
        let t = sim.now;
        sim.run_until(t + 40 * service_us);
        let slots: u32 = sim.workers.iter().map(|w| w.0).sum();
        let limits: usize = sim.replicas.iter().map(|r| r.limiter.limit()).sum();
        // Overshoot is cheap (a 503 and a short wait) but bounded.
        assert!(
            limits <= 3 * slots as usize + 2 * sim.replicas.len(),
            "seed {seed}: limits {limits} for {slots} slots"
        );
    }
}

#[test]
fn a_replica_with_little_work_does_not_grow_a_limit_it_never_used() {
    let mut sim = Sim::new(7, 2, 4, 8, 10_000);
    sim.replicas[0].demand = Some(3);
    sim.run_until(2_000 * 10_000);
    // Grows only while at least half of it is in use: at most 2 × 3 + 1,
    // plus what answers of calls sent at that limit add.
    assert!(
        sim.replicas[0].max_limit_seen <= 9,
        "limit grew to {} with 3 jobs in flight",
        sim.replicas[0].max_limit_seen
    );
    // The busy one takes what is left.
    assert!(sim.replicas[1].limiter.limit() >= 20);
}

#[test]
fn a_pool_that_queues_instead_of_refusing_does_not_get_an_endless_limit() {
    let mut sim = Sim::new(3, 1, 2, 4, 20_000);
    sim.queueing = true;
    sim.run_until(500 * 20_000);
    let limit = sim.replicas[0].limiter.limit();
    assert!(
        limit <= 3 * 8 + 2,
        "limit {limit} on a queueing pool of 8 slots"
    );
}

#[test]
fn bounds_hold_and_a_burst_of_refusals_counts_once() {
    let now = Instant::now();
    let mut l = Limiter::new(10, 1);
    assert_eq!(l.limit(), 4);
    let t = l.send(0);
    l.answer(t, Signal::Taken(Duration::from_millis(100)), 0, now);
    assert_eq!(l.limit(), 4, "not probing: one in flight of 4");
    let grow = |l: &mut Limiter, n: usize| {
        for _ in 0..n {
            let t = l.send(l.limit() - 1);
            l.answer(
                t,
                Signal::Taken(Duration::from_millis(100)),
                l.limit() - 1,
                now,
            );
        }
    };
    grow(&mut l, 10_000);
    assert_eq!(l.limit(), 10, "never above max_concurrency");
    // Twenty refusals within one round trip (100 ms), 10 held: one decrease.
    let tickets: Vec<_> = (0..20).map(|_| l.send(10)).collect();
    for (i, t) in tickets.into_iter().enumerate() {
        l.answer(t, Signal::Full, 10, now + Duration::from_millis(i as u64));
    }
    assert_eq!(l.limit(), 8, "10 × {BACKOFF} once");
    for i in 1..100 {
        let t = l.send(l.limit());
        l.answer(t, Signal::Lost, 1, now + Duration::from_millis(100 * i));
    }
    assert_eq!(l.limit(), 1, "never below 1");
    grow(&mut l, 10_000);
    l.advertised("w1", 2, now);
    assert_eq!(l.limit(), 4, "never above twice the advertised slots");
    l.advertised("w2", 1, now);
    grow(&mut l, 100);
    assert_eq!(l.limit(), 6, "grows to twice the slots of both");
    // In slow start, what the pool says is taken at once.
    let mut fresh = Limiter::new(100, 2);
    fresh.advertised("w1", 16, now);
    assert_eq!(
        fresh.limit(),
        16,
        "slow start jumps to the advertised slots"
    );
    fresh.advertised("w2", 16, now);
    assert_eq!(fresh.limit(), 32);
    assert_eq!(l.pool_slots(now), Some(3));
    let later = now + CAPACITY_WINDOW;
    assert_eq!(l.pool_slots(later), None, "silent instances stop counting");
}

#[test]
fn slow_start_finds_a_large_pool_in_a_few_round_trips() {
    let mut sim = Sim::new(11, 1, 16, 8, 50_000);
    // 128 slots: doubling from 4 takes 5 round trips; allow 10.
    sim.run_until(10 * 50_000);
    assert!(
        sim.replicas[0].limiter.limit() >= 100,
        "limit {} after 10 round trips",
        sim.replicas[0].limiter.limit()
    );
}
