//! iCalendar (RFC 5545 §3.3.4, §3.3.5) date and date-time values with an optional
//! `TZID=<Area/City>:` prefix, as Kargo's promotion windows write `dtstart` / `dtend`.
//!
//! Accepted forms:
//!
//! - `TZID=America/New_York:20260101T090000`: local time in an IANA zone;
//! - `20260101T140000Z`: UTC;
//! - `20260101T090000`: a "floating" time, which has no zone in iCalendar; a server has no
//!   user's wall clock to pin it to, so it is read as UTC;
//! - `20260101` or `TZID=Europe/Paris:20260101`: a date, meaning its midnight.
//!
//! A local time that occurs twice (the hour repeated when clocks go back) means its first
//! occurrence; one that does not occur (the hour skipped when clocks go forward) is read
//! with the UTC offset before the gap, so `TZID=America/New_York:20260308T023000` is
//! 03:30 EDT (RFC 5545 §3.3.5).

use std::sync::LazyLock;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{TimeZone, TimeZoneDatabase};

/// The time zone database compiled into the crate: the same answers on every machine,
/// and no reading of `TZDIR` or `/usr/share/zoneinfo` behind the embedder's back.
static ZONES: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// Looks up an IANA time zone (`America/New_York`) in the bundled database.
pub(crate) fn time_zone(name: &str) -> Result<TimeZone, String> {
    ZONES.get(name).map_err(|_| {
        format!("unknown time zone {name:?}: expected an IANA name such as \"Europe/Berlin\"")
    })
}

/// A parsed `dtstart` / `dtend` value.
#[derive(Clone, Debug, PartialEq)]
pub struct IcalDateTime {
    /// The wall-clock value as written.
    pub civil: DateTime,
    /// The zone it is in (UTC for `Z` and floating values).
    pub zone: TimeZone,
    /// The `TZID` as written, if any.
    pub tzid: Option<String>,
    /// Whether only a date was written (no `T` part).
    pub date_only: bool,
}

impl IcalDateTime {
    /// Parses `[TZID=<zone>:]YYYYMMDD[THHMMSS[Z]]`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err(
                "a date-time is required, e.g. \"TZID=Europe/Berlin:20260101T090000\" \
                        or \"20260101T080000Z\""
                    .to_owned(),
            );
        }
        let (tzid, rest) = match strip_prefix_ignore_case(value, "TZID=") {
            Some(rest) => {
                let Some((zone, time)) = rest.split_once(':') else {
                    return Err(format!(
                        "{value:?}: a TZID= prefix must be followed by ':' and the local time, \
                         e.g. \"TZID=America/New_York:20260101T090000\""
                    ));
                };
                (Some(zone.trim()), time.trim())
            }
            None => (None, value),
        };
        let (civil, utc, date_only) = parse_value(rest).map_err(|e| format!("{value:?}: {e}"))?;
        let zone = match tzid {
            Some(_) if utc => {
                return Err(format!(
                    "{value:?}: a UTC time (ending in Z) cannot also have a TZID (RFC 5545 \
                     §3.3.5): drop one of them"
                ));
            }
            Some(name) => time_zone(name).map_err(|e| format!("{value:?}: {e}"))?,
            None => TimeZone::UTC,
        };
        Ok(Self {
            civil,
            zone,
            tzid: tzid.map(str::to_owned),
            date_only,
        })
    }

    /// The instant it names: a repeated local time is its first occurrence, a skipped one
    /// is read with the offset before the gap (RFC 5545 §3.3.5).
    pub fn instant(&self) -> Result<Timestamp, String> {
        self.zone
            .to_ambiguous_timestamp(self.civil)
            .compatible()
            .map_err(|e| format!("{} is out of range: {e}", self.civil))
    }
}

/// `YYYYMMDD` or `YYYYMMDDTHHMMSS` with an optional `Z`: (value, is UTC, is a date).
pub(crate) fn parse_value(s: &str) -> Result<(DateTime, bool, bool), String> {
    let (body, utc) = match s.strip_suffix(['Z', 'z']) {
        Some(b) => (b, true),
        None => (s, false),
    };
    let (date_part, time_part) = match body.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (body, None),
    };
    if utc && time_part.is_none() {
        return Err("a date (YYYYMMDD) cannot end in Z; write YYYYMMDDTHHMMSSZ".to_owned());
    }
    let date = parse_date(date_part)?;
    let Some(time) = time_part else {
        return Ok((date.to_datetime(jiff::civil::Time::midnight()), false, true));
    };
    if time.len() != 6 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "expected the time as HHMMSS after 'T', found {time:?} (format \
             YYYYMMDDTHHMMSS, optionally ending in Z)"
        ));
    }
    let hour = digits(&time[0..2]);
    let minute = digits(&time[2..4]);
    let second = digits(&time[4..6]);
    let t = jiff::civil::Time::new(hour as i8, minute as i8, second as i8, 0)
        .map_err(|_| format!("invalid time {time:?}: hour 00-23, minute 00-59, second 00-59"))?;
    Ok((date.to_datetime(t), utc, false))
}

/// `YYYYMMDD`.
pub(crate) fn parse_date(s: &str) -> Result<Date, String> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "expected a date as YYYYMMDD, found {s:?} (format YYYYMMDD or YYYYMMDDTHHMMSS, \
             optionally ending in Z)"
        ));
    }
    let year = digits(&s[0..4]);
    let month = digits(&s[4..6]);
    let day = digits(&s[6..8]);
    Date::new(year as i16, month as i8, day as i8)
        .map_err(|_| format!("{s:?} is not a calendar date"))
}

/// The value of ASCII digits already checked (at most 4 of them).
fn digits(s: &str) -> u16 {
    s.bytes()
        .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}
