//! Newtypes shared by the VRRP codec and state machine: [`Version`], [`Vrid`],
//! [`Priority`] and [`AdvertInterval`]. Each validates once, in its constructor.
//!
//! The one subtle type is the advertisement interval: VRRPv3 (RFC 5798 §5.2.7)
//! carries a 12-bit count of centiseconds (10 ms ..= 40.95 s) while VRRPv2
//! (RFC 3768 §5.3.7) carries an 8-bit count of whole seconds (1 ..= 255 s). We
//! store centiseconds for both, so 1 s is `100` either way, and check the range
//! against the version wherever a version is known.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// The VRRP protocol version of an instance or of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: seconds-granularity adverts, optional (obsolete) auth data,
    /// checksum over the VRRP message only.
    V2,
    /// RFC 5798: centisecond adverts, no auth, checksum over the IPv4
    /// pseudo-header and the message.
    V3,
}

impl Version {
    /// The value of the version nibble on the wire.
    pub fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// A value out of range for one of the VRRP newtypes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RangeError {
    /// RFC 5798 §5.2.3: VRID is 1..=255 (0 is not a virtual router).
    #[error("virtual_router_id {0} is out of range (valid: 1..=255)")]
    Vrid(u8),
    /// A configured priority must be 1..=255: 0 is reserved for "master is
    /// resigning" (RFC 5798 §5.2.4).
    #[error("priority {0} is out of range (valid: 1..=255; 0 is reserved for a resigning master)")]
    Priority(u8),
    /// The interval does not fit the version's field or granularity.
    #[error("advert interval {got:?} does not fit VRRPv{version} (valid: {valid})")]
    Interval {
        got: Duration,
        version: Version,
        valid: &'static str,
    },
}

/// Virtual Router Identifier, 1..=255 (RFC 5798 §5.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vrid(u8);

impl Vrid {
    pub fn new(v: u8) -> Result<Self, RangeError> {
        if v == 0 {
            Err(RangeError::Vrid(v))
        } else {
            Ok(Vrid(v))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Vrid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A VRRP priority as carried on the wire (RFC 5798 §5.2.4): 0 means "the
/// master is resigning", 255 means "address owner", 1..=254 are backups.
///
/// Any byte is a valid *received* priority; [`Priority::configured`] is the
/// constructor for a local one and refuses 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Priority(pub u8);

impl Priority {
    /// The priority a master sends when it stops (RFC 5798 §6.4.3 Shutdown).
    pub const RESIGN: Priority = Priority(0);
    /// The address owner's priority: starts as master at once (RFC 5798 §6.4.1).
    pub const OWNER: Priority = Priority(255);

    /// A locally configured priority: 1..=255.
    pub fn configured(v: u8) -> Result<Self, RangeError> {
        if v == 0 {
            Err(RangeError::Priority(v))
        } else {
            Ok(Priority(v))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    pub fn is_owner(self) -> bool {
        self.0 == 255
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An advertisement interval, stored in centiseconds.
///
/// Construct it from the wire with [`AdvertInterval::from_centis`] (v3) or
/// [`AdvertInterval::from_secs`] (v2), or from configuration with
/// [`AdvertInterval::for_version`], which also checks granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdvertInterval {
    /// Centiseconds, never 0. At most 4095 for v3 and 25500 (255 s) for v2.
    centis: u16,
}

/// RFC 5798 §5.2.7: Max Advert Int is 12 bits of centiseconds.
pub const V3_MAX_CENTIS: u16 = 0x0fff;
/// RFC 3768 §5.3.7: Adver Int is 8 bits of seconds.
pub const V2_MAX_SECS: u8 = 255;

impl AdvertInterval {
    /// The RFC default for both versions: 1 s.
    pub const ONE_SECOND: AdvertInterval = AdvertInterval { centis: 100 };

    /// A VRRPv3 interval in centiseconds, 1..=4095.
    pub fn from_centis(centis: u16) -> Result<Self, RangeError> {
        if centis == 0 || centis > V3_MAX_CENTIS {
            return Err(RangeError::Interval {
                got: Duration::from_millis(u64::from(centis) * 10),
                version: Version::V3,
                valid: "10ms..=40.95s in steps of 10ms",
            });
        }
        Ok(AdvertInterval { centis })
    }

    /// A VRRPv2 interval in whole seconds, 1..=255.
    pub fn from_secs(secs: u8) -> Result<Self, RangeError> {
        if secs == 0 {
            return Err(RangeError::Interval {
                got: Duration::ZERO,
                version: Version::V2,
                valid: "1s..=255s in whole seconds",
            });
        }
        Ok(AdvertInterval {
            centis: u16::from(secs) * 100,
        })
    }

    /// A configured interval for an instance of `version`: v3 takes multiples
    /// of 10 ms up to 40.95 s, v2 whole seconds up to 255 s.
    pub fn for_version(version: Version, d: Duration) -> Result<Self, RangeError> {
        let err = |valid| RangeError::Interval {
            got: d,
            version,
            valid,
        };
        match version {
            Version::V3 => {
                let valid = "10ms..=40.95s in steps of 10ms";
                if !d.as_nanos().is_multiple_of(10_000_000) {
                    return Err(err(valid));
                }
                let centis = u16::try_from(d.as_millis() / 10).map_err(|_| err(valid))?;
                Self::from_centis(centis).map_err(|_| err(valid))
            }
            Version::V2 => {
                let valid = "1s..=255s in whole seconds";
                if d.subsec_nanos() != 0 {
                    return Err(err(valid));
                }
                let secs = u8::try_from(d.as_secs()).map_err(|_| err(valid))?;
                Self::from_secs(secs).map_err(|_| err(valid))
            }
        }
    }

    pub fn centis(self) -> u16 {
        self.centis
    }

    /// Whether the interval can be carried by `version`'s field exactly.
    pub fn fits(self, version: Version) -> bool {
        match version {
            Version::V3 => self.centis <= V3_MAX_CENTIS,
            Version::V2 => self.centis.is_multiple_of(100),
        }
    }

    /// The v3 wire value: centiseconds, saturated to 12 bits.
    pub fn wire_v3(self) -> u16 {
        self.centis.min(V3_MAX_CENTIS)
    }

    /// The v2 wire value: seconds, rounded down but never below 1.
    pub fn wire_v2(self) -> u8 {
        u8::try_from(self.centis / 100)
            .unwrap_or(V2_MAX_SECS)
            .max(1)
    }

    pub fn as_duration(self) -> Duration {
        Duration::from_millis(u64::from(self.centis) * 10)
    }
}

impl From<AdvertInterval> for Duration {
    fn from(i: AdvertInterval) -> Duration {
        i.as_duration()
    }
}

impl fmt::Display for AdvertInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", u32::from(self.centis) * 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vrid_refuses_zero() {
        assert_eq!(Vrid::new(0), Err(RangeError::Vrid(0)));
        assert_eq!(Vrid::new(51).map(Vrid::get), Ok(51));
        assert_eq!(Vrid::new(255).map(Vrid::get), Ok(255));
    }

    #[test]
    fn configured_priority_refuses_zero() {
        assert!(Priority::configured(0).is_err());
        assert!(Priority::configured(255).unwrap().is_owner());
        assert!(!Priority::configured(254).unwrap().is_owner());
    }

    #[test]
    fn v3_interval_is_centiseconds_in_12_bits() {
        let ms = Duration::from_millis;
        assert_eq!(
            AdvertInterval::for_version(Version::V3, ms(100))
                .unwrap()
                .centis(),
            10
        );
        assert_eq!(
            AdvertInterval::for_version(Version::V3, ms(40_950))
                .unwrap()
                .wire_v3(),
            4095
        );
        assert!(AdvertInterval::for_version(Version::V3, ms(40_960)).is_err());
        assert!(AdvertInterval::for_version(Version::V3, ms(0)).is_err());
        // Not a whole number of centiseconds: refuse rather than round.
        assert!(AdvertInterval::for_version(Version::V3, ms(105)).is_err());
        assert!(AdvertInterval::from_centis(4096).is_err());
        assert_eq!(
            AdvertInterval::from_centis(10).unwrap().as_duration(),
            ms(100)
        );
    }

    #[test]
    fn v2_interval_is_whole_seconds_in_8_bits() {
        let s = Duration::from_secs;
        let i = AdvertInterval::for_version(Version::V2, s(1)).unwrap();
        assert_eq!((i.wire_v2(), i.centis()), (1, 100));
        assert_eq!(
            AdvertInterval::for_version(Version::V2, s(255))
                .unwrap()
                .wire_v2(),
            255
        );
        assert!(AdvertInterval::for_version(Version::V2, s(256)).is_err());
        assert!(AdvertInterval::for_version(Version::V2, Duration::from_millis(100)).is_err());
        assert!(AdvertInterval::for_version(Version::V2, Duration::from_millis(1500)).is_err());
        assert!(AdvertInterval::from_secs(0).is_err());
        // 255 s is a valid v2 interval that v3 cannot carry.
        let long = AdvertInterval::from_secs(255).unwrap();
        assert!(long.fits(Version::V2) && !long.fits(Version::V3));
    }
}
