use std::net::Ipv4Addr;

use proptest::prelude::*;
use serde_json::Value;

use super::*;

const VECTORS: &str = include_str!("../testdata/vectors.json");

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn ip(v: &Value) -> Ipv4Addr {
    v.as_str().expect("address string").parse().expect("IPv4")
}

fn num(v: &Value) -> u64 {
    v.as_u64().expect("number")
}

/// Every VRRP vector of the keepalived captures (GARP frames are skipped).
fn vrrp_vectors() -> Vec<Value> {
    let all: Value = serde_json::from_str(VECTORS).expect("vectors.json parses");
    let v: Vec<Value> = all["vectors"]
        .as_array()
        .expect("vectors array")
        .iter()
        .filter(|v| v["kind"].as_str().is_some_and(|k| k.starts_with("vrrp")))
        .cloned()
        .collect();
    // 8 + 6 + 6 + 24 + 8 + 6 captured, of which the JSON keeps the distinct ones.
    assert_eq!(v.len(), 24, "the vector file changed; update this count");
    v
}

fn s(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

const LB1: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 11);
const LB2: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 12);
const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 100);

fn advert(version: Version) -> Advert {
    Advert {
        version,
        vrid: Vrid::new(51).unwrap(),
        priority: Priority(150),
        max_advert_int: AdvertInterval::ONE_SECOND,
        addresses: vec![VIP],
        auth: None,
    }
}

/// A whole IPv4 packet around `advert`, as the raw socket would deliver it.
fn packet(advert: &Advert, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let msg = encode(advert, src, dst);
    let mut p = ip_header(src, dst, TTL, TOS, msg.len() as u16).to_vec();
    p.extend_from_slice(&msg);
    p
}

#[test]
fn every_captured_advert_decodes_exactly_and_reencodes_byte_for_byte() {
    for v in vrrp_vectors() {
        let name = v["name"].as_str().unwrap();
        let ip_hdr = unhex(v["ip_header_hex"].as_str().unwrap());
        let vrrp = unhex(v["vrrp_hex"].as_str().unwrap());
        let whole = [ip_hdr.as_slice(), vrrp.as_slice()].concat();
        assert_eq!(
            v["checksum_valid"],
            Value::Bool(true),
            "{name}: all captured checksums are valid"
        );

        let r = decode(&whole).unwrap_or_else(|e| panic!("{name}: {e}"));
        let f = &v["vrrp"];
        assert_eq!(r.src, ip(&v["ip"]["src"]), "{name}");
        assert_eq!(r.dst, ip(&v["ip"]["dst"]), "{name}");
        assert_eq!(u64::from(r.ttl), num(&v["ip"]["ttl"]), "{name}");
        let a = &r.advert;
        assert_eq!(u64::from(a.version.number()), num(&f["version"]), "{name}");
        assert_eq!(num(&f["type"]), 1, "{name}");
        assert_eq!(u64::from(a.vrid.get()), num(&f["vrid"]), "{name}");
        assert_eq!(u64::from(a.priority.get()), num(&f["priority"]), "{name}");
        assert_eq!(
            a.addresses.len() as u64,
            num(&f["count_ip_addrs"]),
            "{name}"
        );
        let want: Vec<Ipv4Addr> = f["addresses"].as_array().unwrap().iter().map(ip).collect();
        assert_eq!(a.addresses, want, "{name}");
        match a.version {
            Version::V3 => {
                assert_eq!(
                    u64::from(a.max_advert_int.centis()),
                    num(&f["max_adver_int_cs"]),
                    "{name}"
                );
                assert_eq!(a.auth, None, "{name}");
                // The recorded pseudo-header is the one we checksum over.
                let mut pseudo = [r.src.octets(), r.dst.octets()].concat();
                pseudo.extend_from_slice(&[0, IPPROTO_VRRP]);
                pseudo.extend_from_slice(&(vrrp.len() as u16).to_be_bytes());
                assert_eq!(
                    pseudo,
                    unhex(f["pseudo_header_hex"].as_str().unwrap()),
                    "{name}"
                );
            }
            Version::V2 => {
                assert_eq!(
                    u64::from(a.max_advert_int.wire_v2()),
                    num(&f["adver_int_s"]),
                    "{name}"
                );
                let auth = a.auth.expect("v2 carries auth");
                assert_eq!(u64::from(auth.auth_type), num(&f["auth_type"]), "{name}");
                assert_eq!(
                    auth.data.to_vec(),
                    unhex(f["auth_data_hex"].as_str().unwrap()),
                    "{name}"
                );
            }
        }
        let encoded = encode(a, r.src, r.dst);
        assert_eq!(encoded, vrrp, "{name}: re-encode differs");
        assert_eq!(
            u64::from(u16::from_be_bytes([encoded[6], encoded[7]])),
            num(&f["checksum"]),
            "{name}"
        );

        // Our IP header agrees with the kernel's on everything but the id.
        let ours = ip_header(r.src, r.dst, TTL, TOS, vrrp.len() as u16);
        assert_eq!(ours[..4], ip_hdr[..4], "{name}: version/ihl/tos/length");
        assert_eq!(ours[8..10], ip_hdr[8..10], "{name}: ttl/protocol");
        assert_eq!(ours[12..], ip_hdr[12..], "{name}: addresses");
    }
}

#[test]
fn captured_v3_checksum_depends_on_the_pseudo_header_and_v2_does_not() {
    for v in vrrp_vectors() {
        let name = v["name"].as_str().unwrap();
        let vrrp = unhex(v["vrrp_hex"].as_str().unwrap());
        let src = ip(&v["ip"]["src"]);
        let version = if vrrp[0] >> 4 == 3 {
            Version::V3
        } else {
            Version::V2
        };
        // Verifies against the real addresses...
        assert_eq!(
            checksum(version, &vrrp, src, ip(&v["ip"]["dst"])),
            0,
            "{name}"
        );
        // ...and, for v3 only, not against another destination.
        let other = checksum(version, &vrrp, src, Ipv4Addr::new(198, 18, 2, 99));
        match version {
            Version::V3 => assert_ne!(other, 0, "{name}"),
            Version::V2 => assert_eq!(other, 0, "{name}"),
        }
    }
}

#[test]
fn unicast_v3_advert_verifies_with_the_peer_as_destination() {
    let a = advert(Version::V3);
    let p = packet(&a, LB1, LB2);
    let r = decode(&p).unwrap();
    assert_eq!((r.src, r.dst, r.advert), (LB1, LB2, a.clone()));
    // Encoded for the group but sent to the peer: the checksum must fail.
    let msg = encode(&a, LB1, MULTICAST_GROUP);
    let mut p = ip_header(LB1, LB2, TTL, TOS, msg.len() as u16).to_vec();
    p.extend_from_slice(&msg);
    assert!(matches!(decode(&p), Err(Reject::Checksum { .. })));
}

#[test]
fn v2_without_auth_sends_eight_zero_bytes() {
    let msg = encode(&advert(Version::V2), LB1, MULTICAST_GROUP);
    assert_eq!(msg.len(), 8 + 4 + 8);
    assert_eq!((msg[4], msg[5]), (0, 1), "auth type none, 1 s");
    assert_eq!(msg[12..], [0u8; 8]);
}

#[test]
fn ip_header_checksum_verifies() {
    let h = ip_header(LB1, MULTICAST_GROUP, TTL, TOS, 12);
    assert_eq!(finish(sum_words(0, &h)), 0);
    assert_eq!(u16::from_be_bytes([h[2], h[3]]), 32);
}

// ---- one test per rejection reason ----

fn valid(version: Version) -> Vec<u8> {
    packet(&advert(version), LB1, MULTICAST_GROUP)
}

/// Re-fix the VRRP checksum after tampering with the message, so the test
/// reaches the check it targets.
fn refix(p: &mut [u8]) {
    let version = if p[20] >> 4 == 2 {
        Version::V2
    } else {
        Version::V3
    };
    p[26] = 0;
    p[27] = 0;
    let sum = checksum(
        version,
        &p[20..],
        s([p[12], p[13], p[14], p[15]]),
        s([p[16], p[17], p[18], p[19]]),
    );
    p[26..28].copy_from_slice(&sum.to_be_bytes());
}

/// Set the IP total length to the buffer length.
fn relength(p: &mut [u8]) {
    if p.len() < 4 {
        return;
    }
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
}

#[test]
fn rejects_truncated() {
    let p = valid(Version::V3);
    assert_eq!(decode(&p[..19]), Err(Reject::Truncated { len: 19 }));
    assert_eq!(decode(&[]), Err(Reject::Truncated { len: 0 }));
    // IHL says 24 bytes of header (options) but only 22 arrived.
    let mut short = p[..22].to_vec();
    short[0] = 0x46;
    assert_eq!(decode(&short), Err(Reject::Truncated { len: 22 }));
    // A whole IP header and 4 bytes of VRRP.
    let mut cut = p[..24].to_vec();
    relength(&mut cut);
    assert_eq!(decode(&cut), Err(Reject::Truncated { len: 24 }));
    assert_eq!(Reject::Truncated { len: 0 }.as_str(), "truncated");
}

#[test]
fn rejects_non_ipv4_and_short_ihl() {
    let mut p = valid(Version::V3);
    p[0] = 0x65;
    assert_eq!(decode(&p), Err(Reject::IpHeader { version: 6, ihl: 5 }));
    p[0] = 0x44;
    assert_eq!(decode(&p).unwrap_err().as_str(), "ip_header");
}

#[test]
fn accepts_ip_options() {
    // Router-alert-style 4-byte option: the VRRP message starts at IHL*4.
    let a = advert(Version::V3);
    let msg = encode(&a, LB1, MULTICAST_GROUP);
    let mut p = ip_header(LB1, MULTICAST_GROUP, TTL, TOS, msg.len() as u16 + 4).to_vec();
    p[0] = 0x46;
    p.extend_from_slice(&[0x94, 0x04, 0, 0]);
    p.extend_from_slice(&msg);
    assert_eq!(decode(&p).unwrap().advert, a);
}

#[test]
fn rejects_total_length_mismatch() {
    let mut p = valid(Version::V3);
    p.push(0); // trailing junk
    assert_eq!(
        decode(&p),
        Err(Reject::Length {
            total_length: 32,
            received: 33
        })
    );
    let mut p = valid(Version::V3);
    p[3] = 200;
    assert_eq!(decode(&p).unwrap_err().as_str(), "length");
}

#[test]
fn rejects_other_protocol() {
    let mut p = valid(Version::V3);
    p[9] = 6;
    assert_eq!(decode(&p), Err(Reject::Protocol(6)));
    assert_eq!(Reject::Protocol(6).as_str(), "protocol");
}

#[test]
fn rejects_ttl_other_than_255() {
    // RFC 5798 §7.1: a packet that crossed a router (TTL < 255) is dropped.
    for ttl in [0u8, 1, 64, 254] {
        let mut p = valid(Version::V3);
        p[8] = ttl;
        assert_eq!(decode(&p), Err(Reject::Ttl(ttl)));
    }
    assert_eq!(Reject::Ttl(1).as_str(), "ttl");
}

#[test]
fn rejects_unknown_version() {
    for v in [0u8, 1, 4, 15] {
        let mut p = valid(Version::V3);
        p[20] = (v << 4) | 1;
        refix(&mut p);
        assert_eq!(decode(&p), Err(Reject::Version(v)));
    }
    assert_eq!(Reject::Version(1).as_str(), "version");
}

#[test]
fn rejects_type_other_than_advertisement() {
    let mut p = valid(Version::V3);
    p[20] = 0x32;
    refix(&mut p);
    assert_eq!(decode(&p), Err(Reject::Type(2)));
    assert_eq!(Reject::Type(2).as_str(), "type");
}

#[test]
fn rejects_address_count_mismatch() {
    // Count says 2, one address present.
    let mut p = valid(Version::V3);
    p[23] = 2;
    refix(&mut p);
    assert_eq!(decode(&p), Err(Reject::AddressCount { count: 2, len: 12 }));
    // Count says 0, one address present (v2: length is neither 16 nor 8).
    let mut p = valid(Version::V2);
    p[23] = 0;
    refix(&mut p);
    assert_eq!(decode(&p), Err(Reject::AddressCount { count: 0, len: 20 }));
    assert_eq!(decode(&p).unwrap_err().as_str(), "address_count");
}

#[test]
fn rejects_v2_without_auth_bytes() {
    let mut p = valid(Version::V2);
    p.truncate(p.len() - 8);
    relength(&mut p);
    refix(&mut p);
    assert_eq!(decode(&p), Err(Reject::MissingAuth));
    assert_eq!(Reject::MissingAuth.as_str(), "auth");
}

#[test]
fn rejects_bad_checksum_both_versions() {
    for version in [Version::V2, Version::V3] {
        let mut p = valid(version);
        p[22] ^= 1; // priority changed in flight
        let Err(Reject::Checksum { got, want }) = decode(&p) else {
            panic!("{version:?}: expected a checksum reject");
        };
        assert_ne!(got, want);
    }
    // v2 checksummed as v3 would be (with a pseudo-header) is wrong.
    let a = advert(Version::V2);
    let mut p = valid(Version::V2);
    let mut msg = encode(&a, LB1, MULTICAST_GROUP);
    msg[6] = 0;
    msg[7] = 0;
    let v3sum = checksum(Version::V3, &msg, LB1, MULTICAST_GROUP);
    p[26..28].copy_from_slice(&v3sum.to_be_bytes());
    assert_eq!(decode(&p).unwrap_err().as_str(), "checksum");
}

#[test]
fn rejects_vrid_zero_and_zero_interval() {
    let mut p = valid(Version::V3);
    p[21] = 0;
    refix(&mut p);
    assert_eq!(decode(&p), Err(Reject::Vrid));
    let mut p = valid(Version::V3);
    p[24] = 0xf0; // reserved bits set, interval 0
    p[25] = 0;
    refix(&mut p);
    assert_eq!(decode(&p), Err(Reject::Interval));
    let mut p = valid(Version::V2);
    p[25] = 0;
    refix(&mut p);
    assert_eq!(decode(&p), Err(Reject::Interval));
}

#[test]
fn v3_reserved_bits_are_ignored_on_receipt() {
    let mut p = valid(Version::V3);
    p[24] |= 0xf0;
    refix(&mut p);
    assert_eq!(decode(&p).unwrap().advert.max_advert_int.centis(), 100);
}

#[test]
fn every_reject_label_is_listed_once() {
    let all = [
        Reject::Truncated { len: 0 },
        Reject::IpHeader { version: 0, ihl: 0 },
        Reject::Length {
            total_length: 0,
            received: 0,
        },
        Reject::Protocol(0),
        Reject::Ttl(0),
        Reject::Version(0),
        Reject::Type(0),
        Reject::AddressCount { count: 0, len: 0 },
        Reject::MissingAuth,
        Reject::Checksum { got: 0, want: 0 },
        Reject::Vrid,
        Reject::Interval,
    ];
    let labels: Vec<&str> = all.iter().map(Reject::as_str).collect();
    assert_eq!(labels, Reject::LABELS);
}

// ---- the decoder never panics ----

fn arb_advert() -> impl Strategy<Value = Advert> {
    (
        any::<bool>(),
        1u8..=255,
        any::<u8>(),
        1u16..=4095,
        1u8..=255,
        proptest::collection::vec(any::<[u8; 4]>(), 0..=20),
        any::<(u8, [u8; 8])>(),
    )
        .prop_map(|(v3, vrid, prio, cs, secs, addrs, (auth_type, data))| {
            let version = if v3 { Version::V3 } else { Version::V2 };
            Advert {
                version,
                vrid: Vrid::new(vrid).unwrap(),
                priority: Priority(prio),
                max_advert_int: if v3 {
                    AdvertInterval::from_centis(cs).unwrap()
                } else {
                    AdvertInterval::from_secs(secs).unwrap()
                },
                addresses: addrs.into_iter().map(Ipv4Addr::from).collect(),
                auth: (!v3).then_some(V2Auth { auth_type, data }),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn encode_then_decode_round_trips(a in arb_advert(), src in any::<[u8; 4]>(), dst in any::<[u8; 4]>()) {
        let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
        let r = decode(&packet(&a, src, dst)).unwrap();
        prop_assert_eq!((r.src, r.dst, r.ttl), (src, dst, TTL));
        prop_assert_eq!(r.advert, a);
    }

    /// Flip, overwrite, truncate or extend a valid packet: decode returns
    /// (never panics), and any packet it accepts re-encodes to the same bytes
    /// (up to v3's reserved bits, which are ignored on receipt).
    #[test]
    fn mutated_valid_packets_never_panic(
        a in arb_advert(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        mode in 0u8..4,
    ) {
        let mut p = packet(&a, LB1, MULTICAST_GROUP);
        for (i, b) in &edits {
            let at = i.index(p.len());
            p[at] = *b;
        }
        match mode {
            0 => {}
            1 => p.truncate(cut.index(p.len() + 1)),
            2 => { p.truncate(cut.index(p.len() + 1)); relength(&mut p); }
            _ => { p.extend_from_slice(&[0; 4]); relength(&mut p); }
        }
        if let Ok(r) = decode(&p) {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let mut again = encode(&r.advert, r.src, r.dst);
            let mut orig = p[ihl..].to_vec();
            if r.advert.version == Version::V3 {
                // Reserved bits are dropped; re-checksum the original without them.
                orig[4] &= 0x0f;
                again[6..8].copy_from_slice(&[0, 0]);
                orig[6..8].copy_from_slice(&[0, 0]);
            }
            prop_assert_eq!(again, orig);
        }
    }
}
