//! The read-only status page, served on the metrics listener: `GET /`
//! (or `/status`) is one self-contained HTML page (no external assets: the
//! CSS and script are inline) that polls `GET /status.json` every second
//! (`?refresh=SECONDS` to change) and redraws services, backends with their
//! health and last probe, connection counts and VRRP state.
//!
//! The page takes no input and changes nothing; the admin socket remains
//! the only way to act on the balancer.

/// The page, compiled in.
pub const PAGE: &str = include_str!("page.html");
