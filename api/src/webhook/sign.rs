//! The signature of a delivery, in Stripe's scheme:
//!
//! ```text
//! Tandem-Signature: t=1700000000,v1=5f1c…
//! ```
//!
//! `t` is the Unix time in seconds when the attempt was signed; `v1` is the
//! lowercase hex HMAC-SHA256, keyed with the API key's webhook secret (the
//! whole `whsec_…` string, as bytes), of `"<t>.<body>"`. Signing the time
//! with the body lets a receiver refuse a replayed request: it checks that
//! `t` is recent (say within 5 minutes) and that one `v1` matches, compared
//! in constant time. While a rotated secret's grace period lasts, the
//! header carries a second `v1`, made with the previous secret, so a
//! receiver that has not switched yet still verifies.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::db::hex;

/// The header's name.
pub const HEADER: &str = "tandem-signature";

/// Lowercase hex HMAC-SHA256 of `"<t>.<body>"` under `secret`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    // Cannot fail: HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex(&mac.finalize().into_bytes())
}

/// The header value: `t=<t>,v1=<sig>` with one `v1` per secret, current
/// first.
pub fn header(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut out = format!("t={t}");
    for s in secrets {
        out.push_str(",v1=");
        out.push_str(&sign(s, t, body));
    }
    out
}

/// What a receiver does (and what the tests use): `header` is valid for
/// `body` under `secret` when its `t` is within `tolerance_s` of `now_s`
/// and one of its `v1` values matches, compared in constant time.
pub fn verify(secret: &str, header: &str, body: &[u8], now_s: i64, tolerance_s: i64) -> bool {
    use subtle::ConstantTimeEq;
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v),
            _ => {}
        }
    }
    let Some(t) = t else {
        return false;
    };
    if (now_s - t).abs() > tolerance_s {
        return false;
    }
    let want = sign(secret, t, body);
    sigs.iter()
        .any(|s| bool::from(s.as_bytes().ct_eq(want.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_test_case_2() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// The vector was computed independently, with Python's `hmac` module:
    /// `hmac.new(b"whsec_test", b"1700000000." + body, sha256).hexdigest()`.
    #[test]
    fn a_known_delivery_signature() {
        let body = br#"{"event":"job.done","id":"j_1"}"#;
        let sig = "d1f9ba327765a06722421cacc03a4b123af8532cda106420054d41f4d3f49b80";
        assert_eq!(sign("whsec_test", 1_700_000_000, body), sig);
        assert_eq!(
            header(&["whsec_test"], 1_700_000_000, body),
            format!("t=1700000000,v1={sig}")
        );
    }

    #[test]
    fn verification_checks_the_secret_the_body_and_the_time() {
        let body = b"{}";
        let h = header(&["whsec_new", "whsec_old"], 1000, body);
        assert!(verify("whsec_new", &h, body, 1000, 300));
        assert!(verify("whsec_old", &h, body, 1200, 300));
        assert!(!verify("whsec_other", &h, body, 1000, 300));
        assert!(!verify("whsec_new", &h, b"{ }", 1000, 300));
        // Replayed 301 s later: refused.
        assert!(!verify("whsec_new", &h, body, 1301, 300));
        assert!(!verify("whsec_new", "v1=abc", body, 1000, 300));
    }
}
