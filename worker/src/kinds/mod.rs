//! The work itself, one module per kind, free of HTTP.
//!
//! Each kind turns input bytes into output bytes or a [`RunError`] that says
//! who failed: the input (4xx: retrying the job elsewhere cannot help), the
//! time budget, or the operator's command (5xx). The server maps the error to
//! a status and uses [`RunError::code`] as both the JSON error code and the
//! `outcome` metric label.

pub mod exec;
pub mod text;
pub mod thumbnail;
pub mod wordfreq;

use std::time::Duration;

/// Why a run produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The request's content type is not one this kind reads.
    #[error("unsupported content type {got:?}: this kind accepts {accepted}")]
    UnsupportedType {
        /// The `Content-Type` the request carried.
        got: String,
        /// What would be accepted, for the message.
        accepted: &'static str,
    },
    /// A query-string parameter (`?width=`, `?height=`) is out of range.
    /// Answered 400, as before job parameters existed.
    #[error("{0}")]
    BadParameter(String),
    /// A job parameter (`X-Tandem-Params`) is refused. Answered 422, which
    /// the dispatcher treats as permanent.
    #[error(transparent)]
    BadParam(#[from] crate::params::ParamError),
    /// The input is not an image this worker can decode (wrong type,
    /// truncated, corrupt).
    #[error("{0}")]
    Undecodable(String),
    /// The image header announces more pixels than allowed: refused before
    /// decoding, so a small file cannot make us allocate gigabytes.
    #[error(
        "image is {width}x{height} pixels; the limit is {max_side} pixels per side and \
         {max_pixels} pixels in all"
    )]
    TooManyPixels {
        /// Width from the header.
        width: u32,
        /// Height from the header.
        height: u32,
        /// Configured limit on one side.
        max_side: u32,
        /// Configured limit on width × height.
        max_pixels: u64,
    },
    /// Text input that is not UTF-8.
    #[error("input is not valid UTF-8: invalid byte sequence at byte offset {valid_up_to}")]
    InvalidUtf8 {
        /// Length of the valid prefix, bytes.
        valid_up_to: usize,
    },
    /// The run took longer than the kind's timeout.
    #[error("run did not finish within {0:?}")]
    Timeout(Duration),
    /// The exec command exited unsuccessfully.
    #[error("command failed ({status}); end of stderr: {stderr_tail:?}")]
    CommandFailed {
        /// "exit status 3", "killed by signal 9".
        status: String,
        /// The last bytes of its stderr, lossily decoded.
        stderr_tail: String,
    },
    /// The exec command wrote more than the stdout cap; it was killed.
    #[error("command wrote more than {limit} bytes to stdout; its process group was killed")]
    OutputTooLarge {
        /// The configured cap, bytes.
        limit: u64,
    },
    /// The exec command could not be started.
    #[error("cannot start command {program}: {reason}")]
    Spawn {
        /// The configured program.
        program: String,
        /// What the OS said.
        reason: String,
    },
    /// A bug or resource failure inside the worker.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RunError {
    /// Stable machine-readable code: the JSON `error.code` and the metric
    /// `outcome` label.
    pub fn code(&self) -> &'static str {
        match self {
            RunError::UnsupportedType { .. } => "unsupported_type",
            RunError::BadParameter(_) => "bad_parameter",
            RunError::BadParam(_) => "bad_param",
            RunError::Undecodable(_) => "undecodable",
            RunError::TooManyPixels { .. } => "too_many_pixels",
            RunError::InvalidUtf8 { .. } => "invalid_utf8",
            RunError::Timeout(_) => "timeout",
            RunError::CommandFailed { .. } => "command_failed",
            RunError::OutputTooLarge { .. } => "output_too_large",
            RunError::Spawn { .. } => "spawn_failed",
            RunError::Internal(_) => "internal",
        }
    }
}

/// The media type of a `Content-Type` value: lower-cased, parameters dropped.
pub(crate) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}
