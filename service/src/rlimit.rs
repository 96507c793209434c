//! The descriptor limit. A server holds one descriptor per connection (two
//! for a proxy), and the usual soft `RLIMIT_NOFILE` of 1,024 is reached
//! long before memory or CPU run out. The soft limit is only a default the
//! process may raise itself, up to the hard limit, without privilege
//! (setrlimit(2)); so each service raises it at start and logs the result.
//! The hard limit comes from systemd's `LimitNOFILE=` (see systemd/).

use std::io;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the limit
/// now in force. Nothing is changed when the two are already equal, so a
/// unit that sets both (`LimitNOFILE=N`) needs no setrlimit at all, and its
/// seccomp filter may deny the call.
pub fn raise_nofile() -> io::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok(hard)
}

/// The soft and hard `RLIMIT_NOFILE` of this process.
pub fn nofile() -> io::Result<(u64, u64)> {
    getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Changes this process's limit: nextest runs each test in a process of
    // its own, and nothing else here opens many files.
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (_, hard) = nofile().unwrap();
        if hard < 2 {
            return;
        }
        // Lowering the soft limit needs no privilege.
        setrlimit(Resource::RLIMIT_NOFILE, hard / 2, hard).unwrap();
        assert_eq!(nofile().unwrap(), (hard / 2, hard));
        assert_eq!(raise_nofile().unwrap(), hard);
        assert_eq!(nofile().unwrap(), (hard, hard));
        // Already raised: nothing to do, same answer.
        assert_eq!(raise_nofile().unwrap(), hard);
    }
}
