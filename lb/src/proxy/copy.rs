//! The plain copy path: socket → userspace buffer → socket.
//!
//! Used for small exchanges (every burst starts here: one read and one write
//! per message, no pipe), when splicing is off (`ForwardOpts::splice ==
//! false`), when the pipe pool is exhausted, or when the kernel refuses
//! splice. The buffer exists only while the direction has data in flight:
//! `forward` drops it when the direction goes quiet with the buffer empty, so
//! an idle connection holds no memory here. Dropped buffers go back to a
//! small per-thread free list, so a keep-alive connection does not allocate
//! (and zero) 64 KiB for every request.
//!
//! Same readiness protocol as `splice`: `poll_*_ready` arms the waker, then
//! the syscall inside `try_io`, which clears tokio's readiness on
//! `WouldBlock`.
//!
//! Reads take the readiness model HAProxy takes on epoll, which saves the
//! recv(2) that would only answer `EAGAIN` after every short read, and the
//! one that would only answer 0 after a short read that emptied a closed
//! socket:
//! - **A short read means drained.** tcp_recvmsg() returns fewer bytes than
//!   asked only when the receive queue ran empty, so a short read clears the
//!   read readiness (tokio's own `poll_read` does the same on epoll). Bytes
//!   that arrive later raise a new edge, and tokio's clear only applies to
//!   the readiness seen before the read (its tick), so no wake-up is lost.
//! - **FIN seen, then a short read, means end of stream.** Readiness with
//!   `READ_CLOSED` (EPOLLRDHUP) and no `ERROR` observed *before* the read
//!   says the peer's in-order FIN was already queued, behind every byte it
//!   sent; a short read then took all of them, and the next read could only
//!   return 0. With `ERROR` (a reset also raises RDHUP) nothing is inferred:
//!   the next read reports the error.

use std::future::Future;
use std::io::{self, Read};
use std::task::{Context, Poll};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::pipe_pool::PipeLease;
use super::splice::Step;

/// Copy buffer size: 64 KiB per active direction. Large enough that one
/// read takes a good share of a socket's receive queue, small enough that
/// thousands of busy connections stay cheap; idle ones hold none.
pub(crate) const COPY_BUF_SIZE: usize = 64 * 1024;

/// Bytes read from the source and not yet written: `buf[start..end]`.
#[derive(Debug)]
pub(crate) struct CopyBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

/// Buffers kept per thread for reuse (1 MiB at most). A chatty direction
/// takes a buffer and gives it back within one wake (read, write, would
/// block), so a worker thread rarely holds more than a few at once; bulk
/// directions move to splice. More than this are freed.
const FREE_PER_THREAD: usize = 16;

thread_local! {
    static FREE: std::cell::RefCell<Vec<Box<[u8]>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl CopyBuf {
    pub(crate) fn new() -> CopyBuf {
        let buf = FREE
            .with(|f| f.borrow_mut().pop())
            .unwrap_or_else(|| vec![0; COPY_BUF_SIZE].into_boxed_slice());
        CopyBuf {
            buf,
            start: 0,
            end: 0,
        }
    }

    /// Whether the last read was large (at least a quarter of the buffer,
    /// 16 KiB): the sign of a bulk transfer that splice moves cheaper. A
    /// whole-buffer read is too strict a test: a reader that keeps up gets
    /// one loopback segment (just under 64 KiB) per read.
    pub(crate) fn was_large_read(&self) -> bool {
        self.start == 0 && self.end >= self.buf.len() / 4
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

impl Drop for CopyBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        // Ignore a thread-local already destroyed at thread exit.
        let _ = FREE.try_with(|f| {
            let mut f = f.borrow_mut();
            if f.len() < FREE_PER_THREAD {
                f.push(buf);
            }
        });
    }
}

/// Reads from `src` into an empty `buf` (see the module doc for when a
/// short read ends the stream without another read).
pub(crate) fn poll_read_into(
    cx: &mut Context<'_>,
    src: &TcpStream,
    buf: &mut CopyBuf,
) -> io::Result<Step> {
    debug_assert!(buf.is_empty());
    let want = buf.buf.len();
    loop {
        match src.poll_read_ready(cx) {
            Poll::Pending => return Ok(Step::Blocked),
            Poll::Ready(r) => r?,
        }
        let fin_queued = fin_queued(cx, src);
        let mut short = 0;
        let r = src.try_io(Interest::READABLE, || {
            let n = (&*socket2::SockRef::from(src)).read(&mut buf.buf)?;
            if n > 0 && n < want {
                // Drained: `WouldBlock` makes try_io clear the readiness.
                short = n;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        let n = match r {
            Ok(0) => return Ok(Step::Eof),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && short > 0 => short,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        buf.start = 0;
        buf.end = n;
        return Ok(if short > 0 && fin_queued {
            Step::MovedEof(n)
        } else {
            Step::Moved(n)
        });
    }
}

/// Whether the readiness tokio holds for `src` now says the peer's FIN is
/// queued (`READ_CLOSED`) and no error is (`ERROR`). Called right after
/// `poll_read_ready` returned ready, so the `ready` future completes on its
/// first poll (it only reads the readiness word).
fn fin_queued(cx: &mut Context<'_>, src: &TcpStream) -> bool {
    let ready = std::pin::pin!(src.ready(Interest::READABLE | Interest::ERROR));
    match ready.poll(cx) {
        Poll::Ready(Ok(r)) => r.is_read_closed() && !r.is_error(),
        _ => false,
    }
}

/// Writes what `buf` holds to `dst`, as much as `dst` takes.
///
/// `last`: the source has ended and these are its last bytes; the caller
/// sends the FIN right after (shutdown(2) or close(2), in the same wake).
/// They go with `MSG_MORE`, which holds a part-filled segment back
/// (tcp(7): like `TCP_CORK`, for this call) until the FIN is queued
/// behind it; tcp_send_fin() then marks that segment instead of sending a
/// segment of its own. A short answer and its FIN leave in one segment, as
/// HAProxy sends them: one segment, and one ACK, fewer per connection.
pub(crate) fn poll_write_from(
    cx: &mut Context<'_>,
    dst: &TcpStream,
    buf: &mut CopyBuf,
    last: bool,
) -> io::Result<Step> {
    if buf.is_empty() {
        return Ok(Step::Blocked);
    }
    loop {
        match dst.poll_write_ready(cx) {
            Poll::Pending => return Ok(Step::Blocked),
            Poll::Ready(r) => r?,
        }
        // MSG_NOSIGNAL: a closed peer is an EPIPE error, not a SIGPIPE.
        let flags = libc::MSG_NOSIGNAL | if last { libc::MSG_MORE } else { 0 };
        let bytes = &buf.buf[buf.start..buf.end];
        let sent = dst.try_io(Interest::WRITABLE, || {
            socket2::SockRef::from(dst).send_with_flags(bytes, flags)
        });
        return match sent {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "socket accepted 0 bytes",
            )),
            Ok(n) => {
                buf.start += n;
                Ok(Step::Moved(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => Err(e),
        };
    }
}

/// Moves bytes a pipe still holds (splice failed after filling it) into an
/// empty `buf`, so the copy path sends them first and order is kept. A pipe
/// with bytes in it is always readable, so this never waits.
pub(crate) fn drain_pipe_into(lease: &mut PipeLease<'_>, buf: &mut CopyBuf) -> io::Result<usize> {
    debug_assert!(buf.is_empty() && lease.fill > 0);
    let want = lease.fill.min(buf.buf.len());
    let n = nix::unistd::read(&lease.pipe().read, &mut buf.buf[..want])?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "pipe empty while its fill count says otherwise",
        ));
    }
    lease.fill -= n;
    buf.start = 0;
    buf.end = n;
    Ok(n)
}
