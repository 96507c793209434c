//! Drain state that survives a restart (HAProxy's `server-state-file` idea):
//! an operator who drained a backend for maintenance does not want an
//! upgrade or crash of the balancer to send traffic back to it.
//!
//! The file holds one `service<TAB>backend-address` line per drained
//! backend. It is rewritten whole (temporary file, then rename) on every
//! drain and enable, so a crash mid-write leaves the old file. Keyed by
//! address like the rest of the runtime state, so a renamed backend stays
//! drained. Entries for backends no longer configured are ignored and
//! dropped at the next write.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;

/// Reads the drained (service, address) pairs; a missing file is empty.
pub fn load(path: &Path) -> io::Result<Vec<(String, SocketAddr)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let (svc, addr) = l.split_once('\t')?;
            Some((svc.to_string(), addr.parse().ok()?))
        })
        .collect())
}

/// Replaces the file with `drained`.
pub fn save(path: &Path, drained: &[(String, SocketAddr)]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        for (svc, addr) in drained {
            writeln!(f, "{svc}\t{addr}")?;
        }
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("lb.drained");
        assert!(load(&p).unwrap().is_empty());
        let set = vec![("api".to_string(), "198.18.0.10:80".parse().unwrap())];
        save(&p, &set).unwrap();
        assert_eq!(load(&p).unwrap(), set);
        save(&p, &[]).unwrap();
        assert!(load(&p).unwrap().is_empty());
    }
}
