use super::*;
use std::sync::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Records every message with the (paused) time it was sent.
#[derive(Default)]
struct Recorder {
    t0: Mutex<Option<Instant>>,
    sent: Mutex<Vec<(Duration, String)>>,
}

impl Notify for Recorder {
    fn notify(&self, notices: &[Notice<'_>]) {
        let t0 = *self.t0.lock().unwrap().get_or_insert_with(Instant::now);
        let text: Vec<String> = notices.iter().map(|n| format!("{n:?}")).collect();
        self.sent
            .lock()
            .unwrap()
            .push((t0.elapsed(), text.join(" ")));
    }
}

impl Recorder {
    fn starting_now() -> Arc<Self> {
        let r = Recorder::default();
        *r.t0.lock().unwrap() = Some(Instant::now());
        Arc::new(r)
    }
    fn sent(&self) -> Vec<(Duration, String)> {
        self.sent.lock().unwrap().clone()
    }
    fn texts(&self) -> Vec<String> {
        self.sent().into_iter().map(|(_, t)| t).collect()
    }
    fn pings(&self) -> Vec<Duration> {
        self.sent()
            .into_iter()
            .filter(|(_, t)| t == "Watchdog")
            .map(|(at, _)| at)
            .collect()
    }
}

/// Signals sent by the test.
struct Scripted(mpsc::UnboundedReceiver<Signal>);

impl Signals for Scripted {
    async fn recv(&mut self) -> Signal {
        match self.0.recv().await {
            Some(s) => s,
            None => std::future::pending().await,
        }
    }
}

fn runner(
    watchdog: Option<Duration>,
) -> (
    Runner<Scripted, Recorder>,
    Arc<Recorder>,
    mpsc::UnboundedSender<Signal>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let rec = Recorder::starting_now();
    let r = Runner::new(
        Scripted(rx),
        Arc::clone(&rec),
        watchdog,
        Duration::from_secs(5),
    );
    (r, rec, tx)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn watchdog_pings_at_half_the_period_from_ready_until_stopping() {
    let (mut r, rec, tx) = runner(Some(Duration::from_secs(1)));
    tokio::time::sleep(ms(300)).await;
    assert!(rec.sent().is_empty(), "nothing before ready");
    r.ready(Some("serving"));
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(ms(1_800)).await;
        tx.send(Signal::Terminate).unwrap();
        tx
    });
    let stop = r.wait(std::future::pending::<()>(), no_reload, None).await;
    assert_eq!(stop, Stop::Signal(Signal::Terminate));
    let _tx = stopper.await.unwrap();
    // Pings after the stop would show up here.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(rec.pings(), [ms(300), ms(800), ms(1300), ms(1800)]);
    let texts = rec.texts();
    assert_eq!(texts.first().unwrap(), "Ready Status(\"serving\")");
    assert_eq!(texts.last().unwrap(), "Stopping");
}

#[tokio::test(start_paused = true)]
async fn a_gate_that_reports_a_stall_withholds_the_pings_until_it_clears() {
    let (mut r, rec, _tx) = runner(Some(Duration::from_secs(1)));
    let stalled = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stalled);
    r.gate_pings(Arc::new(move || {
        s.load(Ordering::SeqCst).then(|| "worker 1".to_owned())
    }));
    r.ready(None);
    tokio::time::sleep(ms(1_200)).await;
    stalled.store(true, Ordering::SeqCst);
    tokio::time::sleep(ms(1_500)).await;
    stalled.store(false, Ordering::SeqCst);
    tokio::time::sleep(ms(900)).await;
    // 0, 500, 1000 pinged; 1500, 2000, 2500 withheld; 3000, 3500 pinged.
    assert_eq!(rec.pings(), [ms(0), ms(500), ms(1000), ms(3000), ms(3500)]);
}

#[tokio::test(start_paused = true)]
async fn a_tiny_watchdog_period_is_clamped_to_the_minimum_ping_interval() {
    let (r, _, _) = runner(Some(Duration::from_micros(2)));
    assert_eq!(r.ping_interval(), Some(MIN_WATCHDOG_PING));
    let (r, _, _) = runner(Some(Duration::ZERO));
    assert_eq!(r.ping_interval(), Some(MIN_WATCHDOG_PING));
    let (mut r, rec, _tx) = runner(Some(Duration::from_millis(4)));
    r.ready(None);
    tokio::time::sleep(ms(35)).await;
    assert_eq!(rec.pings(), [ms(0), ms(10), ms(20), ms(30)]);
}

#[tokio::test(start_paused = true)]
async fn without_a_watchdog_no_pings() {
    let (mut r, rec, _tx) = runner(None);
    assert_eq!(r.ping_interval(), None);
    r.ready(None);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(rec.texts(), ["Ready"]);
}

#[tokio::test(start_paused = true)]
async fn sighup_runs_the_reload_between_reloading_and_ready() {
    let (mut r, rec, tx) = runner(None);
    r.ready(Some("serving"));
    tx.send(Signal::Hangup).unwrap();
    tx.send(Signal::Hangup).unwrap();
    tx.send(Signal::Interrupt).unwrap();
    let mut reloads = 0;
    let stop = r
        .wait(
            std::future::pending::<()>(),
            || {
                reloads += 1;
                let status = if reloads == 1 {
                    "serving"
                } else {
                    "serving; last reload refused"
                };
                async move {
                    tokio::time::sleep(ms(100)).await;
                    status
                }
            },
            Some("draining connections"),
        )
        .await;
    assert_eq!(stop, Stop::Signal(Signal::Interrupt));
    assert_eq!(reloads, 2);
    assert_eq!(
        rec.sent(),
        [
            (ms(0), "Ready Status(\"serving\")".to_string()),
            (ms(0), "Reloading".to_string()),
            (ms(100), "Ready Status(\"serving\")".to_string()),
            (ms(100), "Reloading".to_string()),
            (
                ms(200),
                "Ready Status(\"serving; last reload refused\")".to_string()
            ),
            (
                ms(200),
                "Stopping Status(\"draining connections\")".to_string()
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_service_that_ends_on_its_own_ends_the_wait_without_stopping() {
    let (mut r, rec, _tx) = runner(Some(Duration::from_secs(1)));
    r.ready(None);
    let service = async {
        tokio::time::sleep(ms(700)).await;
        "failed"
    };
    assert_eq!(
        r.wait(service, no_reload, None).await,
        Stop::Ended("failed")
    );
    assert!(!rec.texts().contains(&"Stopping".to_string()));
}

#[tokio::test(start_paused = true)]
async fn drain_is_cut_short_when_the_grace_runs_out() {
    let (r, _, _) = runner(None);
    let t0 = Instant::now();
    assert_eq!(r.drain(std::future::pending::<()>()).await, None);
    assert_eq!(t0.elapsed(), r.grace());

    let t0 = Instant::now();
    let quick = async {
        tokio::time::sleep(ms(1_500)).await;
        7
    };
    assert_eq!(r.drain(quick).await, Some(7));
    assert_eq!(t0.elapsed(), ms(1_500));
}

#[tokio::test(start_paused = true)]
async fn serve_cancels_the_server_on_sigterm_and_cuts_it_at_the_grace() {
    let (mut r, rec, tx) = runner(None);
    let shutdown = tokio_util::sync::CancellationToken::new();
    // A server that ignores its token: the grace runs out.
    let stubborn = tokio::spawn(std::future::pending::<u8>());
    tx.send(Signal::Terminate).unwrap();
    let t0 = Instant::now();
    let served = r.serve(stubborn, &shutdown).await;
    assert!(matches!(served, Served::GraceRanOut), "{served:?}");
    assert!(shutdown.is_cancelled());
    assert_eq!(t0.elapsed(), r.grace());
    assert_eq!(rec.texts(), ["Ready", "Stopping"]);

    // One that stops 100 ms after its token: drained in time.
    let (mut r, _, tx) = runner(None);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let token = shutdown.clone();
    let polite = tokio::spawn(async move {
        token.cancelled().await;
        tokio::time::sleep(ms(100)).await;
        7
    });
    tx.send(Signal::Interrupt).unwrap();
    let t0 = Instant::now();
    let served = r.serve(polite, &shutdown).await;
    assert!(matches!(served, Served::Drained(Ok(7))), "{served:?}");
    assert_eq!(t0.elapsed(), ms(100));
}

#[tokio::test(start_paused = true)]
async fn serve_reports_a_server_that_ends_unasked() {
    let (mut r, rec, _tx) = runner(None);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let failing = tokio::spawn(async { "accept failed" });
    let served = r.serve(failing, &shutdown).await;
    assert!(
        matches!(served, Served::Unasked(Ok("accept failed"))),
        "{served:?}"
    );
    assert!(!shutdown.is_cancelled());
    assert_eq!(rec.texts(), ["Ready"]);
}
