//! The life cycle every Tandem process shares with systemd and signals.
//!
//! A service (`Type=notify`, see systemd/) hooks its signals before it
//! binds anything ([`Runner::systemd`]), so a SIGTERM during start-up is not
//! lost to the default action; starts serving; calls [`Runner::ready`]
//! once it can serve (`READY=1`, and from then on `WATCHDOG=1` every half
//! of `WATCHDOG_USEC`, as sd_watchdog_enabled(3) recommends, from a task on
//! the service's runtime, so a wedged runtime stops the pings and systemd
//! restarts the service; a service whose work also runs on other threads
//! gates each ping on their liveness with [`Runner::gate_pings`]); waits in [`Runner::wait`] until SIGTERM or SIGINT
//! (`STOPPING=1`, pings stop), meanwhile handing each SIGHUP to the
//! caller's reload (`RELOADING=1` before, `READY=1` after); and then drains
//! within its grace period ([`Runner::drain`]). A service that does not
//! reload and runs as one server task does all of that in [`Runner::serve`].
//!
//! Without `NOTIFY_SOCKET` (not under systemd) notifications are no-ops. A
//! failed notification (the manager's socket gone) is logged once at warn,
//! later ones at debug: serving matters more, and the watchdog would
//! otherwise log every few seconds.
//!
//! The notifier and the signal source are traits, so the timing (watchdog
//! cadence, grace expiry) is tested under paused tokio time without systemd.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

/// The shortest watchdog ping interval: a `WatchdogSec` under twice this is
/// not a sane setting, and pinging faster than 100 Hz would only burn CPU
/// (`tokio::time::interval` also panics on zero).
pub const MIN_WATCHDOG_PING: Duration = Duration::from_millis(10);

/// A state change for the service manager (sd_notify(3)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    /// `READY=1`: start-up (or a reload) is finished.
    Ready,
    /// `RELOADING=1` with `MONOTONIC_USEC` (systemd >= 253 wants both).
    Reloading,
    /// `STOPPING=1`: shutdown has begun.
    Stopping,
    /// `WATCHDOG=1`: still alive.
    Watchdog,
    /// `STATUS=...`: free text shown by `systemctl status`.
    Status(&'a str),
}

/// Where notifications go: systemd, or a recorder in tests.
pub trait Notify: Send + Sync + 'static {
    /// Sends these notices as one message.
    fn notify(&self, notices: &[Notice<'_>]);
}

/// The signals a service acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: stop.
    Terminate,
    /// SIGINT: stop (Ctrl-C).
    Interrupt,
    /// SIGHUP: reload.
    Hangup,
}

impl Signal {
    /// Its name, for log lines.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Terminate => "SIGTERM",
            Signal::Interrupt => "SIGINT",
            Signal::Hangup => "SIGHUP",
        }
    }
}

/// Where signals come from: the OS, or a channel in tests.
pub trait Signals: Send {
    /// The next signal.
    fn recv(&mut self) -> impl Future<Output = Signal> + Send;
}

/// sd_notify(3) through `$NOTIFY_SOCKET`.
#[derive(Debug, Default)]
pub struct Systemd {
    failed_once: AtomicBool,
}

impl Notify for Systemd {
    fn notify(&self, notices: &[Notice<'_>]) {
        use sd_notify::NotifyState as S;
        let mut states = Vec::with_capacity(notices.len() + 1);
        for n in notices {
            match *n {
                Notice::Ready => states.push(S::Ready),
                Notice::Reloading => {
                    states.push(S::Reloading);
                    if let Ok(now) = S::monotonic_usec_now() {
                        states.push(now);
                    }
                }
                Notice::Stopping => states.push(S::Stopping),
                Notice::Watchdog => states.push(S::Watchdog),
                Notice::Status(s) => states.push(S::Status(s)),
            }
        }
        if let Err(e) = sd_notify::notify(&states) {
            if self.failed_once.swap(true, Ordering::Relaxed) {
                tracing::debug!(error = %e, "sd_notify failed");
            } else {
                tracing::warn!(error = %e, "sd_notify failed (later failures are logged at debug)");
            }
        }
    }
}

/// SIGTERM, SIGINT and (if asked for) SIGHUP, hooked when constructed.
#[derive(Debug)]
pub struct OsSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    /// `None` when the service does not reload: SIGHUP keeps its default
    /// action (terminate), as for any program that does not handle it.
    hup: Option<tokio::signal::unix::Signal>,
}

impl OsSignals {
    /// Hooks the signals now. Must be called inside a tokio runtime.
    pub fn hook(reload: bool) -> std::io::Result<Self> {
        Ok(OsSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: if reload {
                Some(signal(SignalKind::hangup())?)
            } else {
                None
            },
        })
    }
}

impl Signals for OsSignals {
    async fn recv(&mut self) -> Signal {
        let hup = async {
            match &mut self.hup {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.term.recv() => Signal::Terminate,
            _ = self.int.recv() => Signal::Interrupt,
            _ = hup => Signal::Hangup,
        }
    }
}

/// How [`Runner::wait`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop<T> {
    /// SIGTERM or SIGINT: shut down.
    Signal(Signal),
    /// The service's own future ended first (it failed on its own).
    Ended(T),
}

/// The life cycle of one service process; see the module doc.
pub struct Runner<S, N> {
    signals: S,
    notifier: Arc<N>,
    /// systemd's `WATCHDOG_USEC`; `None` when no watchdog is armed.
    watchdog: Option<Duration>,
    /// How long [`Runner::drain`] waits before cutting the drain short.
    grace: Duration,
    pinger: Option<JoinHandle<()>>,
    gate: Option<PingGate>,
}

/// Asked before each watchdog ping: `None` to ping, or what is stalled (the
/// ping is withheld and that is logged at warn).
pub type PingGate = Arc<dyn Fn() -> Option<String> + Send + Sync>;

impl Runner<OsSignals, Systemd> {
    /// The runner for a real process: signals hooked now (SIGHUP only if
    /// `reload`), notifications to systemd, the watchdog from
    /// `WATCHDOG_USEC`. Must be called inside a tokio runtime.
    pub fn systemd(reload: bool, grace: Duration) -> std::io::Result<Self> {
        Ok(Runner::new(
            OsSignals::hook(reload)?,
            Arc::new(Systemd::default()),
            sd_notify::watchdog_enabled(),
            grace,
        ))
    }
}

impl<S: Signals, N: Notify> Runner<S, N> {
    /// A runner over any signal source and notifier (tests inject both).
    pub fn new(signals: S, notifier: Arc<N>, watchdog: Option<Duration>, grace: Duration) -> Self {
        Runner {
            signals,
            notifier,
            watchdog,
            grace,
            pinger: None,
            gate: None,
        }
    }

    /// The interval between two watchdog pings, if a watchdog is armed:
    /// half its period, at least [`MIN_WATCHDOG_PING`].
    pub fn ping_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| (w / 2).max(MIN_WATCHDOG_PING))
    }

    /// Makes each watchdog ping ask `gate` first (see [`PingGate`]): the
    /// pinger runs on one runtime, and a thread it cannot see (another
    /// runtime's) proves itself alive through the gate. Call before
    /// [`Runner::ready`].
    pub fn gate_pings(&mut self, gate: PingGate) {
        self.gate = Some(gate);
    }

    /// Start-up is done: `READY=1` (with `STATUS=` when given), and the
    /// watchdog pings start.
    pub fn ready(&mut self, status: Option<&str>) {
        match status {
            Some(s) => self.notifier.notify(&[Notice::Ready, Notice::Status(s)]),
            None => self.notifier.notify(&[Notice::Ready]),
        }
        if let (Some(every), None) = (self.ping_interval(), &self.pinger) {
            let notifier = Arc::clone(&self.notifier);
            let gate = self.gate.clone();
            self.pinger = Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    match gate.as_ref().and_then(|g| g()) {
                        None => notifier.notify(&[Notice::Watchdog]),
                        Some(stalled) => {
                            tracing::warn!(%stalled, "watchdog ping withheld: {stalled}")
                        }
                    }
                }
            }));
        }
    }

    /// Serves until SIGTERM or SIGINT, or until `service` ends on its own.
    /// Each SIGHUP runs `reload` between `RELOADING=1` and `READY=1`; it
    /// returns the `STATUS=` text to send with the latter. On a stop signal
    /// it logs "SIGTERM: shutting down" (or SIGINT), sends `STOPPING=1`
    /// (with `stopping` as `STATUS=` when given) and stops the pings.
    pub async fn wait<T, R, RF>(
        &mut self,
        service: impl Future<Output = T>,
        mut reload: R,
        stopping: Option<&str>,
    ) -> Stop<T>
    where
        R: FnMut() -> RF,
        RF: Future<Output = &'static str>,
    {
        tokio::pin!(service);
        let sig = loop {
            let sig = tokio::select! {
                sig = self.signals.recv() => sig,
                ended = service.as_mut() => return Stop::Ended(ended),
            };
            if sig != Signal::Hangup {
                break sig;
            }
            self.notifier.notify(&[Notice::Reloading]);
            let status = reload().await;
            self.notifier
                .notify(&[Notice::Ready, Notice::Status(status)]);
        };
        tracing::info!("{}: shutting down", sig.name());
        match stopping {
            Some(s) => self.notifier.notify(&[Notice::Stopping, Notice::Status(s)]),
            None => self.notifier.notify(&[Notice::Stopping]),
        }
        if let Some(p) = self.pinger.take() {
            p.abort();
        }
        Stop::Signal(sig)
    }

    /// Waits up to the grace period for `drain`; `None` if the grace ran out
    /// first (`drain` is dropped, cutting it short).
    pub async fn drain<T>(&self, drain: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout(self.grace, drain).await.ok()
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// The whole life of a service that does not reload, around its spawned
    /// `server` task: [`Runner::ready`], [`Runner::wait`] for SIGTERM or
    /// SIGINT (or for the server to end unasked), then cancel `shutdown` and
    /// give the server the grace period ([`Runner::drain`]).
    pub async fn serve<T>(
        &mut self,
        mut server: JoinHandle<T>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Served<T> {
        self.ready(None);
        if let Stop::Ended(ended) = self.wait(&mut server, no_reload, None).await {
            return Served::Unasked(ended);
        }
        shutdown.cancel();
        match self.drain(server).await {
            Some(ended) => Served::Drained(ended),
            None => Served::GraceRanOut,
        }
    }
}

/// How [`Runner::serve`] ended.
#[derive(Debug)]
pub enum Served<T> {
    /// The server task ended before any stop signal (it failed on its own).
    Unasked(Result<T, tokio::task::JoinError>),
    /// A stop signal came and the server finished within the grace period.
    Drained(Result<T, tokio::task::JoinError>),
    /// A stop signal came and the grace period ran out first; the server
    /// task is left to end with the runtime.
    GraceRanOut,
}

impl<S, N> Drop for Runner<S, N> {
    fn drop(&mut self) {
        if let Some(p) = self.pinger.take() {
            p.abort();
        }
    }
}

/// A reload for services that do not reload (their SIGHUP is not hooked,
/// so it is never called).
pub async fn no_reload() -> &'static str {
    "serving"
}

#[cfg(test)]
mod tests;
