//! Bidirectional forwarding of one proxied connection: client ⇄ backend.
//!
//! One task drives both directions from a single `poll` (no second task, no
//! channel): each direction is a small state machine over tokio readiness
//! that moves bytes with splice(2) through a leased pipe, or copies through a
//! leased buffer, and the two share a per-wake work budget and one idle timer.
//!
//! Rules this module keeps, and why:
//! - **Splice for bulk, copy for chatter.** Every burst starts on the copy
//!   path: a small request/response costs one read and one write, with no
//!   pipe to lease and return and no extra splice call. A large read (a
//!   quarter of the copy buffer or more) means a bulk transfer: from then
//!   until the direction goes quiet, bytes move by splice (HAProxy's `splice-auto` idea; forcing
//!   splice always made small exchanges slower than plain copies).
//! - **Nothing held while idle.** A direction leases a pipe (or buffer) only
//!   once its source is readable, and gives it back as soon as it would block
//!   with nothing staged. Idle connections cost two sockets and this struct.
//! - **No byte lost or reordered.** Bytes staged in a pipe or buffer are sent
//!   before anything new is read; a pipe left over from a failed splice is
//!   drained into the copy buffer first.
//! - **Half-close** (tcp(7) `shutdown`): when one side sends FIN and its
//!   staged bytes are delivered, we `shutdown(SHUT_WR)` the other socket and
//!   keep the opposite direction running. The connection ends when both
//!   directions have ended. An error on either socket ends both at once
//!   (returning drops, hence closes, both sockets).
//! - **The last FIN goes with close(2).** When a direction ends and the
//!   other one already has, the connection is over: returning closes both
//!   sockets, and close(2) sends the FIN a `shutdown` would have sent (the
//!   socket's peer has sent its own FIN and we read up to it, so nothing
//!   unread is left to turn the close into a reset). One syscall fewer per
//!   connection, as HAProxy does.
//! - **Idle timeout** without per-chunk timer cost: a wake that moved bytes
//!   stores `Instant::now()`; the single `Sleep` is only re-armed, to
//!   `last_activity + idle_timeout`, when it fires early.
//! - **Fairness**: after [`BUDGET_BYTES`] bytes or [`BUDGET_OPS`] syscalls in
//!   one wake, the task wakes itself and returns `Pending`, so one fast
//!   connection cannot hold a worker thread (sozu keeps copying while a socket
//!   stays readable and starves its other connections).
//! - **No busy loop**: `Pending` is returned only after a readiness poll has
//!   armed a waker (see `splice`), a self-wake for the budget, or the timer.

use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::copy::{self, CopyBuf};
use super::pipe_pool::{PipeLease, PipePool, global_pipe_pool};
use super::splice::{self, Step};

/// Bytes one wake may move (both directions together) before yielding.
pub const BUDGET_BYTES: u64 = 1024 * 1024;
/// Transfer syscalls one wake may make before yielding.
pub const BUDGET_OPS: u32 = 32;

/// How to forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardOpts {
    /// No byte in either direction for this long closes both sides.
    pub idle_timeout: Duration,
    /// Use splice(2) when the kernel and the pipe pool allow. `false` forces
    /// the copy path (benchmarks, and a switch for kernels where splice
    /// misbehaves).
    pub splice: bool,
}

impl Default for ForwardOpts {
    fn default() -> ForwardOpts {
        ForwardOpts {
            idle_timeout: Duration::from_secs(300),
            splice: true,
        }
    }
}

/// Why a forwarded connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Both directions ended cleanly; the client sent its FIN first.
    ClientClose,
    /// Both directions ended cleanly; the backend sent its FIN first.
    ServerClose,
    /// No byte moved either way for `idle_timeout`.
    IdleTimeout,
    /// Reading from or writing to the client failed (reset, broken pipe…).
    ClientError(io::ErrorKind),
    /// Reading from or writing to the backend failed.
    ServerError(io::ErrorKind),
}

impl EndReason {
    /// tcplog-style name, for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            EndReason::ClientClose => "client-close",
            EndReason::ServerClose => "server-close",
            EndReason::IdleTimeout => "idle-timeout",
            EndReason::ClientError(_) => "client-error",
            EndReason::ServerError(_) => "server-error",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::ClientError(k) | EndReason::ServerError(k) => {
                write!(f, "{} ({k})", self.as_str())
            }
            _ => f.write_str(self.as_str()),
        }
    }
}

/// Receives byte counts as they move (per chunk), so long-lived connections
/// show live counters.
pub trait ByteMeter: Send + Sync {
    /// `n` bytes were delivered to the backend.
    fn to_backend(&self, n: u64);
    /// `n` bytes were delivered to the client.
    fn to_client(&self, n: u64);
}

/// A meter that counts nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMeter;

impl ByteMeter for NoMeter {
    fn to_backend(&self, _: u64) {}
    fn to_client(&self, _: u64) {}
}

/// What a finished forward did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes delivered to the backend (written, not just read).
    pub to_backend: u64,
    /// Bytes delivered to the client.
    pub to_client: u64,
    pub end: EndReason,
}

/// Moves bytes both ways between `client` and `backend` until both
/// directions end, one side fails, or the connection idles out. The caller
/// has already written any PROXY header to `backend`. Uses the process-wide
/// pipe pool ([`super::configure_pipe_pool`]).
pub async fn forward(
    client: TcpStream,
    backend: TcpStream,
    opts: &ForwardOpts,
    meter: &dyn ByteMeter,
) -> Outcome {
    forward_with_pool(client, backend, opts, meter, global_pipe_pool()).await
}

/// [`forward`] with an explicit pipe pool.
pub async fn forward_with_pool(
    client: TcpStream,
    backend: TcpStream,
    opts: &ForwardOpts,
    meter: &dyn ByteMeter,
    pool: &PipePool,
) -> Outcome {
    let mut conn = Connection {
        client,
        backend,
        pool,
        meter,
        idle_timeout: opts.idle_timeout,
        last_activity: Instant::now(),
        to_backend: Half::new(Side::Client, opts.splice),
        to_client: Half::new(Side::Server, opts.splice),
        first_eof: None,
        client_first: false,
    };
    let sleep = tokio::time::sleep(opts.idle_timeout);
    tokio::pin!(sleep);
    poll_fn(|cx| conn.poll(cx, sleep.as_mut())).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

impl Side {
    fn error(self, e: &io::Error) -> EndReason {
        match self {
            Side::Client => EndReason::ClientError(e.kind()),
            Side::Server => EndReason::ServerError(e.kind()),
        }
    }

    fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// Work done in one wake, across both directions.
#[derive(Debug, Default)]
struct Budget {
    bytes: u64,
    ops: u32,
}

impl Budget {
    fn exhausted(&self) -> bool {
        self.bytes >= BUDGET_BYTES || self.ops >= BUDGET_OPS
    }
}

struct Connection<'a> {
    client: TcpStream,
    backend: TcpStream,
    pool: &'a PipePool,
    meter: &'a dyn ByteMeter,
    idle_timeout: Duration,
    /// Last wake that moved a byte; the idle timer is measured from here.
    last_activity: Instant,
    to_backend: Half<'a>,
    to_client: Half<'a>,
    /// Which side sent its FIN first (decides ClientClose/ServerClose).
    first_eof: Option<Side>,
    /// Alternates which direction goes first in a wake, so neither can use
    /// up the shared budget every time.
    client_first: bool,
}

impl Connection<'_> {
    fn poll(&mut self, cx: &mut Context<'_>, mut sleep: Pin<&mut Sleep>) -> Poll<Outcome> {
        let mut budget = Budget::default();
        let before = self.to_backend.moved + self.to_client.moved;
        self.client_first = !self.client_first;
        for client_turn in [self.client_first, !self.client_first] {
            let (half, src, dst) = if client_turn {
                (&mut self.to_backend, &self.client, &self.backend)
            } else {
                (&mut self.to_client, &self.backend, &self.client)
            };
            if half.done {
                continue;
            }
            let r = half.poll(cx, src, dst, self.pool, &mut budget, self.meter);
            if half.eof && self.first_eof.is_none() {
                self.first_eof = Some(half.from);
            }
            let from = half.from;
            match r {
                Poll::Ready(Err(end)) => return Poll::Ready(self.outcome(end)),
                // The other direction still runs: pass this one's FIN on now.
                Poll::Ready(Ok(())) if !(self.to_backend.done && self.to_client.done) => {
                    if let Err(end) = half_close(dst, from) {
                        return Poll::Ready(self.outcome(end));
                    }
                }
                _ => {}
            }
        }
        if self.to_backend.done && self.to_client.done {
            let end = match self.first_eof {
                Some(Side::Server) => EndReason::ServerClose,
                _ => EndReason::ClientClose,
            };
            return Poll::Ready(self.outcome(end));
        }
        if self.to_backend.moved + self.to_client.moved != before {
            self.last_activity = Instant::now();
        }
        if budget.exhausted() {
            // Yield: let other tasks run, then come straight back.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        // At most two rounds: a fire before the deadline re-arms once.
        for _ in 0..2 {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = self.last_activity + self.idle_timeout;
            if Instant::now() >= deadline {
                return Poll::Ready(self.outcome(EndReason::IdleTimeout));
            }
            sleep.as_mut().reset(deadline);
        }
        Poll::Pending
    }

    fn outcome(&self, end: EndReason) -> Outcome {
        Outcome {
            to_backend: self.to_backend.moved,
            to_client: self.to_client.moved,
            end,
        }
    }
}

/// What one step of [`Half::poll`] did.
enum Turn {
    /// Whether bytes moved (or EOF was seen).
    Moved(bool),
    /// The path changed (splice refused by the kernel): start the turn again.
    Again,
}

/// One direction, `from` → the other side.
struct Half<'p> {
    /// The side bytes are read from.
    from: Side,
    /// Splice allowed by the options and not refused by the kernel
    /// (`EINVAL`/`ENOSYS` turn it off for good).
    splice: bool,
    /// The pool was empty: copy until this direction next goes quiet.
    pool_fallback: bool,
    /// A read filled the copy buffer: splice until this direction goes quiet.
    bulk: bool,
    /// Leased while bytes flow; may hold bytes not yet sent.
    pipe: Option<PipeLease<'p>>,
    /// Leased while bytes flow on the copy path; may hold bytes not yet sent.
    buf: Option<CopyBuf>,
    /// The source sent FIN.
    eof: bool,
    /// FIN seen, everything staged delivered, destination shut for writing.
    done: bool,
    /// Bytes delivered to the destination.
    moved: u64,
}

impl<'p> Half<'p> {
    fn new(from: Side, splice: bool) -> Half<'p> {
        Half {
            from,
            splice,
            pool_fallback: false,
            bulk: false,
            pipe: None,
            buf: None,
            eof: false,
            done: false,
            moved: 0,
        }
    }

    fn pipe_fill(&self) -> usize {
        self.pipe.as_ref().map_or(0, |p| p.fill)
    }

    fn buf_empty(&self) -> bool {
        self.buf.as_ref().is_none_or(CopyBuf::is_empty)
    }

    fn delivered(&mut self, n: usize, budget: &mut Budget, meter: &dyn ByteMeter) {
        let n = n as u64;
        self.moved += n;
        budget.bytes += n;
        match self.from {
            Side::Client => meter.to_backend(n),
            Side::Server => meter.to_client(n),
        }
    }

    /// Moves what it can. `Ready(Ok)` once the direction is finished (the
    /// caller passes the FIN on), `Ready(Err)` when a socket failed, `Pending` when blocked (waker armed)
    /// or out of budget (caller self-wakes).
    ///
    /// Each turn: deliver what is staged, read more, then finished or quiet.
    /// The steps are small `#[inline]` functions of this module, so the
    /// split costs the hot path nothing.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &TcpStream,
        dst: &TcpStream,
        pool: &'p PipePool,
        budget: &mut Budget,
        meter: &dyn ByteMeter,
    ) -> Poll<Result<(), EndReason>> {
        loop {
            if budget.exhausted() {
                return Poll::Pending;
            }
            let mut progress = match self.deliver(cx, dst, budget, meter)? {
                Turn::Again => continue,
                Turn::Moved(p) => p,
            };
            match self.read_more(cx, src, pool, budget)? {
                Turn::Again => continue,
                Turn::Moved(p) => progress |= p,
            }
            if self.eof && self.pipe_fill() == 0 && self.buf_empty() {
                self.finish();
                return Poll::Ready(Ok(()));
            }
            if !progress {
                self.go_quiet();
                return Poll::Pending;
            }
        }
    }

    /// Splice only in a bulk burst, and only once the buffer is drained, so
    /// its bytes go out before anything read through a pipe.
    #[inline]
    fn use_splice(&self) -> bool {
        self.splice && !self.pool_fallback && self.bulk && self.buf_empty()
    }

    /// Step 1: delivers what is staged, oldest first: the pipe, then the
    /// buffer (the buffer only ever holds bytes that left the pipe or were
    /// read after the pipe emptied).
    #[inline]
    fn deliver(
        &mut self,
        cx: &mut Context<'_>,
        dst: &TcpStream,
        budget: &mut Budget,
        meter: &dyn ByteMeter,
    ) -> Result<Turn, EndReason> {
        let from = self.from;
        let src_err = |e: io::Error| from.error(&e);
        let dst_err = |e: io::Error| from.other().error(&e);
        let mut progress = false;
        if self.use_splice() {
            if let Some(p) = self.pipe.as_mut().filter(|p| p.fill > 0) {
                budget.ops += 1;
                match splice::poll_splice_out(cx, dst, p).map_err(dst_err)? {
                    Step::Moved(n) => {
                        self.delivered(n, budget, meter);
                        progress = true;
                    }
                    Step::Unsupported => {
                        self.splice = false;
                        return Ok(Turn::Again);
                    }
                    // splice out never reports an end of stream.
                    Step::Blocked | Step::Eof | Step::MovedEof(_) => {}
                }
            }
        } else {
            if !self.buf_empty() {
                let b = self.buf.as_mut().expect("not empty");
                budget.ops += 1;
                // After the source's EOF, these are its last bytes.
                let last = self.eof;
                if let Step::Moved(n) = copy::poll_write_from(cx, dst, b, last).map_err(dst_err)? {
                    self.delivered(n, budget, meter);
                    progress = true;
                }
            }
            if self.buf_empty() && self.pipe_fill() > 0 {
                let p = self.pipe.as_mut().expect("fill > 0");
                let b = self.buf.get_or_insert_with(CopyBuf::new);
                // A local pipe read: failure here is ours, but the
                // bytes belong to the source side's stream.
                copy::drain_pipe_into(p, b).map_err(src_err)?;
                progress = true;
            }
        }
        Ok(Turn::Moved(progress))
    }

    /// Step 2: reads more, once everything staged on the other path is out.
    /// (Re-evaluates the path: step 1 may have just emptied the buffer of a
    /// bulk burst, and the next read should go through a pipe.)
    #[inline]
    fn read_more(
        &mut self,
        cx: &mut Context<'_>,
        src: &TcpStream,
        pool: &'p PipePool,
        budget: &mut Budget,
    ) -> Result<Turn, EndReason> {
        if self.eof {
            return Ok(Turn::Moved(false));
        }
        let use_splice = self.use_splice();
        let staged_elsewhere = if use_splice {
            !self.buf_empty()
        } else {
            !self.buf_empty() || self.pipe_fill() > 0
        };
        if staged_elsewhere {
            return Ok(Turn::Moved(false));
        }
        let from = self.from;
        match self
            .fill(cx, src, pool, use_splice, budget)
            .map_err(|e| from.error(&e))?
        {
            Step::Moved(_) => Ok(Turn::Moved(true)),
            Step::MovedEof(_) | Step::Eof => {
                self.eof = true;
                Ok(Turn::Moved(true))
            }
            Step::Unsupported => Ok(Turn::Again),
            Step::Blocked => Ok(Turn::Moved(false)),
        }
    }

    /// Step 3: the source's FIN and every staged byte delivered: returns the
    /// leases. The caller passes the FIN on ([`half_close`]) unless the
    /// connection is over.
    fn finish(&mut self) {
        self.pipe = None;
        self.buf = None;
        self.done = true;
    }

    /// No progress this turn: hands back whatever holds no bytes.
    #[inline]
    fn go_quiet(&mut self) {
        if self.pipe_fill() == 0 {
            self.pipe = None;
        }
        if self.buf_empty() {
            self.buf = None;
        }
        if self.pipe.is_none() && self.buf.is_none() {
            self.pool_fallback = false;
            self.bulk = false;
        }
    }

    /// Reads from `src` into the pipe or buffer, leasing one only once the
    /// socket is readable.
    fn fill(
        &mut self,
        cx: &mut Context<'_>,
        src: &TcpStream,
        pool: &'p PipePool,
        use_splice: bool,
        budget: &mut Budget,
    ) -> io::Result<Step> {
        if self.pipe.is_none() && (use_splice || self.buf.is_none()) {
            // Nothing leased yet: lease only if there is something to read.
            match src.poll_read_ready(cx) {
                Poll::Pending => return Ok(Step::Blocked),
                Poll::Ready(r) => r?,
            }
        }
        budget.ops += 1;
        if use_splice {
            if self.pipe.is_none() {
                match pool.lease() {
                    Some(p) => self.pipe = Some(p),
                    None => {
                        self.pool_fallback = true;
                        return Ok(Step::Unsupported);
                    }
                }
            }
            let p = self.pipe.as_mut().expect("leased just above");
            let step = splice::poll_splice_in(cx, src, p)?;
            if step == Step::Unsupported {
                self.splice = false;
            }
            Ok(step)
        } else {
            let b = self.buf.get_or_insert_with(CopyBuf::new);
            let step = copy::poll_read_into(cx, src, b)?;
            if b.was_large_read() {
                self.bulk = true;
            }
            Ok(step)
        }
    }
}

/// Shuts `dst` for writing: the FIN read from the other side (`from`) is
/// passed on while the opposite direction keeps running.
fn half_close(dst: &TcpStream, from: Side) -> Result<(), EndReason> {
    match socket2::SockRef::from(dst).shutdown(Shutdown::Write) {
        // The peer is already gone; the other direction reports that if it
        // matters.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
        r => r.map_err(|e| from.other().error(&e)),
    }
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
