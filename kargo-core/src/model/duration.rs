//! Go-style durations (`5m`, `1h30m`, `1.5h`, `300ms`, `5m0s`).
//!
//! Kargo's duration fields (`interval`, `requiredSoakTime`, `retry.timeout`) are Kubernetes
//! `metav1.Duration` values: strings in the syntax of Go's `time.ParseDuration`. This module
//! parses that syntax exactly (units `ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`, decimal
//! fractions, a bare `0`) and prints durations the way Go's `Duration.String` does, so a
//! manifest that says `5m` serialises back as `5m0s`, as Kargo itself would write it.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;
const NANOS_PER_MINUTE: u128 = 60 * NANOS_PER_SECOND;
const NANOS_PER_HOUR: u128 = 60 * NANOS_PER_MINUTE;

/// Go's largest representable duration (`math.MaxInt64` nanoseconds, about 292 years).
const MAX_NANOS: u128 = i64::MAX as u128;

/// What a duration string is expected to look like, used in every error message.
pub(crate) const EXPECTED: &str =
    "a Go duration string such as \"5m0s\", \"1h30m\", \"1.5h\", \"300ms\" or \"10s\"";

/// A non-negative duration (de)serialised as a Go duration string.
///
/// ```
/// use kargo_core::model::Duration;
///
/// let d: Duration = "1h30m".parse().unwrap();
/// assert_eq!(d.as_std().as_secs(), 5400);
/// assert_eq!(d.to_string(), "1h30m0s");
/// assert_eq!("300ms".parse::<Duration>().unwrap().to_string(), "300ms");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    /// The duration as a [`std::time::Duration`].
    pub const fn as_std(&self) -> std::time::Duration {
        self.0
    }

    /// Whether the duration is zero.
    pub const fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

/// Why a string is not a valid Go duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}; expected {EXPECTED}")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl ParseDurationError {
    fn new(input: &str, reason: &'static str) -> Self {
        ParseDurationError {
            input: input.to_owned(),
            reason,
        }
    }
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => NANOS_PER_MICRO,
        "ms" => NANOS_PER_MILLI,
        "s" => NANOS_PER_SECOND,
        "m" => NANOS_PER_MINUTE,
        "h" => NANOS_PER_HOUR,
        _ => return None,
    })
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseDurationError::new(input, reason);
        let mut s = input;
        if let Some(rest) = s.strip_prefix('+') {
            s = rest;
        } else if let Some(rest) = s.strip_prefix('-') {
            if rest == "0" {
                return Ok(Duration::default());
            }
            return Err(err("negative durations are not allowed"));
        }
        if s == "0" {
            return Ok(Duration::default());
        }
        if s.is_empty() {
            return Err(err("empty duration"));
        }
        let mut total: u128 = 0;
        while !s.is_empty() {
            // Integer part.
            let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
            let (int_digits, rest) = s.split_at(int_len);
            s = rest;
            // Fractional part.
            let mut frac_digits = "";
            if let Some(rest) = s.strip_prefix('.') {
                let frac_len = rest.bytes().take_while(u8::is_ascii_digit).count();
                let (digits, rest) = rest.split_at(frac_len);
                frac_digits = digits;
                s = rest;
            }
            if int_digits.is_empty() && frac_digits.is_empty() {
                return Err(err("expected a number"));
            }
            // Unit.
            let unit_len = s
                .char_indices()
                .find(|(_, c)| c.is_ascii_digit() || *c == '.')
                .map_or(s.len(), |(i, _)| i);
            let (unit, rest) = s.split_at(unit_len);
            s = rest;
            if unit.is_empty() {
                return Err(err("missing unit (one of ns, us, ms, s, m, h)"));
            }
            let scale = unit_nanos(unit).ok_or_else(|| err("unknown unit"))?;
            let mut value: u128 = 0;
            for b in int_digits.bytes() {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u128::from(b - b'0')))
                    .filter(|v| *v <= MAX_NANOS)
                    .ok_or_else(|| err("duration out of range"))?;
            }
            let mut nanos = value
                .checked_mul(scale)
                .filter(|v| *v <= MAX_NANOS)
                .ok_or_else(|| err("duration out of range"))?;
            if !frac_digits.is_empty() {
                // Keep at most 30 significant fraction digits: more cannot change the result.
                let digits = &frac_digits[..frac_digits.len().min(30)];
                let mut frac: u128 = 0;
                let mut denom: u128 = 1;
                for b in digits.bytes() {
                    frac = frac * 10 + u128::from(b - b'0');
                    denom *= 10;
                }
                // frac < denom <= 10^30 and scale <= 3.6e12, so the product fits in u128.
                nanos += frac * scale / denom;
            }
            total = total
                .checked_add(nanos)
                .filter(|v| *v <= MAX_NANOS)
                .ok_or_else(|| err("duration out of range"))?;
        }
        let secs =
            u64::try_from(total / NANOS_PER_SECOND).map_err(|_| err("duration out of range"))?;
        let sub =
            u32::try_from(total % NANOS_PER_SECOND).map_err(|_| err("duration out of range"))?;
        Ok(Duration(std::time::Duration::new(secs, sub)))
    }
}

/// Writes `value / 10^digits` with the fractional part's trailing zeros removed, as Go does.
fn write_fraction(out: &mut String, value: u128, digits: u32) {
    let pow = 10u128.pow(digits);
    let int = value / pow;
    let frac = value % pow;
    out.push_str(&int.to_string());
    if frac != 0 {
        let frac = format!("{frac:0width$}", width = digits as usize);
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        let mut out = String::new();
        if nanos == 0 {
            out.push_str("0s");
        } else if nanos < NANOS_PER_MICRO {
            out.push_str(&format!("{nanos}ns"));
        } else if nanos < NANOS_PER_MILLI {
            write_fraction(&mut out, nanos, 3);
            out.push_str("µs");
        } else if nanos < NANOS_PER_SECOND {
            write_fraction(&mut out, nanos, 6);
            out.push_str("ms");
        } else {
            let hours = nanos / NANOS_PER_HOUR;
            let minutes = (nanos % NANOS_PER_HOUR) / NANOS_PER_MINUTE;
            let secs = nanos % NANOS_PER_MINUTE;
            if hours > 0 {
                out.push_str(&format!("{hours}h"));
            }
            if hours > 0 || minutes > 0 {
                out.push_str(&format!("{minutes}m"));
            }
            write_fraction(&mut out, secs, 9);
            out.push('s');
        }
        f.write_str(&out)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> std::time::Duration {
        s.parse::<Duration>().unwrap().0
    }

    #[test]
    fn parses_go_syntax() {
        assert_eq!(parse("5m"), std::time::Duration::from_secs(300));
        assert_eq!(parse("5m0s"), std::time::Duration::from_secs(300));
        assert_eq!(parse("1h30m"), std::time::Duration::from_secs(5400));
        assert_eq!(parse("1.5h"), std::time::Duration::from_secs(5400));
        assert_eq!(parse("300ms"), std::time::Duration::from_millis(300));
        assert_eq!(parse("10s"), std::time::Duration::from_secs(10));
        assert_eq!(parse("0"), std::time::Duration::ZERO);
        assert_eq!(parse("1.5µs"), std::time::Duration::from_nanos(1500));
        assert_eq!(parse("2us"), std::time::Duration::from_micros(2));
        assert_eq!(parse(".5s"), std::time::Duration::from_millis(500));
        assert_eq!(
            parse("1h1m1s1ms"),
            std::time::Duration::from_millis(3_661_001)
        );
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "-5m",
            "1.h.",
            "9999999999999999999999h",
            "1e3s",
            " 5m",
        ] {
            let err = bad.parse::<Duration>().unwrap_err().to_string();
            assert!(
                err.contains("expected a Go duration string"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn displays_like_go() {
        let cases = [
            ("0s", "0s"),
            ("5m", "5m0s"),
            ("1h", "1h0m0s"),
            ("90s", "1m30s"),
            ("1.5s", "1.5s"),
            ("300ms", "300ms"),
            ("1.5ms", "1.5ms"),
            ("1500ns", "1.5µs"),
            ("7ns", "7ns"),
            ("26h3m4.5s", "26h3m4.5s"),
        ];
        for (input, shown) in cases {
            assert_eq!(
                input.parse::<Duration>().unwrap().to_string(),
                shown,
                "{input}"
            );
        }
    }

    #[test]
    fn serde_round_trip() {
        let d: Duration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m0s\"");
        let err = serde_json::from_str::<Duration>("5")
            .unwrap_err()
            .to_string();
        assert!(err.contains("Go duration string"), "{err}");
    }
}
