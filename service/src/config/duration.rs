//! Durations as every Tandem config file writes them (`lb.toml`, `api.toml`,
//! `worker.toml`): `"250ms"`, `"1.5s"`, `"5m"`, `"1m30s"`, `"7d"`.
//!
//! Grammar: one or more `<number><unit>` groups with no spaces, where a number
//! is decimal digits with an optional `.digits` part (at most 9 of them:
//! nanosecond precision) and a unit is `d` (24 hours), `h`, `m`, `s` or `ms`.
//! In a compound value each unit appears once, largest first (`"1h30m"`, not
//! `"30m1h"`), so a typo such as `"1s1s"` is refused instead of silently
//! summed.
//!
//! Refused on purpose: a bare number (`"30"`: seconds or milliseconds?), a
//! sign (`"-1s"`), any other unit (`"1w"`, `"1us"`), spaces, and any value
//! past `u64::MAX` nanoseconds (about 584 years), which is how a typo such as
//! `"99999999999999h"` shows.
//!
//! All arithmetic is on integers (`u128` nanoseconds), so `"0.1s"` is exactly
//! 100 ms, with no float rounding.

use std::fmt;
use std::time::Duration;

/// What a valid duration looks like; every duration error ends with it.
pub const DURATION_EXAMPLES: &str = r#"a duration such as "250ms", "2s" or "5m""#;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: expected {DURATION_EXAMPLES}")]
pub struct DurationError {
    reason: DurationProblem,
}

impl DurationError {
    /// The problem alone, without the "expected ..." tail.
    pub fn reason(&self) -> &DurationProblem {
        &self.reason
    }
}

/// The specific problem found in a duration string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationProblem {
    Empty,
    /// `"-1s"` or `"+1s"`.
    Signed,
    /// `"30"`, or `"1m30"`: a number at the end with no unit.
    MissingUnit,
    /// A unit where a number was expected (`"s"`, `"1m s"`), or any other character.
    ExpectedNumber(char),
    /// `"1w"`, `"2us"`.
    UnknownUnit(String),
    /// `"1.s"`, `".5s"`.
    BadNumber(String),
    /// More than 9 digits after the point.
    TooPrecise,
    /// `"1s1m"`, `"1s1s"`.
    UnitOrder(&'static str),
    /// Past `u64::MAX` nanoseconds.
    Overflow,
}

impl fmt::Display for DurationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationProblem::Empty => f.write_str("empty duration"),
            DurationProblem::Signed => f.write_str("a duration has no sign"),
            DurationProblem::MissingUnit => f.write_str("a number needs a unit (ms, s, m, h or d)"),
            DurationProblem::ExpectedNumber(c) => write!(f, "expected a number, found {c:?}"),
            DurationProblem::UnknownUnit(u) => {
                write!(f, "unknown unit {u:?} (units: ms, s, m, h, d)")
            }
            DurationProblem::BadNumber(n) => write!(f, "malformed number {n:?}"),
            DurationProblem::TooPrecise => {
                f.write_str("more than 9 decimal places (finer than a nanosecond)")
            }
            DurationProblem::UnitOrder(u) => {
                write!(
                    f,
                    "unit {u:?} repeated or out of order (largest unit first)"
                )
            }
            DurationProblem::Overflow => f.write_str("too large"),
        }
    }
}

/// The units, largest first; the order compound values must follow.
const UNITS: [(&str, u128); 5] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
];

/// Parses a config duration. See the module doc for the grammar.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    parse_nanos(text)
        .map(|nanos| {
            // Cannot truncate: parse_nanos checks nanos <= u64::MAX.
            Duration::from_nanos(nanos as u64)
        })
        .map_err(|reason| DurationError { reason })
}

fn parse_nanos(text: &str) -> Result<u128, DurationProblem> {
    if text.is_empty() {
        return Err(DurationProblem::Empty);
    }
    if text.starts_with(['-', '+']) {
        return Err(DurationProblem::Signed);
    }
    let mut rest = text;
    let mut total: u128 = 0;
    // Index into UNITS of the smallest unit allowed next; enforces order.
    let mut next_unit = 0;
    // Each pass consumes at least one character, so the loop is bounded by text.len().
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(num_len);
        if number.is_empty() {
            // Cannot fail: rest is not empty.
            let c = after.chars().next().expect("rest is not empty");
            return Err(DurationProblem::ExpectedNumber(c));
        }
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return match after.chars().next() {
                None => Err(DurationProblem::MissingUnit),
                Some(c) => Err(DurationProblem::UnknownUnit(c.to_string())),
            };
        }
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(DurationProblem::UnknownUnit(unit.to_string()));
        };
        if index < next_unit {
            return Err(DurationProblem::UnitOrder(UNITS[index].0));
        }
        next_unit = index + 1;
        let nanos = number_times(number, UNITS[index].1)?;
        total = total.checked_add(nanos).ok_or(DurationProblem::Overflow)?;
        if total > u128::from(u64::MAX) {
            return Err(DurationProblem::Overflow);
        }
        rest = after;
    }
    Ok(total)
}

/// `number` (digits with an optional fraction) times `unit_nanos`, exactly.
fn number_times(number: &str, unit_nanos: u128) -> Result<u128, DurationProblem> {
    let bad = || DurationProblem::BadNumber(number.to_string());
    let (int, frac) = match number.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (number, ""),
    };
    if int.is_empty() || (number.contains('.') && frac.is_empty()) || frac.contains('.') {
        return Err(bad());
    }
    if frac.len() > 9 {
        return Err(DurationProblem::TooPrecise);
    }
    // More than 39 digits would not fit a u128 anyway.
    let int: u128 = int.parse().map_err(|_| DurationProblem::Overflow)?;
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| bad())?
    };
    let scale = 10u128.pow(frac.len() as u32);
    let whole = int
        .checked_mul(unit_nanos)
        .ok_or(DurationProblem::Overflow)?;
    // frac_value < 10^9 and unit_nanos < 9e13: the product fits easily.
    Ok(whole + frac_value * unit_nanos / scale)
}

/// Formats a duration the way the config writes it, largest unit first
/// (`90s` → `"1m30s"`, `250ms` → `"250ms"`, zero → `"0s"`). Days are not
/// used (two days are `"48h"`), so what status and `check` print is what
/// they printed before `d` was a unit. Sub-millisecond
/// parts are written as a decimal fraction of a millisecond or second so that
/// `parse_duration(&format_duration(d)) == d` for every `d` up to `u64::MAX`
/// nanoseconds.
pub fn format_duration(d: Duration) -> String {
    let mut nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (name, unit) in &UNITS[1..3] {
        let n = nanos / unit;
        if n > 0 {
            out.push_str(&format!("{n}{name}"));
            nanos %= unit;
        }
    }
    if nanos == 0 {
        return out;
    }
    let secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    if secs > 0 && sub == 0 {
        out.push_str(&format!("{secs}s"));
    } else if secs > 0 {
        let frac = format!("{sub:09}");
        out.push_str(&format!("{secs}.{}s", frac.trim_end_matches('0')));
    } else if sub.is_multiple_of(1_000_000) {
        out.push_str(&format!("{}ms", sub / 1_000_000));
    } else {
        let frac = format!("{:06}", sub % 1_000_000);
        out.push_str(&format!(
            "{}.{}ms",
            sub / 1_000_000,
            frac.trim_end_matches('0')
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(text: &str) -> Duration {
        parse_duration(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn problem(text: &str) -> DurationProblem {
        match parse_duration(text) {
            Ok(d) => panic!("{text:?} parsed as {d:?}"),
            Err(e) => e.reason().clone(),
        }
    }

    #[test]
    fn single_units() {
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("2s"), Duration::from_secs(2));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("7d"), Duration::from_secs(7 * 86_400));
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("0.1s"), Duration::from_millis(100));
        assert_eq!(ok("0.5ms"), Duration::from_micros(500));
        assert_eq!(ok("0.000000001s"), Duration::from_nanos(1));
        assert_eq!(ok("1.25h"), Duration::from_secs(4500));
    }

    #[test]
    fn compound_values_add_up() {
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1h2m3s4ms"), Duration::from_millis(3_723_004));
        assert_eq!(ok("1m0.5s"), Duration::from_millis(60_500));
        assert_eq!(ok("1d12h"), Duration::from_secs(36 * 3600));
        assert_eq!(ok("0.5d"), Duration::from_secs(12 * 3600));
    }

    #[test]
    fn bare_numbers_need_a_unit() {
        assert_eq!(problem("30"), DurationProblem::MissingUnit);
        assert_eq!(problem("1m30"), DurationProblem::MissingUnit);
    }

    #[test]
    fn signs_are_refused() {
        assert_eq!(problem("-1s"), DurationProblem::Signed);
        assert_eq!(problem("+1s"), DurationProblem::Signed);
    }

    #[test]
    fn unknown_units_are_named() {
        assert_eq!(problem("1w"), DurationProblem::UnknownUnit("w".into()));
        assert_eq!(problem("2us"), DurationProblem::UnknownUnit("us".into()));
        assert_eq!(problem("2 s"), DurationProblem::UnknownUnit(" ".into()));
        assert_eq!(problem("2S"), DurationProblem::UnknownUnit("S".into()));
    }

    #[test]
    fn malformed_numbers() {
        assert_eq!(problem(""), DurationProblem::Empty);
        assert_eq!(problem("s"), DurationProblem::ExpectedNumber('s'));
        assert_eq!(problem("1s "), DurationProblem::ExpectedNumber(' '));
        assert_eq!(problem("1.s"), DurationProblem::BadNumber("1.".into()));
        assert_eq!(problem(".5s"), DurationProblem::BadNumber(".5".into()));
        assert_eq!(
            problem("1.2.3s"),
            DurationProblem::BadNumber("1.2.3".into())
        );
        assert_eq!(problem("1.0000000001s"), DurationProblem::TooPrecise);
    }

    #[test]
    fn units_go_largest_first_once() {
        assert_eq!(problem("1s1m"), DurationProblem::UnitOrder("m"));
        assert_eq!(problem("1s1s"), DurationProblem::UnitOrder("s"));
        assert_eq!(problem("1ms1s"), DurationProblem::UnitOrder("s"));
        assert_eq!(problem("1h1d"), DurationProblem::UnitOrder("d"));
    }

    #[test]
    fn overflow_is_refused() {
        // u64::MAX ns is about 5_124_095 hours.
        assert_eq!(ok("5124095h"), Duration::from_secs(5_124_095 * 3600));
        assert_eq!(problem("5124096h"), DurationProblem::Overflow);
        assert_eq!(
            problem("99999999999999999999999999999999999999999h"),
            DurationProblem::Overflow
        );
        assert_eq!(problem("5124095h5124095h"), DurationProblem::UnitOrder("h"));
        assert_eq!(problem("5124095h999999m"), DurationProblem::Overflow);
        // ... and about 213_503 days.
        assert_eq!(ok("213503d"), Duration::from_secs(213_503 * 86_400));
        assert_eq!(problem("213504d"), DurationProblem::Overflow);
    }

    #[test]
    fn error_says_what_valid_looks_like() {
        let e = parse_duration("5x").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"unknown unit "x" (units: ms, s, m, h, d): expected a duration such as "250ms", "2s" or "5m""#
        );
    }

    #[test]
    fn formats_like_the_config() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(2 * 86_400)), "48h");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_duration(Duration::from_nanos(1)), "0.000001ms");
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(nanos in any::<u64>()) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }

        #[test]
        fn parse_never_panics(text in "[0-9.a-z+-]{0,24}") {
            let _ = parse_duration(&text);
        }
    }
}
