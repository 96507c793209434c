//! `[webhooks]`: where callbacks may go, and how hard to try.

use std::time::Duration;

use tandem_service::config::ErrorKind;
use tandem_service::config::values::{boolean, string};
use tandem_service::config::walk::{Reported, Table, Walker};

use crate::webhook::policy::{Allow, Policy};

/// The validated `[webhooks]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// Which hosts and addresses deliveries may connect to.
    pub policy: Policy,
    /// Longest a TCP connect to one of the receiver's addresses may take.
    pub connect_timeout: Duration,
    /// Longest one attempt may take, from resolving the host to the
    /// response's status line; also bounds reading its body.
    pub timeout: Duration,
    /// Attempts before a delivery is given up (`failed`).
    pub max_attempts: u32,
    /// A delivery not delivered this long after its job ended is given up
    /// at its next failure.
    pub max_age: Duration,
    /// First retry delay; doubles each attempt, with jitter.
    pub retry_base: Duration,
    /// Ceiling of the retry delay.
    pub retry_max: Duration,
    /// Bytes of a response body read at most; the rest is dropped with the
    /// connection.
    pub max_response_bytes: usize,
    /// Attempts in flight from one replica at once.
    pub concurrency: usize,
    /// How often a replica looks for due deliveries it was not woken for
    /// (other replicas' jobs, retries, expired leases).
    pub poll_interval: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            policy: Policy::default(),
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
            max_attempts: 12,
            max_age: Duration::from_secs(86_400),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(3600),
            max_response_bytes: 64 * 1024,
            concurrency: 32,
            poll_interval: Duration::from_secs(1),
        }
    }
}

impl WebhookConfig {
    /// How long a claimed delivery is leased: twice an attempt's `timeout`,
    /// so the lease outlives the attempt and its outcome's write, and a
    /// replica that died mid-attempt has its delivery taken over after it.
    pub fn lease(&self) -> Duration {
        (self.timeout * 2).max(Duration::from_secs(1))
    }
}

/// The keys of `[webhooks]`.
pub const KEYS: &[&str] = &[
    "allow",
    "allow_public",
    "connect_timeout",
    "timeout",
    "max_attempts",
    "max_age",
    "retry_base",
    "retry_max",
    "max_response_bytes",
    "concurrency",
    "poll_interval",
];

const VALID_ALLOW: &str = "an array of CIDRs (\"10.0.0.0/8\", \"fd00::/8\"), IP addresses and host names \
     (\"hooks.example.com\", \"*.corp.example\")";

/// `[webhooks]`, or the defaults when absent. Every key read before any `?`.
pub fn parse(w: &mut Walker<'_>, root: &Table<'_, '_>) -> Result<WebhookConfig, Reported> {
    let d = WebhookConfig::default();
    let Some(table) = w.sub_table(root, "webhooks", KEYS, "[webhooks]")? else {
        return Ok(d);
    };
    let allow = w.array(&table, "allow", VALID_ALLOW, None, |_, v| {
        Allow::parse(string(v)?).map_err(ErrorKind::Invalid)
    });
    let allow_public = w.field(&table, "allow_public", "true or false", boolean);
    let connect_timeout = w.positive_duration(&table, "connect_timeout", d.connect_timeout);
    let timeout = w.positive_duration(&table, "timeout", d.timeout);
    let max_attempts = w.integer_or(&table, "max_attempts", (1, 100), d.max_attempts.into());
    let max_age = w.positive_duration(&table, "max_age", d.max_age);
    let retry_base = w.positive_duration(&table, "retry_base", d.retry_base);
    let retry_max = w.positive_duration(&table, "retry_max", d.retry_max);
    let max_response_bytes = w.integer_or(
        &table,
        "max_response_bytes",
        (1, 16 * 1024 * 1024),
        d.max_response_bytes as i64,
    );
    let concurrency = w.integer_or(&table, "concurrency", (1, 1024), d.concurrency as i64);
    let poll_interval = w.positive_duration(&table, "poll_interval", d.poll_interval);
    // The casts cannot truncate: integer_or() checked the ranges.
    Ok(WebhookConfig {
        policy: Policy {
            allow: allow?
                .map(|list| list.into_iter().map(|(a, _)| a).collect())
                .unwrap_or_default(),
            allow_public: allow_public?.unwrap_or(true),
        },
        connect_timeout: connect_timeout?,
        timeout: timeout?,
        max_attempts: max_attempts? as u32,
        max_age: max_age?,
        retry_base: retry_base?,
        retry_max: retry_max?,
        max_response_bytes: max_response_bytes? as usize,
        concurrency: concurrency? as usize,
        poll_interval: poll_interval?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;
    use crate::webhook::policy::{Allow, Cidr};

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("api.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn absent_means_the_safe_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.webhooks, super::WebhookConfig::default());
        assert!(c.webhooks.policy.allow.is_empty());
        assert!(c.webhooks.policy.allow_public);
        assert_eq!(c.webhooks.lease(), std::time::Duration::from_secs(20));
    }

    #[test]
    fn allow_entries_are_read_and_bad_ones_located() {
        let c = parse(
            "[webhooks]\nallow = [\"127.0.0.0/8\", \"hooks.internal\"]\nallow_public = false\n",
        )
        .unwrap();
        assert_eq!(
            c.webhooks.policy.allow[0],
            Allow::Range(Cidr::parse("127.0.0.0/8").unwrap())
        );
        assert!(c.webhooks.policy.host_listed("hooks.internal"));
        assert!(!c.webhooks.policy.allow_public);
        let e = parse(
            "[webhooks]\nallow = [\"10.0.0.0/40\", \"a b\"]\ntimeout = \"0s\"\nconcurrency = 0\nbogus = 1\n",
        )
        .unwrap_err();
        assert!(
            e.contains(
                "api.toml:2:10: webhooks.allow[0] = \"10.0.0.0/40\": prefix \"40\" is not 0 to 32"
            ),
            "{e}"
        );
        assert!(
            e.contains("webhooks.allow[1] = \"a b\": \"a b\" is neither a CIDR"),
            "{e}"
        );
        assert!(
            e.contains("api.toml:3:11: webhooks.timeout = \"0s\": out of range"),
            "{e}"
        );
        assert!(e.contains("webhooks.concurrency = 0: out of range"), "{e}");
        assert!(
            e.contains("webhooks.bogus") && e.contains("unknown key in [webhooks]"),
            "{e}"
        );
    }
}
