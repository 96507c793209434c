//! splice(2) between a TCP socket and a pipe, driven by tokio readiness.
//!
//! Bytes go socket → pipe → socket without entering userspace: the kernel
//! moves page references (`SPLICE_F_MOVE`). One pipe per direction; the pipe
//! may hold bytes the destination could not take yet, so its fill level is
//! tracked in the [`PipeLease`] and only ever splices out what went in, in
//! order.
//!
//! Kernel behaviour relied upon (splice(2), tcp(7)):
//! - The sockets are non-blocking (tokio sets `O_NONBLOCK`) and the pipe is
//!   opened `O_NONBLOCK` with `SPLICE_F_NONBLOCK`, so no call ever sleeps;
//!   `EAGAIN` means "not now".
//! - socket → pipe returns 0 at end of stream (the peer's FIN), as `read`
//!   does, provided the length asked is not 0, which we never ask.
//! - socket → pipe says `EAGAIN` both when the socket has nothing *and* when
//!   the pipe has no free slot. A pipe counts slots (pages), not bytes, and TCP
//!   data may occupy partial pages, so a pipe can refuse input while holding
//!   fewer bytes than its capacity. Only an `EAGAIN` with an empty pipe proves
//!   the socket is drained; any other `EAGAIN` must not clear the socket's
//!   readiness, or a socket whose data is already queued would never wake us
//!   again. Draining the pipe is what unblocks it in that case.
//! - pipe → socket with bytes in the pipe says `EAGAIN` only when the socket
//!   send buffer is full: that one does clear write readiness.
//! - `EINVAL` (an fd type that cannot splice) or `ENOSYS` (no splice at all)
//!   makes the caller fall back to copying, see `forward`.
//!
//! Readiness protocol: `poll_*_ready` first (registers the waker when not
//! ready), then the syscall inside `try_io`, which clears tokio's readiness
//! when the closure returns `WouldBlock`; after a clear we poll readiness
//! again so that returning [`Step::Blocked`] always means a waker is armed.

use std::io;
use std::os::fd::AsFd;
use std::task::{Context, Poll};

use nix::errno::Errno;
use nix::fcntl::{SpliceFFlags, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::pipe_pool::PipeLease;

/// What one step of moving bytes did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// This many bytes moved (never 0).
    Moved(usize),
    /// This many bytes moved (never 0), and they were the last before the
    /// source's end of stream (the copy path infers it, see `copy`).
    MovedEof(usize),
    /// The source socket reached end of stream.
    Eof,
    /// Nothing can move now; a waker is armed on the socket, or (splice in
    /// with a non-empty pipe) draining the pipe will make room.
    Blocked,
    /// splice is not possible here (`EINVAL`/`ENOSYS`): copy instead.
    Unsupported,
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EINVAL | Errno::ENOSYS)
    )
}

/// Moves what `src` has into the pipe, up to the pipe's room.
pub(crate) fn poll_splice_in(
    cx: &mut Context<'_>,
    src: &TcpStream,
    lease: &mut PipeLease<'_>,
) -> io::Result<Step> {
    let room = lease.room();
    if room == 0 {
        return Ok(Step::Blocked);
    }
    let pipe_empty = lease.fill == 0;
    loop {
        match src.poll_read_ready(cx) {
            Poll::Pending => return Ok(Step::Blocked),
            Poll::Ready(r) => r?,
        }
        let pipe_w = &lease.pipe().write;
        let r = src.try_io(Interest::READABLE, || {
            match splice(src.as_fd(), None, pipe_w, None, room, flags()) {
                Ok(n) => Ok(Some(n)),
                // Pipe slots full, not the socket's fault: keep readiness.
                Err(Errno::EAGAIN) if !pipe_empty => Ok(None),
                Err(e) => Err(io::Error::from(e)),
            }
        });
        return match r {
            Ok(Some(0)) => Ok(Step::Eof),
            Ok(Some(n)) => {
                lease.fill += n;
                Ok(Step::Moved(n))
            }
            Ok(None) => Ok(Step::Blocked),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if unsupported(&e) => Ok(Step::Unsupported),
            Err(e) => Err(e),
        };
    }
}

/// Moves bytes from the pipe to `dst`, as many as `dst` takes.
pub(crate) fn poll_splice_out(
    cx: &mut Context<'_>,
    dst: &TcpStream,
    lease: &mut PipeLease<'_>,
) -> io::Result<Step> {
    let fill = lease.fill;
    if fill == 0 {
        return Ok(Step::Blocked);
    }
    loop {
        match dst.poll_write_ready(cx) {
            Poll::Pending => return Ok(Step::Blocked),
            Poll::Ready(r) => r?,
        }
        let pipe_r = &lease.pipe().read;
        let r = dst.try_io(Interest::WRITABLE, || {
            splice(pipe_r, None, dst.as_fd(), None, fill, flags()).map_err(io::Error::from)
        });
        return match r {
            // Cannot happen with a non-empty pipe; looping on it would spin.
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "splice moved 0 bytes out of a non-empty pipe",
            )),
            Ok(n) => {
                lease.fill -= n;
                Ok(Step::Moved(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if unsupported(&e) => Ok(Step::Unsupported),
            Err(e) => Err(e),
        };
    }
}
