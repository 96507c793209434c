//! The top-level keys of a job's life after it is stored: how long
//! finished jobs are kept, and how long a client may wait for one.

use std::time::Duration;

use tandem_service::config::ErrorKind;
use tandem_service::config::values::duration;
use tandem_service::config::walk::{Reported, Table, Walker};

/// Retention and waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// Finished jobs (done, failed, cancelled), their inputs and results
    /// are deleted this long after they finished; a key may have its own.
    pub retention: Duration,
    /// Inputs of finished jobs are emptied this long after they finished
    /// (at most `retention`); `None`: kept as long as the job.
    pub input_retention: Option<Duration>,
    /// How often each replica runs a retention pass.
    pub prune_interval: Duration,
    /// The longest `?wait=` a request may ask for.
    pub wait_max: Duration,
    /// How often a replica checks, in one query, whether jobs its waiters
    /// wait on were finished by another replica.
    pub wait_check_interval: Duration,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle {
            retention: Duration::from_secs(7 * 86_400),
            input_retention: None,
            prune_interval: Duration::from_secs(60),
            wait_max: Duration::from_secs(60),
            wait_check_interval: Duration::from_millis(200),
        }
    }
}

/// The keys [`parse`] reads.
pub const KEYS: &[&str] = &[
    "retention",
    "input_retention",
    "prune_interval",
    "wait_max",
    "wait_check_interval",
];

/// Reads the lifecycle keys of the top level; every one before any `?`.
pub fn parse(w: &mut Walker<'_>, root: &Table<'_, '_>) -> Result<Lifecycle, Reported> {
    let d = Lifecycle::default();
    let retention = w.positive_duration(root, "retention", d.retention);
    let input_retention = w.field(
        root,
        "input_retention",
        "a duration greater than zero and at most `retention`, such as \"1d\"",
        |v| duration(v, true),
    );
    let prune_interval = w.field(
        root,
        "prune_interval",
        "a duration from \"1s\" to \"1d\", such as \"1m\"",
        |v| within(v, Duration::from_secs(1), Duration::from_secs(86_400)),
    );
    let wait_max = w.field(
        root,
        "wait_max",
        "a duration from \"1s\" to \"10m\", such as \"60s\"",
        |v| within(v, Duration::from_secs(1), Duration::from_secs(600)),
    );
    let wait_check = w.field(
        root,
        "wait_check_interval",
        "a duration from \"10ms\" to \"10s\", such as \"200ms\"",
        |v| within(v, Duration::from_millis(10), Duration::from_secs(10)),
    );
    let retention = retention?;
    let input_retention = match (input_retention, root.get("input_retention")) {
        (Ok(Some(i)), Some(v)) if i > retention => Err(w.bad_value(
            v,
            root.field("input_retention"),
            ErrorKind::OutOfRange,
            "a duration greater than zero and at most `retention` (inputs go with their job at the latest)",
        )),
        (r, _) => r,
    };
    Ok(Lifecycle {
        retention,
        input_retention: input_retention?,
        prune_interval: prune_interval?.unwrap_or(d.prune_interval),
        wait_max: wait_max?.unwrap_or(d.wait_max),
        wait_check_interval: wait_check?.unwrap_or(d.wait_check_interval),
    })
}

fn within(v: &toml::de::DeValue<'_>, min: Duration, max: Duration) -> Result<Duration, ErrorKind> {
    match duration(v, true)? {
        d if (min..=max).contains(&d) => Ok(d),
        _ => Err(ErrorKind::OutOfRange),
    }
}
