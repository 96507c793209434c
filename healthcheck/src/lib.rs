//! tandem-healthcheck: active probes and up/down state for backends (issue 3).
//!
//! The crate knows nothing of the proxy: it is given targets (an id, a probe,
//! parameters) and publishes a verdict per target. Modules:
//!
//! - [`machine`]: the pure core. Rise/fall counters, probe intervals and
//!   jitter, passive detection, slow start; simulated time, no I/O.
//! - [`probe`]: the probes themselves: TCP connect, HTTP/1.1 GET, exec.
//! - [`checker`]: the I/O driver. One task per target runs its machine on real
//!   time and publishes a [`checker::HealthView`] on a watch channel; the data
//!   plane reports passive failures and reads weight factors without locks.
//! - [`telemetry`]: metric names and their descriptions.

pub mod checker;
pub mod machine;
pub mod probe;
pub mod telemetry;

pub use checker::{
    BackendHealth, Checker, HealthHandle, HealthView, ProbeRecord, ServiceHealth, Target,
    TargetError, TargetHandle, TargetId, UpdateSummary,
};
pub use machine::{HealthMachine, InitialState, Jitter, Params, State};
pub use probe::{ExecProbe, HttpProbe, Outcome, Probe, ProbeOutcome, StatusRange};
