//! A process-wide, bounded pool of kernel pipes for splice(2).
//!
//! A pipe costs two descriptors and, once data has gone through it, kernel
//! pages up to its size. Taking two pipes per connection at accept, as sozu's
//! splice build does, means 5,000 idle connections need 20,000 descriptors more
//! than they would otherwise. So a connection leases a pipe only while a
//! direction has bytes to move and gives it back when the direction goes quiet
//! with the pipe empty (see `forward`). The pool bounds how many exist at once;
//! when it is exhausted the caller copies through a small userspace buffer
//! instead.
//!
//! Kernel behaviour relied upon (pipe(7), fcntl(2)):
//! - `F_SETPIPE_SZ` rounds the size up to a power-of-two number of pages and
//!   fails with `EPERM` above `/proc/sys/fs/pipe-max-size` (1 MiB by default)
//!   or when the user is over `pipe-user-pages-soft` without
//!   `CAP_SYS_RESOURCE`. We then keep the pipe at whatever size it got and read
//!   the real capacity back with `F_GETPIPE_SZ`.
//! - An empty pipe holds no data pages, so an idle pipe in the pool costs only
//!   its two descriptors; the pool still keeps at most [`MAX_IDLE`] of them.
//! - A pipe that still holds bytes (its connection failed mid-transfer) must
//!   never be reused: those bytes would leak into another connection. Such a
//!   pipe is closed instead of returned.

use std::os::fd::OwnedFd;
use std::sync::{Mutex, OnceLock};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

/// Default pipe size: 256 KiB. Larger pipes move more per splice call (sozu
/// measured 19.4 Gb/s with 1 MiB pipes against 16 Gb/s copying), but each full
/// pipe pins that much kernel memory; 256 KiB is a middle ground that stays
/// under the default unprivileged `pipe-max-size`.
pub const DEFAULT_PIPE_SIZE: usize = 256 * 1024;

/// Default bound on pipes leased at once (each direction of a busy
/// connection takes one; idle connections take none).
pub const DEFAULT_MAX_PIPES: usize = 1024;

/// Most idle pipes kept for reuse; beyond this, returned pipes are closed so a
/// burst does not leave thousands of descriptors open.
pub const MAX_IDLE: usize = 64;

/// One pipe: `read` end, `write` end, capacity in bytes.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) read: OwnedFd,
    pub(crate) write: OwnedFd,
    /// Capacity as the kernel reports it (`F_GETPIPE_SZ`), bytes.
    pub(crate) capacity: usize,
    /// The pool's `pipe_size` when it was made: after a resize, older pipes
    /// are closed on return rather than reused.
    requested: usize,
}

impl Pipe {
    /// A non-blocking pipe of about `size` bytes (see the module doc for
    /// when the kernel gives less).
    fn new(size: usize) -> nix::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let want = i32::try_from(size).unwrap_or(i32::MAX);
        // Failure keeps the default size, which is still a working pipe.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(want));
        let capacity = usize::try_from(fcntl(&write, FcntlArg::F_GETPIPE_SZ)?).unwrap_or(0);
        Ok(Pipe {
            read,
            write,
            capacity,
            requested: size,
        })
    }
}

/// Counters, for tests and for the runtime's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipePoolStats {
    /// Configured bound on pipes leased at once.
    pub max_pipes: usize,
    /// Configured size of new pipes, bytes.
    pub pipe_size: usize,
    /// Pipes leased to connections right now.
    pub in_use: usize,
    /// Empty pipes waiting in the pool.
    pub idle: usize,
    /// Pipes created since start (reuse keeps this low).
    pub created: u64,
    /// Times a lease was refused because `in_use` was at `max_pipes` or a
    /// pipe could not be created; each one is a direction that copied instead.
    pub exhausted: u64,
}

#[derive(Debug)]
struct Inner {
    max_pipes: usize,
    pipe_size: usize,
    idle: Vec<Pipe>,
    in_use: usize,
    created: u64,
    exhausted: u64,
}

/// A bounded set of reusable pipes. The process uses one (see
/// [`configure_pipe_pool`]); tests make their own to read exact counters.
#[derive(Debug)]
pub struct PipePool {
    inner: Mutex<Inner>,
}

impl PipePool {
    pub fn new(max_pipes: usize, pipe_size: usize) -> PipePool {
        PipePool {
            inner: Mutex::new(Inner {
                max_pipes,
                pipe_size,
                idle: Vec::new(),
                in_use: 0,
                created: 0,
                exhausted: 0,
            }),
        }
    }

    /// Changes the bounds. Leased pipes are unaffected; idle pipes of another
    /// size are closed so new leases get the new size.
    pub fn configure(&self, max_pipes: usize, pipe_size: usize) {
        let mut inner = self.lock();
        if inner.pipe_size != pipe_size {
            inner.idle.clear();
        }
        inner.max_pipes = max_pipes;
        inner.pipe_size = pipe_size;
    }

    pub fn stats(&self) -> PipePoolStats {
        let inner = self.lock();
        PipePoolStats {
            max_pipes: inner.max_pipes,
            pipe_size: inner.pipe_size,
            in_use: inner.in_use,
            idle: inner.idle.len(),
            created: inner.created,
            exhausted: inner.exhausted,
        }
    }

    /// An empty pipe, or `None` when the bound is reached or the kernel
    /// refuses a new one (out of descriptors): the caller copies instead.
    pub(crate) fn lease(&self) -> Option<PipeLease<'_>> {
        let mut inner = self.lock();
        if inner.in_use >= inner.max_pipes {
            inner.exhausted += 1;
            return None;
        }
        let pipe = match inner.idle.pop() {
            Some(p) => p,
            None => match Pipe::new(inner.pipe_size) {
                Ok(p) => {
                    inner.created += 1;
                    p
                }
                Err(_) => {
                    inner.exhausted += 1;
                    return None;
                }
            },
        };
        inner.in_use += 1;
        Some(PipeLease {
            pool: self,
            pipe: Some(pipe),
            fill: 0,
        })
    }

    fn give_back(&self, pipe: Option<Pipe>) {
        let mut inner = self.lock();
        inner.in_use -= 1;
        if let Some(pipe) = pipe
            && inner.idle.len() < MAX_IDLE.min(inner.max_pipes)
            && pipe.requested == inner.pipe_size
        {
            inner.idle.push(pipe);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The critical sections only push/pop and count; a panic inside one
        // cannot leave the counters half-updated, so a poisoned lock is
        // still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A pipe on loan to one direction of one connection, with how many bytes it
/// holds. Dropping it returns the pipe to the pool if empty, closes it if not.
#[derive(Debug)]
pub(crate) struct PipeLease<'p> {
    pool: &'p PipePool,
    /// Always `Some` until drop.
    pipe: Option<Pipe>,
    /// Bytes spliced in and not yet spliced out.
    pub(crate) fill: usize,
}

impl PipeLease<'_> {
    pub(crate) fn pipe(&self) -> &Pipe {
        self.pipe.as_ref().expect("only drop takes the pipe")
    }

    /// Room left, as far as bytes go (the kernel may still refuse earlier
    /// when partial pages use up its slots; `splice` then says EAGAIN).
    pub(crate) fn room(&self) -> usize {
        self.pipe().capacity.saturating_sub(self.fill)
    }
}

impl Drop for PipeLease<'_> {
    fn drop(&mut self) {
        let pipe = self.pipe.take();
        // A non-empty pipe would hand this connection's bytes to the next.
        self.pool
            .give_back(if self.fill == 0 { pipe } else { None });
    }
}

static GLOBAL: OnceLock<PipePool> = OnceLock::new();

/// The pool [`crate::proxy::forward`] uses.
pub fn global_pipe_pool() -> &'static PipePool {
    GLOBAL.get_or_init(|| PipePool::new(DEFAULT_MAX_PIPES, DEFAULT_PIPE_SIZE))
}

/// Sets the process-wide bound on pipes leased at once and the size of new
/// pipes (bytes). Call at start (size the bound from the descriptor limit:
/// each pipe is two descriptors) and on reload; established connections keep
/// the pipes they hold.
pub fn configure_pipe_pool(max_pipes: usize, pipe_size: usize) {
    global_pipe_pool().configure(max_pipes, pipe_size);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_reuse_and_bound() {
        let pool = PipePool::new(2, 128 * 1024);
        let a = pool.lease().expect("first");
        assert!(a.pipe().capacity >= 128 * 1024, "{}", a.pipe().capacity);
        let b = pool.lease().expect("second");
        assert!(pool.lease().is_none(), "bound of 2");
        let s = pool.stats();
        assert_eq!((s.in_use, s.idle, s.created, s.exhausted), (2, 0, 2, 1));
        drop(a);
        drop(b);
        let s = pool.stats();
        assert_eq!((s.in_use, s.idle), (0, 2));
        let _c = pool.lease().expect("reused");
        assert_eq!(pool.stats().created, 2, "no new pipe");
    }

    #[test]
    fn non_empty_pipe_is_not_reused() {
        let pool = PipePool::new(4, 64 * 1024);
        let mut a = pool.lease().unwrap();
        nix::unistd::write(&a.pipe().write, b"left over").unwrap();
        a.fill = 9;
        drop(a);
        let s = pool.stats();
        assert_eq!((s.in_use, s.idle), (0, 0));
    }

    #[test]
    fn resize_drops_idle_pipes() {
        let pool = PipePool::new(4, 64 * 1024);
        drop(pool.lease().unwrap());
        assert_eq!(pool.stats().idle, 1);
        pool.configure(4, 512 * 1024);
        assert_eq!(pool.stats().idle, 0);
        let a = pool.lease().unwrap();
        assert!(a.pipe().capacity >= 512 * 1024);
    }

    #[test]
    fn zero_bound_never_leases() {
        let pool = PipePool::new(0, 64 * 1024);
        assert!(pool.lease().is_none());
        assert_eq!(pool.stats().created, 0);
    }
}
