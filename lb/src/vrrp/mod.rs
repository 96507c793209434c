//! VRRP (RFC 5798 v3, RFC 3768 v2). Being written; see issue 4.
