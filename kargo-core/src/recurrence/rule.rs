//! RFC 5545 §3.3.10 recurrence rules (`FREQ=WEEKLY;BYDAY=MO,TU;BYHOUR=9`), parsed and
//! checked. Every rule part but `BYWEEKNO` is supported; an unsupported or malformed part
//! is an error, never ignored.

use std::collections::HashSet;

use jiff::civil::{DateTime, Weekday};

use super::datetime::parse_value;

/// How often a rule repeats (`FREQ`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Frequency {
    /// Every second.
    Secondly,
    /// Every minute.
    Minutely,
    /// Every hour.
    Hourly,
    /// Every day.
    Daily,
    /// Every week.
    Weekly,
    /// Every month.
    Monthly,
    /// Every year.
    Yearly,
}

/// A `BYDAY` entry: a weekday, with an ordinal (`2MO`, `-1FR`) in a monthly or yearly rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WeekdayNum {
    /// `n`-th (negative: from the end) in the month or year; `None`: every such weekday.
    pub ordinal: Option<i8>,
    /// The weekday.
    pub weekday: Weekday,
}

/// Where a rule stops (`UNTIL`), inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// `YYYYMMDDTHHMMSSZ`: an instant.
    Utc(jiff::Timestamp),
    /// `YYYYMMDDTHHMMSS`: a wall-clock time in the start's zone.
    Local(DateTime),
    /// `YYYYMMDD`: through the end of that day in the start's zone.
    Date(jiff::civil::Date),
}

/// A parsed recurrence rule.
#[derive(Clone, Debug, PartialEq)]
pub struct RecurrenceRule {
    /// `FREQ`.
    pub freq: Frequency,
    /// `INTERVAL` (default 1).
    pub interval: u32,
    /// `COUNT`: the number of occurrences, the start included.
    pub count: Option<u32>,
    /// `UNTIL`.
    pub until: Option<Until>,
    /// `BYSECOND` (0-59).
    pub by_second: Vec<i8>,
    /// `BYMINUTE` (0-59).
    pub by_minute: Vec<i8>,
    /// `BYHOUR` (0-23).
    pub by_hour: Vec<i8>,
    /// `BYDAY`.
    pub by_day: Vec<WeekdayNum>,
    /// `BYMONTHDAY` (1-31 or -31 to -1).
    pub by_month_day: Vec<i8>,
    /// `BYYEARDAY` (1-366 or -366 to -1).
    pub by_year_day: Vec<i16>,
    /// `BYMONTH` (1-12).
    pub by_month: Vec<i8>,
    /// `BYSETPOS` (1-366 or -366 to -1).
    pub by_set_pos: Vec<i16>,
    /// `WKST` (default Monday).
    pub week_start: Weekday,
}

impl RecurrenceRule {
    /// Parses a rule such as `FREQ=DAILY;BYHOUR=9`, with or without an `RRULE:` prefix.
    /// Names are case-insensitive.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let s = match s.get(..6) {
            Some(head) if head.eq_ignore_ascii_case("RRULE:") => &s[6..],
            _ => s,
        };
        let mut freq = None;
        let mut rule = RecurrenceRule {
            freq: Frequency::Daily,
            interval: 1,
            count: None,
            until: None,
            by_second: Vec::new(),
            by_minute: Vec::new(),
            by_hour: Vec::new(),
            by_day: Vec::new(),
            by_month_day: Vec::new(),
            by_year_day: Vec::new(),
            by_month: Vec::new(),
            by_set_pos: Vec::new(),
            week_start: Weekday::Monday,
        };
        let mut seen = HashSet::new();
        for part in s.split(';').filter(|p| !p.trim().is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(format!("rule part {part:?} is not NAME=VALUE"));
            };
            let name = name.trim().to_ascii_uppercase();
            let value = value.trim();
            if !seen.insert(name.clone()) {
                return Err(format!("{name} appears more than once"));
            }
            if value.is_empty() {
                return Err(format!("{name} has no value"));
            }
            match name.as_str() {
                "FREQ" => freq = Some(parse_freq(value)?),
                "INTERVAL" => {
                    rule.interval = parse_int(&name, value, 1, i64::from(u32::MAX))? as u32;
                }
                "COUNT" => {
                    rule.count = Some(parse_int(&name, value, 1, i64::from(u32::MAX))? as u32)
                }
                "UNTIL" => rule.until = Some(parse_until(value)?),
                "BYSECOND" => rule.by_second = parse_list(&name, value, 0, 59, false)?,
                "BYMINUTE" => rule.by_minute = parse_list(&name, value, 0, 59, false)?,
                "BYHOUR" => rule.by_hour = parse_list(&name, value, 0, 23, false)?,
                "BYMONTHDAY" => rule.by_month_day = parse_list(&name, value, 1, 31, true)?,
                "BYYEARDAY" => rule.by_year_day = parse_list(&name, value, 1, 366, true)?,
                "BYMONTH" => rule.by_month = parse_list(&name, value, 1, 12, false)?,
                "BYSETPOS" => rule.by_set_pos = parse_list(&name, value, 1, 366, true)?,
                "BYDAY" => {
                    rule.by_day = value
                        .split(',')
                        .map(|v| parse_weekday_num(v.trim()))
                        .collect::<Result<_, _>>()?;
                }
                "WKST" => rule.week_start = parse_weekday(value)?,
                "BYWEEKNO" => {
                    return Err(
                        "BYWEEKNO is not supported: express the weeks with BYMONTH, \
                                BYMONTHDAY or BYYEARDAY"
                            .to_owned(),
                    );
                }
                other => {
                    return Err(format!(
                        "unknown rule part {other:?}: expected FREQ, INTERVAL, COUNT, UNTIL, \
                         BYSECOND, BYMINUTE, BYHOUR, BYDAY, BYMONTHDAY, BYYEARDAY, BYMONTH, \
                         BYSETPOS or WKST"
                    ));
                }
            }
        }
        rule.freq = freq.ok_or_else(|| {
            "FREQ is required (SECONDLY, MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY)"
                .to_owned()
        })?;
        rule.check()?;
        Ok(rule)
    }

    /// The combinations RFC 5545 forbids.
    fn check(&self) -> Result<(), String> {
        if self.count.is_some() && self.until.is_some() {
            return Err("COUNT and UNTIL cannot both be set (RFC 5545 §3.3.10)".to_owned());
        }
        let ordinal_scope = matches!(self.freq, Frequency::Monthly | Frequency::Yearly);
        if !ordinal_scope && self.by_day.iter().any(|d| d.ordinal.is_some()) {
            return Err(format!(
                "BYDAY with an ordinal (such as 1MO or -1FR) needs FREQ=MONTHLY or \
                 FREQ=YEARLY, not {}",
                freq_name(self.freq)
            ));
        }
        if self.freq == Frequency::Monthly
            && let Some(d) = self
                .by_day
                .iter()
                .find(|d| d.ordinal.is_some_and(|n| n.abs() > 5))
        {
            return Err(format!(
                "BYDAY ordinal {} is out of range for FREQ=MONTHLY: a month has at most 5 of \
                 each weekday",
                d.ordinal.unwrap_or_default()
            ));
        }
        if self.freq == Frequency::Weekly && !self.by_month_day.is_empty() {
            return Err("BYMONTHDAY cannot be used with FREQ=WEEKLY (RFC 5545 §3.3.10)".to_owned());
        }
        if matches!(
            self.freq,
            Frequency::Daily | Frequency::Weekly | Frequency::Monthly
        ) && !self.by_year_day.is_empty()
        {
            return Err(format!(
                "BYYEARDAY cannot be used with FREQ={} (RFC 5545 §3.3.10)",
                freq_name(self.freq)
            ));
        }
        if !self.by_set_pos.is_empty()
            && self.by_second.is_empty()
            && self.by_minute.is_empty()
            && self.by_hour.is_empty()
            && self.by_day.is_empty()
            && self.by_month_day.is_empty()
            && self.by_year_day.is_empty()
            && self.by_month.is_empty()
        {
            return Err("BYSETPOS needs another BYxxx rule part to select from".to_owned());
        }
        Ok(())
    }
}

fn freq_name(f: Frequency) -> &'static str {
    match f {
        Frequency::Secondly => "SECONDLY",
        Frequency::Minutely => "MINUTELY",
        Frequency::Hourly => "HOURLY",
        Frequency::Daily => "DAILY",
        Frequency::Weekly => "WEEKLY",
        Frequency::Monthly => "MONTHLY",
        Frequency::Yearly => "YEARLY",
    }
}

fn parse_freq(v: &str) -> Result<Frequency, String> {
    Ok(match v.to_ascii_uppercase().as_str() {
        "SECONDLY" => Frequency::Secondly,
        "MINUTELY" => Frequency::Minutely,
        "HOURLY" => Frequency::Hourly,
        "DAILY" => Frequency::Daily,
        "WEEKLY" => Frequency::Weekly,
        "MONTHLY" => Frequency::Monthly,
        "YEARLY" => Frequency::Yearly,
        _ => {
            return Err(format!(
                "unknown FREQ {v:?}: expected SECONDLY, MINUTELY, HOURLY, DAILY, WEEKLY, \
                 MONTHLY or YEARLY"
            ));
        }
    })
}

fn parse_int(name: &str, v: &str, min: i64, max: i64) -> Result<i64, String> {
    match v.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{name}={v:?} is not a whole number from {min} to {max}"
        )),
    }
}

/// A comma-separated list of numbers in `min..=max`, or (with `signed`) also in
/// `-max..=-min`.
fn parse_list<T: TryFrom<i64>>(
    name: &str,
    v: &str,
    min: i64,
    max: i64,
    signed: bool,
) -> Result<Vec<T>, String> {
    v.split(',')
        .map(|item| {
            let item = item.trim();
            let n = item.strip_prefix('+').unwrap_or(item).parse::<i64>().ok();
            let ok = n.filter(|n| (min..=max).contains(n) || (signed && (-max..=-min).contains(n)));
            let range = if signed {
                format!("{min} to {max} or -{max} to -{min}")
            } else {
                format!("{min} to {max}")
            };
            ok.and_then(|n| T::try_from(n).ok())
                .ok_or_else(|| format!("{name} value {item:?} is not a whole number from {range}"))
        })
        .collect()
}

fn parse_weekday(v: &str) -> Result<Weekday, String> {
    Ok(match v.to_ascii_uppercase().as_str() {
        "MO" => Weekday::Monday,
        "TU" => Weekday::Tuesday,
        "WE" => Weekday::Wednesday,
        "TH" => Weekday::Thursday,
        "FR" => Weekday::Friday,
        "SA" => Weekday::Saturday,
        "SU" => Weekday::Sunday,
        _ => {
            return Err(format!(
                "unknown weekday {v:?}: expected MO, TU, WE, TH, FR, SA or SU"
            ));
        }
    })
}

/// `MO`, `2MO`, `+2MO`, `-1FR`.
fn parse_weekday_num(v: &str) -> Result<WeekdayNum, String> {
    if v.len() < 2 {
        return Err(format!(
            "BYDAY value {v:?} is not a weekday (MO..SU, optionally preceded by an ordinal \
             such as 2MO or -1FR)"
        ));
    }
    let split = v.len() - 2;
    if !v.is_char_boundary(split) {
        return Err(format!("BYDAY value {v:?} is not a weekday (MO..SU)"));
    }
    let (num, day) = v.split_at(split);
    let weekday = parse_weekday(day)?;
    let ordinal = if num.is_empty() {
        None
    } else {
        match num.strip_prefix('+').unwrap_or(num).parse::<i8>() {
            Ok(n) if n != 0 && (-53..=53).contains(&n) => Some(n),
            _ => {
                return Err(format!(
                    "BYDAY value {v:?}: the ordinal must be 1 to 53 or -53 to -1"
                ));
            }
        }
    };
    Ok(WeekdayNum { ordinal, weekday })
}

fn parse_until(v: &str) -> Result<Until, String> {
    let (civil, utc, date_only) = parse_value(v).map_err(|e| format!("UNTIL={v:?}: {e}"))?;
    Ok(if utc {
        Until::Utc(
            jiff::tz::TimeZone::UTC
                .to_timestamp(civil)
                .map_err(|e| format!("UNTIL={v:?} is out of range: {e}"))?,
        )
    } else if date_only {
        Until::Date(civil.date())
    } else {
        Until::Local(civil)
    })
}
