//! tandem-healthcheck: active probes and up/down state for backends (issue 3).
