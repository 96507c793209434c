//! The checker on real time against loopback backends: detection and recovery
//! times, passive reports, slow start, reloads and shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use tandem_healthcheck::{
    Checker, ExecProbe, HealthView, InitialState, Jitter, Params, Probe, Target, TargetId,
};
use tandem_test_support::eventually_watch;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A loopback TCP backend that accepts and closes; can be stopped and
/// restarted on the same port.
struct Backend {
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Backend {
    async fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        Backend {
            addr,
            task: Some(Self::serve(l)),
        }
    }

    /// A port with nothing listening (connects are refused).
    async fn stopped() -> Self {
        let mut b = Self::start().await;
        b.stop().await;
        b
    }

    fn serve(l: TcpListener) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        })
    }

    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            // Resolves once the task (and its listener) has been dropped.
            let _ = t.await;
        }
    }

    async fn restart(&mut self) {
        // tokio sets SO_REUSEADDR, so TIME_WAIT leftovers do not block the bind.
        let l = TcpListener::bind(self.addr).await.unwrap();
        self.task = Some(Self::serve(l));
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn fast_params() -> Params {
    Params {
        interval: ms(200),
        timeout: ms(300),
        rise: 2,
        fall: 3,
        jitter: Jitter::Fraction(0.0),
        passive_fall: 0,
        initial: InitialState::Up,
        ..Params::default()
    }
}

fn tcp(id: &TargetId, addr: SocketAddr, params: Params) -> Target {
    Target::new(id.clone(), Probe::Tcp { addr }, params).unwrap()
}

fn is_up(v: &HealthView, id: &TargetId) -> bool {
    v.get(id).expect("target in view").up
}

/// Whether the last probe of `id` succeeded; None before the first.
fn last_ok(v: &HealthView, id: &TargetId) -> Option<bool> {
    v.get(id)?.last_probe.as_ref().map(|r| r.ok)
}

#[tokio::test]
async fn dead_backend_leaves_within_fall_intervals_and_returns_within_rise_intervals() {
    let mut backend = Backend::start().await;
    let id = TargetId::new("api", "b1");
    let p = fast_params();
    let shutdown = CancellationToken::new();
    let h = Checker::spawn(vec![tcp(&id, backend.addr, p.clone())], shutdown.clone());
    let mut rx = h.subscribe();
    eventually_watch(&mut rx, ms(2000), "a first good probe", |v| {
        last_ok(v, &id) == Some(true)
    })
    .await;

    backend.stop().await;
    let killed = Instant::now();
    let v = eventually_watch(&mut rx, ms(3000), "down", |v| !is_up(v, &id)).await;
    let took = killed.elapsed();
    // Wall-clock bound, from the listener's close to the published DOWN
    // view: `fall` probes `interval` apart fail (a refused connect fails at
    // once); the one `timeout` (300 ms) on top is the margin for a late
    // probe and the checker's wake-up on two loaded cores. The rule itself
    // is proved in simulated time in `machine`'s tests.
    let bound = p.interval * p.fall + p.timeout;
    println!("down after {took:?} (bound fall × interval + timeout = {bound:?})");
    assert!(took <= bound, "down after {took:?} > {bound:?}");
    let b = v.get(&id).unwrap();
    assert_eq!(b.reason, "connection refused");
    assert_eq!(b.weight_factor_permille, 0);
    assert!(v.service("api").all_down());
    assert!(!h.target(&id).unwrap().is_up());

    backend.restart().await;
    let restarted = Instant::now();
    let v = eventually_watch(&mut rx, ms(3000), "up again", |v| is_up(v, &id)).await;
    let took = restarted.elapsed();
    // Wall-clock bound, from the listener's rebind to the published UP
    // view: `rise` good probes `interval` apart, plus a 100 ms margin for
    // the last probe's connect and the wake-ups of two tasks.
    let bound = p.interval * p.rise;
    println!(
        "up after {took:?} (bound rise × interval = {bound:?}, + 100ms for the probe and wake-ups)"
    );
    assert!(took <= bound + ms(100), "up after {took:?} > {bound:?}");
    assert_eq!(v.get(&id).unwrap().reason, "connected");
    assert!(!v.service("api").all_down());

    shutdown.cancel();
    tokio::time::timeout(ms(2000), h.wait_stopped())
        .await
        .expect("tasks stop on shutdown");
}

#[tokio::test]
async fn passive_failures_mark_down_at_once_and_probes_bring_it_back() {
    let backend = Backend::start().await;
    let id = TargetId::new("api", "b1");
    let p = Params {
        passive_fall: 3,
        ..fast_params()
    };
    let shutdown = CancellationToken::new();
    let h = Checker::spawn(vec![tcp(&id, backend.addr, p.clone())], shutdown.clone());
    let mut rx = h.subscribe();
    eventually_watch(&mut rx, ms(2000), "a first probe", |v| {
        v.get(&id).unwrap().last_probe.is_some()
    })
    .await;
    let th = h.target(&id).unwrap();
    assert!(th.is_up());
    assert_eq!(th.weight_permille(), 1000);

    let reported = Instant::now();
    for _ in 0..3 {
        th.report_passive(false);
    }
    let v = eventually_watch(&mut rx, ms(1000), "passive down", |v| !is_up(v, &id)).await;
    let took = reported.elapsed();
    // Wall-clock bound, from the reports to the published DOWN view: no
    // timer is involved (the verdict is immediate), so all 100 ms are
    // margin for the checker task to be scheduled on two loaded cores.
    println!("passive down after {took:?}");
    assert!(took < ms(100), "passive detection took {took:?}");
    assert_eq!(
        v.get(&id).unwrap().reason,
        "3 consecutive connect failures (passive)"
    );
    assert!(!th.is_up());
    assert_eq!(th.weight_permille(), 0);

    // The backend really listens: probes bring it back with `rise`.
    let v = eventually_watch(&mut rx, ms(2000), "up via probes", |v| is_up(v, &id)).await;
    assert_eq!(v.get(&id).unwrap().reason, "connected");
    assert!(th.is_up());

    // By id, through the handle: same effect.
    for _ in 0..3 {
        h.report_passive(&id, false);
    }
    eventually_watch(&mut rx, ms(1000), "passive down by id", |v| !is_up(v, &id)).await;
    shutdown.cancel();
}

#[tokio::test]
async fn weight_ramps_over_slow_start_after_coming_back() {
    let mut backend = Backend::stopped().await;
    let id = TargetId::new("api", "b1");
    let p = Params {
        interval: ms(100),
        rise: 1,
        fall: 1,
        slow_start: ms(1000),
        ..fast_params()
    };
    let shutdown = CancellationToken::new();
    let h = Checker::spawn(vec![tcp(&id, backend.addr, p)], shutdown.clone());
    let th = h.target(&id).unwrap();
    let mut rx = h.subscribe();
    eventually_watch(&mut rx, ms(2000), "down", |v| !is_up(v, &id)).await;
    assert_eq!(th.weight_permille(), 0);

    backend.restart().await;
    eventually_watch(&mut rx, ms(2000), "up", |v| is_up(v, &id)).await;
    let up_at = Instant::now();
    let mut seen = vec![th.weight_permille()];
    loop {
        let v = eventually_watch(&mut rx, ms(3000), "a weight step", |_| true).await;
        let w = v.get(&id).unwrap().weight_factor_permille;
        // Atomics are stored before each publish and the ramp only grows.
        assert!(th.weight_permille() >= w, "atomic behind the view");
        if seen.last() != Some(&w) {
            seen.push(w);
        }
        if w == 1000 {
            break;
        }
        // Wall-clock bound: the 1 s ramp, with 2 s of margin; it only stops
        // a ramp that never ends.
        assert!(up_at.elapsed() < ms(3000), "ramp did not finish: {seen:?}");
        rx.changed().await.unwrap();
    }
    let took = up_at.elapsed();
    println!("slow start 1s: weights {seen:?}, full after {took:?}");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "ramp not monotonic: {seen:?}"
    );
    assert!(seen[0] < 200, "ramp starts low: {seen:?}");
    assert!(
        seen.iter().filter(|&&w| w > 0 && w < 1000).count() >= 10,
        "{seen:?}"
    );
    // Wall-clock lower bound, from the UP view seen here: the 1 s ramp
    // starts at the verdict, which is published (and seen) a little before
    // `up_at`; 150 ms allows for that, so a ramp of 0.85 s or less fails.
    assert!(took >= ms(850), "full weight too early: {took:?}");
    shutdown.cancel();
}

#[tokio::test]
async fn a_dead_backend_at_start_is_out_after_fall_probes() {
    let dead = Backend::stopped().await;
    let live = Backend::start().await;
    let (d, l) = (TargetId::new("api", "dead"), TargetId::new("api", "live"));
    let p = Params {
        interval: ms(100),
        ..fast_params()
    };
    let started = Instant::now();
    let h = Checker::spawn(
        vec![tcp(&d, dead.addr, p.clone()), tcp(&l, live.addr, p.clone())],
        CancellationToken::new(),
    );
    let v = h.view();
    assert_eq!(v.len(), 2, "every target is in the first view");
    assert_eq!(v.service("api").up, 2, "both take traffic at start");
    let mut rx = h.subscribe();
    eventually_watch(&mut rx, ms(2000), "dead one down", |v| !is_up(v, &d)).await;
    let took = started.elapsed();
    // The first probe at once (no jitter), then fall - 1 fastinter steps:
    // the first failure was a result, not a verdict.
    // Wall-clock bounds, from the spawn to the DOWN view: at least the
    // (fall − 1) intervals the rules demand (exact: timers never fire
    // early); at most that plus one `timeout` (300 ms) of margin for
    // scheduling on two loaded cores.
    let bound = p.interval * (p.fall - 1) + p.timeout;
    println!("dead backend out {took:?} after start (bound {bound:?})");
    assert!(took >= p.interval * (p.fall - 1), "out too early: {took:?}");
    assert!(took <= bound, "{took:?} > {bound:?}");
    let v = eventually_watch(&mut rx, ms(1000), "live probed", |v| {
        v.get(&l).unwrap().last_probe.is_some()
    })
    .await;
    assert!(is_up(&v, &l));
    assert_eq!(v.service("api").up, 1);
}

#[tokio::test]
async fn a_target_added_by_reload_starts_up_and_rides_out_a_late_bind() {
    let live = Backend::start().await;
    let mut late = Backend::stopped().await;
    let (a, b) = (TargetId::new("svc", "a"), TargetId::new("svc", "b"));
    // fall 5 at 100 ms: 400 ms between the first failure and a verdict,
    // ample time to bind.
    let p = Params {
        interval: ms(100),
        fall: 5,
        ..fast_params()
    };
    let shutdown = CancellationToken::new();
    let h = Checker::spawn(vec![tcp(&a, live.addr, p.clone())], shutdown.clone());
    let mut rx = h.subscribe();
    let s = h.update_targets(vec![
        tcp(&a, live.addr, p.clone()),
        tcp(&b, late.addr, p.clone()),
    ]);
    assert_eq!((s.kept, s.added), (1, 1));
    let first = h.view();
    assert!(is_up(&first, &b), "added UP, before any probe");
    let th = h.target(&b).unwrap();
    assert!(th.is_up());
    eventually_watch(&mut rx, ms(2000), "a refused first probe", |v| {
        last_ok(v, &b) == Some(false)
    })
    .await;
    assert!(th.is_up(), "one failure does not take it out");
    late.restart().await;
    let v = eventually_watch(&mut rx, ms(2000), "a good probe", |v| {
        last_ok(v, &b) == Some(true)
    })
    .await;
    let health = v.get(&b).unwrap();
    // A DOWN and back would have moved `since` and replaced the reason.
    assert!(health.up && !health.transitioning);
    assert_eq!(health.reason, "initial state");
    assert_eq!(health.since, first.get(&b).unwrap().since);
    shutdown.cancel();
}

#[tokio::test]
async fn reload_adds_alpha_targets_down_and_replaced_ones_keep_their_state() {
    let live = Backend::start().await;
    let dead = Backend::stopped().await;
    let (a, b, c) = (
        TargetId::new("svc", "a"),
        TargetId::new("svc", "b"),
        TargetId::new("svc", "c"),
    );
    // rise 3 at 100 ms: 200 ms between a first good probe and UP.
    let p = Params {
        interval: ms(100),
        rise: 3,
        fall: 1,
        ..fast_params()
    };
    let alpha = Params {
        initial: InitialState::Down,
        ..p.clone()
    };
    let shutdown = CancellationToken::new();
    let h = Checker::spawn(
        vec![tcp(&a, live.addr, p.clone()), tcp(&b, dead.addr, p.clone())],
        shutdown.clone(),
    );
    let mut rx = h.subscribe();
    eventually_watch(&mut rx, ms(2000), "b down", |v| !is_up(v, &b)).await;

    // c is new with alpha; a and b get other probes (another port), b with
    // alpha off: neither changes state on the reload itself.
    let other = Backend::start().await;
    let s = h.update_targets(vec![
        tcp(&a, other.addr, alpha.clone()),
        tcp(&b, live.addr, p.clone()),
        tcp(&c, live.addr, alpha),
    ]);
    assert_eq!((s.kept, s.replaced, s.added), (0, 2, 1));
    let v = h.view();
    assert!(is_up(&v, &a), "a serving backend stays UP, alpha or not");
    assert!(!is_up(&v, &b), "a known-DOWN backend stays DOWN");
    assert!(!is_up(&v, &c), "alpha: added DOWN");
    assert!(!h.target(&c).unwrap().is_up());
    // b and c need rise (3) successes: one good probe leaves them DOWN.
    let v = eventually_watch(&mut rx, ms(2000), "first good probes of b and c", |v| {
        [&b, &c].iter().all(|id| last_ok(v, id) == Some(true))
    })
    .await;
    assert!(!is_up(&v, &b) && !is_up(&v, &c), "{v:#?}");
    eventually_watch(&mut rx, ms(2000), "b and c up after rise", |v| {
        is_up(v, &b) && is_up(v, &c)
    })
    .await;
    shutdown.cancel();
}

#[tokio::test]
async fn reload_keeps_unchanged_targets_and_forgets_removed_ones() {
    let live = Backend::start().await;
    let dead = Backend::stopped().await;
    let (a, b, c) = (
        TargetId::new("svc", "a"),
        TargetId::new("svc", "b"),
        TargetId::new("other", "c"),
    );
    let p = Params {
        interval: ms(100),
        rise: 3,
        fall: 1,
        ..fast_params()
    };
    let shutdown = CancellationToken::new();
    let h = Checker::spawn(
        vec![tcp(&a, live.addr, p.clone()), tcp(&b, dead.addr, p.clone())],
        shutdown.clone(),
    );
    let mut rx = h.subscribe();
    let before = eventually_watch(&mut rx, ms(2000), "b down", |v| !is_up(v, &b)).await;
    let b_handle = h.target(&b).unwrap();

    // Same probes (b with new parameters), plus a new target.
    let slower = Params {
        interval: ms(150),
        ..p.clone()
    };
    let s = h.update_targets(vec![
        tcp(&a, live.addr, p.clone()),
        tcp(&b, dead.addr, slower),
        tcp(&c, live.addr, p.clone()),
    ]);
    assert_eq!((s.kept, s.added, s.replaced, s.removed), (2, 1, 0, 0));
    let v = h.view();
    assert!(!is_up(&v, &b), "kept its DOWN state");
    assert_eq!(v.get(&b).unwrap().since, before.get(&b).unwrap().since);
    assert!(v.get(&c).is_some());

    // a gets another probe (state carried), b is removed.
    let exec = Target::new(
        a.clone(),
        Probe::Exec(ExecProbe::new("true", &[])),
        p.clone(),
    )
    .unwrap();
    let s = h.update_targets(vec![exec, tcp(&c, live.addr, p)]);
    assert_eq!((s.kept, s.added, s.replaced, s.removed), (1, 0, 1, 1));
    let v = h.view();
    assert!(v.get(&b).is_none());
    assert!(is_up(&v, &a), "replaced target starts from its old state");
    assert_eq!(v.service("svc").total, 1);
    b_handle.report_passive(false); // a stale handle is harmless
    // Several later publishes never bring b back.
    for _ in 0..5 {
        let v = eventually_watch(&mut rx, ms(2000), "another update", |_| true).await;
        assert!(v.get(&b).is_none(), "removed target reappeared");
        rx.changed().await.unwrap();
    }
    let v = eventually_watch(&mut rx, ms(2000), "exec probe ran", |v| {
        v.get(&a)
            .and_then(|x| x.last_probe.as_ref())
            .is_some_and(|r| r.detail == "exit 0")
    })
    .await;
    assert!(is_up(&v, &a));

    shutdown.cancel();
    tokio::time::timeout(ms(2000), h.wait_stopped())
        .await
        .expect("tasks stop on shutdown");
}
