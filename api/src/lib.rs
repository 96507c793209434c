//! tandem-api: the HTTP job API (issue 5).
