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
//! `try_read`/`try_write`, which clear tokio's readiness on `WouldBlock`.

use std::io;
use std::task::{Context, Poll};

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

/// Reads from `src` into an empty `buf`.
pub(crate) fn poll_read_into(
    cx: &mut Context<'_>,
    src: &TcpStream,
    buf: &mut CopyBuf,
) -> io::Result<Step> {
    debug_assert!(buf.is_empty());
    loop {
        match src.poll_read_ready(cx) {
            Poll::Pending => return Ok(Step::Blocked),
            Poll::Ready(r) => r?,
        }
        return match src.try_read(&mut buf.buf) {
            Ok(0) => Ok(Step::Eof),
            Ok(n) => {
                buf.start = 0;
                buf.end = n;
                Ok(Step::Moved(n))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => Err(e),
        };
    }
}

/// Writes what `buf` holds to `dst`, as much as `dst` takes.
pub(crate) fn poll_write_from(
    cx: &mut Context<'_>,
    dst: &TcpStream,
    buf: &mut CopyBuf,
) -> io::Result<Step> {
    if buf.is_empty() {
        return Ok(Step::Blocked);
    }
    loop {
        match dst.poll_write_ready(cx) {
            Poll::Pending => return Ok(Step::Blocked),
            Poll::Ready(r) => r?,
        }
        return match dst.try_write(&buf.buf[buf.start..buf.end]) {
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
