//! Tests for the PROXY protocol encoder and decoder.

use super::*;
use proptest::prelude::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn v1_tcp4_exact_bytes() {
    let got = encode_v1(sa("1.2.3.4:1111"), sa("5.6.7.8:2222"));
    assert_eq!(got, b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 2222\r\n");
}

#[test]
fn v1_tcp6_exact_bytes() {
    let got = encode_v1(sa("[2001:db8::1]:56324"), sa("[2001:db8:0:0:1::2]:443"));
    assert_eq!(
        got,
        b"PROXY TCP6 2001:db8::1 2001:db8::1:0:0:2 56324 443\r\n"
    );
    let got = encode_v1(sa("[::]:0"), sa("[::1]:65535"));
    assert_eq!(got, b"PROXY TCP6 :: ::1 0 65535\r\n");
}

#[test]
fn v1_worst_case_ipv6_is_104_bytes() {
    let f = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
    let got = encode_v1(sa(f), sa(f));
    assert_eq!(got.len(), 104);
}

#[test]
fn mixed_families_follow_the_documented_rule() {
    // Both IPv4-mapped: unmapped, TCP4.
    let got = encode_v1(sa("[::ffff:1.2.3.4]:1"), sa("[::ffff:5.6.7.8]:2"));
    assert_eq!(got, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    // One mapped, one plain v4: TCP4.
    let got = encode_v1(sa("[::ffff:1.2.3.4]:1"), sa("5.6.7.8:2"));
    assert_eq!(got, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n");
    // Genuine mix: the v4 side becomes v4-mapped v6, in hex groups.
    let got = encode_v1(sa("1.2.3.4:1"), sa("[2001:db8::5]:2"));
    assert_eq!(got, b"PROXY TCP6 ::ffff:102:304 2001:db8::5 1 2\r\n");
    let got = encode_v2(sa("1.2.3.4:1"), sa("[2001:db8::5]:2"));
    assert_eq!(got[13], 0x21);
    assert_eq!(
        &got[16..32],
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]
    );
}

#[test]
fn v2_tcp4_exact_bytes() {
    let got = encode_v2(sa("1.2.3.4:1111"), sa("5.6.7.8:2222"));
    let want: [u8; 28] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
        0x21, // version 2, PROXY
        0x11, // TCP over IPv4
        0x00, 0x0C, // 12 address bytes
        1, 2, 3, 4, // src
        5, 6, 7, 8, // dst
        0x04, 0x57, // 1111
        0x08, 0xAE, // 2222
    ];
    assert_eq!(got, want);
}

#[test]
fn v2_tcp6_exact_bytes() {
    let got = encode_v2(sa("[2001:db8::1]:80"), sa("[fe80::2]:443"));
    let want: [u8; 52] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, // signature
        0x21, // version 2, PROXY
        0x21, // TCP over IPv6
        0x00, 0x24, // 36 address bytes
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // src
        0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // dst
        0x00, 0x50, // 80
        0x01, 0xBB, // 443
    ];
    assert_eq!(got, want);
}

#[test]
fn decodes_spec_example_and_leaves_payload() {
    let buf = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    let (h, n) = decode(buf).unwrap().unwrap();
    assert_eq!(h.version, Version::V1);
    assert_eq!(h.src, Some(sa("192.168.0.1:56324")));
    assert_eq!(h.dst, Some(sa("192.168.0.11:443")));
    assert_eq!(&buf[n..], b"GET / HTTP/1.1\r\n");
}

#[test]
fn v1_unknown_forms() {
    let (h, n) = decode(b"PROXY UNKNOWN\r\nx").unwrap().unwrap();
    assert_eq!((h.src, h.dst, n), (None, None, 15));
    let line = b"PROXY UNKNOWN ffff:f::f whatever 1 2\r\n";
    let (h, n) = decode(line).unwrap().unwrap();
    assert_eq!((h.src, n), (None, line.len()));
}

#[test]
fn v1_unknown_names_no_client() {
    let mut buf = encode_v1_unknown();
    buf.extend_from_slice(b"GET");
    let (h, n) = decode(&buf).unwrap().unwrap();
    assert_eq!((h.version, h.src, n), (Version::V1, None, 15));
}

#[test]
fn v2_local_is_sixteen_bytes_and_names_no_client() {
    let mut buf = encode_v2_local();
    assert_eq!(buf.len(), 16);
    assert_eq!(buf[12..], [0x20, 0x00, 0, 0]);
    buf.extend_from_slice(b"GET");
    let (h, n) = decode(&buf).unwrap().unwrap();
    assert_eq!((h.version, h.src, n), (Version::V2, None, 16));
}

#[test]
fn v2_local_with_addresses_and_tlvs_is_skipped_whole() {
    let mut buf = V2_SIGNATURE.to_vec();
    buf.push(0x20); // LOCAL
    buf.push(0x11);
    buf.extend_from_slice(&(12u16 + 7).to_be_bytes());
    buf.extend_from_slice(&[9; 12]);
    buf.extend_from_slice(&[0x04, 0x00, 0x04, 0, 0, 0, 0]); // NOOP TLV
    buf.extend_from_slice(b"data");
    let (h, n) = decode(&buf).unwrap().unwrap();
    assert_eq!((h.version, h.src, h.dst), (Version::V2, None, None));
    assert_eq!(&buf[n..], b"data");
}

#[test]
fn v2_proxy_with_tlvs_keeps_addresses() {
    let mut buf = encode_v2(sa("10.0.0.1:5"), sa("10.0.0.2:6"));
    buf[15] += 4;
    buf.extend_from_slice(&[0x04, 0x00, 0x01, 0xAA, b'z']);
    let (h, n) = decode(&buf).unwrap().unwrap();
    assert_eq!(h.src, Some(sa("10.0.0.1:5")));
    assert_eq!(&buf[n..], b"z");
}

#[test]
fn v2_unspec_and_unix_fall_back_to_no_address() {
    for (fam, len) in [(0x00u8, 0u16), (0x31, 216), (0x12, 12)] {
        let mut buf = V2_SIGNATURE.to_vec();
        buf.extend_from_slice(&[0x21, fam]);
        buf.extend_from_slice(&len.to_be_bytes());
        buf.resize(16 + usize::from(len), 0);
        let (h, n) = decode(&buf).unwrap().unwrap();
        assert_eq!((h.src, n), (None, buf.len()), "family {fam:#x}");
    }
}

#[test]
fn every_strict_prefix_needs_more() {
    let headers = [
        encode_v1(sa("1.2.3.4:1111"), sa("5.6.7.8:2222")),
        encode_v1(sa("[2001:db8::1]:1"), sa("[::1]:2")),
        encode_v2(sa("1.2.3.4:1111"), sa("5.6.7.8:2222")),
        encode_v2(sa("[2001:db8::1]:1"), sa("[::1]:2")),
    ];
    for h in &headers {
        for cut in 0..h.len() {
            assert_eq!(decode(&h[..cut]), Ok(None), "cut at {cut} of {h:?}");
        }
    }
}

#[test]
fn bad_signature() {
    for buf in [
        &b"GET / HTTP/1.1\r\n"[..],
        b"PROXX ",
        b"\r\n\r\n\x00\r\nQUIX\n",
        b"x",
    ] {
        assert!(
            matches!(decode(buf), Err(ProxyProtocolError::BadSignature(_))),
            "{buf:?}"
        );
    }
}

#[test]
fn v1_too_long() {
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(V1_MAX_LEN, b'a');
    assert_eq!(decode(&line), Err(ProxyProtocolError::V1TooLong));
    // CR as byte 107: the LF would be byte 108, one too many.
    line[V1_MAX_LEN - 1] = b'\r';
    assert_eq!(decode(&line), Err(ProxyProtocolError::V1TooLong));
    line.push(b'\n');
    assert_eq!(decode(&line), Err(ProxyProtocolError::V1TooLong));
    // Exactly 107 with CRLF is fine.
    line.truncate(V1_MAX_LEN - 2);
    line.extend_from_slice(b"\r\n");
    assert!(decode(&line).unwrap().is_some());
    // Below the limit without CRLF: wait.
    assert_eq!(decode(&line[..60]), Ok(None));
}

#[test]
fn v1_rejections() {
    use ProxyProtocolError as E;
    type Case<'a> = (&'a [u8], fn(&E) -> bool);
    let cases: &[Case] = &[
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", |e| {
            matches!(e, E::V1BadLineEnding)
        }),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx\n", |e| {
            matches!(e, E::V1BadLineEnding)
        }),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", |e| {
            matches!(e, E::V1BadProtocol(_))
        }),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", |e| {
            matches!(e, E::V1FieldCount(3))
        }),
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", |e| {
            matches!(e, E::V1FieldCount(5))
        }),
        (b"PROXY TCP4\r\n", |e| matches!(e, E::V1FieldCount(0))),
        (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", |e| {
            matches!(
                e,
                E::V1BadAddress {
                    field: "source",
                    ..
                }
            )
        }),
        (b"PROXY TCP4 1.2.3.4 256.6.7.8 1 2\r\n", |e| {
            matches!(
                e,
                E::V1BadAddress {
                    field: "destination",
                    ..
                }
            )
        }),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", |e| {
            matches!(e, E::V1BadAddress { .. })
        }),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", |e| {
            matches!(e, E::V1BadAddress { .. })
        }),
        (b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n", |e| {
            matches!(e, E::V1BadAddress { .. })
        }),
        (b"PROXY TCP6 1::2::3 ::1 1 2\r\n", |e| {
            matches!(e, E::V1BadAddress { .. })
        }),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", |e| {
            matches!(
                e,
                E::V1BadPort {
                    field: "source",
                    ..
                }
            )
        }),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n", |e| {
            matches!(
                e,
                E::V1BadPort {
                    field: "destination",
                    ..
                }
            )
        }),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", |e| {
            matches!(e, E::V1BadPort { .. })
        }),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", |e| {
            matches!(e, E::V1BadPort { .. })
        }),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", |e| {
            matches!(e, E::V1BadPort { .. })
        }),
        ("PROXY TCP4 1.2.3.4 5.6.7.8 1 ２\r\n".as_bytes(), |e| {
            matches!(e, E::V1BadProtocol(_))
        }),
    ];
    for (buf, ok) in cases {
        let got = decode(buf);
        match &got {
            Err(e) if ok(e) => {}
            _ => panic!("{:?} gave {got:?}", String::from_utf8_lossy(buf)),
        }
    }
}

#[test]
fn v2_rejections() {
    use ProxyProtocolError as E;
    let good = encode_v2(sa("1.2.3.4:1"), sa("5.6.7.8:2"));
    let with = |i: usize, v: u8| {
        let mut b = good.clone();
        b[i] = v;
        decode(&b)
    };
    assert_eq!(with(12, 0x11), Err(E::V2BadVersion(1)));
    assert_eq!(with(12, 0x31), Err(E::V2BadVersion(3)));
    assert_eq!(with(12, 0x22), Err(E::V2BadCommand(2)));
    assert_eq!(with(13, 0x13), Err(E::V2BadFamily(0x13)));
    assert_eq!(with(13, 0x41), Err(E::V2BadFamily(0x41)));
    assert_eq!(
        with(15, 11),
        Err(E::V2BadLength {
            family: 0x11,
            len: 11,
            need: 12
        })
    );
    // A TCP6 family with TCP4-sized length.
    assert_eq!(
        with(13, 0x21),
        Err(E::V2BadLength {
            family: 0x21,
            len: 12,
            need: 36
        })
    );
    // A larger length than what arrived: wait (truncated header).
    let mut b = good.clone();
    b[15] = 40;
    assert_eq!(decode(&b), Ok(None));
}

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, p)| SocketAddr::new(Ipv4Addr::from(ip).into(), p)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, p)| SocketAddr::new(Ipv6Addr::from(ip).into(), p)),
    ]
}

proptest! {
    #[test]
    fn round_trip(src in any_addr(), dst in any_addr(), tail in proptest::collection::vec(any::<u8>(), 0..32)) {
        let (want_src, want_dst) = same_family(src, dst);
        for (enc, ver) in [(encode_v1 as fn(_, _) -> _, Version::V1), (encode_v2, Version::V2)] {
            let mut buf = enc(src, dst);
            let hlen = buf.len();
            prop_assert!(hlen <= V1_MAX_LEN);
            buf.extend_from_slice(&tail);
            let (h, n) = decode(&buf).unwrap().unwrap();
            prop_assert_eq!(n, hlen);
            prop_assert_eq!(h, ProxyHeader { version: ver, src: Some(want_src), dst: Some(want_dst) });
            // The canonical form maps back to the same socket addresses.
            prop_assert_eq!(want_src.ip().to_canonical(), src.ip().to_canonical());
            prop_assert_eq!(want_src.port(), src.port());
        }
    }

    #[test]
    fn v6_text_matches_std_for_non_mapped(ip in any::<[u8; 16]>()) {
        let ip = Ipv6Addr::from(ip);
        prop_assume!(ip.to_ipv4_mapped().is_none());
        // std writes RFC 5952 form except for mapped addresses.
        prop_assert_eq!(v6_text(ip), ip.to_string());
    }

    #[test]
    fn decode_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&buf);
    }

    #[test]
    fn decode_never_panics_after_v1_prefix(rest in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut buf = b"PROXY ".to_vec();
        buf.extend_from_slice(&rest);
        let _ = decode(&buf);
    }
}
