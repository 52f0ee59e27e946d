//! Expands a recurrence rule into occurrences, in the wall-clock time of the start's zone.
//!
//! The rule is walked period by period (a year, a month, a week, a day, an hour, a minute
//! or a second, every `INTERVAL` of them). A period's candidates are its days that pass
//! every `BYMONTH` / `BYMONTHDAY` / `BYYEARDAY` / `BYDAY` filter, times every time of day
//! that `BYHOUR` / `BYMINUTE` / `BYSECOND` (or the start's own time of day) allow, in
//! order; `BYSETPOS` then picks among them. Filtering every day of the period is
//! equivalent to RFC 5545's expand/limit table for the supported parts, since each part
//! either expands a period into exactly the days it names or limits a set to them.
//!
//! A candidate before the start is not an occurrence; the start always is the first one.
//! A candidate whose local time does not exist (skipped when clocks go forward) is
//! ignored and not counted; one that exists twice means its first occurrence (RFC 5545
//! §3.3.10, §3.3.5).

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

use super::rule::{Frequency, RecurrenceRule, Until, WeekdayNum};

/// The occurrences that overlap a range, and how far the expansion got.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Expansion {
    /// `[start, end)` of each occurrence that overlaps the range, in order.
    pub intervals: Vec<(Timestamp, Timestamp)>,
    /// Every occurrence starting before this instant is in `intervals` (if it overlaps the
    /// range); later ones were not looked for, because the range ended or the work budget
    /// ran out.
    pub complete_until: Timestamp,
}

/// The rule's parts with RFC 5545's defaults filled in from the start.
struct Plan<'a> {
    rule: &'a RecurrenceRule,
    by_month: Vec<i8>,
    by_month_day: Vec<i8>,
    by_day: Vec<WeekdayNum>,
    /// Hours, minutes, seconds a period expands to (for the frequencies that expand them);
    /// sorted, without duplicates.
    hours: Vec<i8>,
    minutes: Vec<i8>,
    seconds: Vec<i8>,
}

fn sorted<T: Ord + Copy>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

impl<'a> Plan<'a> {
    fn new(rule: &'a RecurrenceRule, start: DateTime) -> Self {
        let mut by_month = sorted(&rule.by_month);
        let mut by_month_day = rule.by_month_day.clone();
        let mut by_day = rule.by_day.clone();
        let no_day_parts =
            rule.by_month_day.is_empty() && rule.by_day.is_empty() && rule.by_year_day.is_empty();
        match rule.freq {
            Frequency::Yearly if no_day_parts => {
                if by_month.is_empty() {
                    by_month = vec![start.month()];
                }
                by_month_day = vec![start.day()];
            }
            Frequency::Monthly if no_day_parts => by_month_day = vec![start.day()],
            Frequency::Weekly if rule.by_day.is_empty() => {
                by_day = vec![WeekdayNum {
                    ordinal: None,
                    weekday: start.weekday(),
                }];
            }
            _ => {}
        }
        let expands = |f: Frequency| rule.freq > f;
        let list = |by: &[i8], own: i8, f: Frequency| {
            if !expands(f) {
                Vec::new()
            } else if by.is_empty() {
                vec![own]
            } else {
                sorted(by)
            }
        };
        Plan {
            rule,
            by_month,
            by_month_day,
            by_day,
            hours: list(&rule.by_hour, start.hour(), Frequency::Hourly),
            minutes: list(&rule.by_minute, start.minute(), Frequency::Minutely),
            seconds: list(&rule.by_second, start.second(), Frequency::Secondly),
        }
    }

    /// Whether `date` passes the day filters.
    fn day_matches(&self, date: Date) -> bool {
        if !self.by_month.is_empty() && !self.by_month.contains(&date.month()) {
            return false;
        }
        let (day, dim) = (date.day(), date.days_in_month());
        if !self.by_month_day.is_empty()
            && !self
                .by_month_day
                .iter()
                .any(|&md| md == day || md == day - dim - 1)
        {
            return false;
        }
        let (doy, diy) = (date.day_of_year(), date.days_in_year());
        if !self.rule.by_year_day.is_empty()
            && !self
                .rule
                .by_year_day
                .iter()
                .any(|&yd| yd == doy || yd == doy - diy - 1)
        {
            return false;
        }
        if self.by_day.is_empty() {
            return true;
        }
        // Ordinals count within the month for monthly rules and for yearly rules with
        // BYMONTH, within the year otherwise (RFC 5545 §3.3.10).
        let in_month = self.rule.freq == Frequency::Monthly || !self.rule.by_month.is_empty();
        let (pos, len) = if in_month {
            (i16::from(day), i16::from(dim))
        } else {
            (doy, diy)
        };
        let nth = (pos - 1) / 7 + 1;
        let nth_from_end = -((len - pos) / 7 + 1);
        self.by_day.iter().any(|d| {
            d.weekday == date.weekday()
                && d.ordinal
                    .is_none_or(|n| i16::from(n) == nth || i16::from(n) == nth_from_end)
        })
    }

    /// The days of the period starting at `p` that pass the filters, in order.
    fn days(&self, p: DateTime) -> Vec<Date> {
        let first = p.date();
        let span_days: i64 = match self.rule.freq {
            Frequency::Yearly => i64::from(first.days_in_year()),
            Frequency::Monthly => i64::from(first.days_in_month()),
            Frequency::Weekly => 7,
            _ => 1,
        };
        let mut days = Vec::new();
        let mut d = first;
        for _ in 0..span_days {
            if self.day_matches(d) {
                days.push(d);
            }
            match d.tomorrow() {
                Ok(next) => d = next,
                Err(_) => break,
            }
        }
        days
    }

    /// The times of day the period starting at `p` has, in order (for sub-daily
    /// frequencies: the period's own time if it passes the filters).
    fn times(&self, p: DateTime) -> Vec<Time> {
        let rule = self.rule;
        let pick = |own: i8, expanded: &[i8], by: &[i8]| -> Vec<i8> {
            if !expanded.is_empty() {
                expanded.to_vec()
            } else if by.is_empty() || by.contains(&own) {
                vec![own]
            } else {
                Vec::new()
            }
        };
        let hours = pick(p.hour(), &self.hours, &rule.by_hour);
        let minutes = pick(p.minute(), &self.minutes, &rule.by_minute);
        let seconds = pick(p.second(), &self.seconds, &rule.by_second);
        let mut times = Vec::with_capacity(hours.len() * minutes.len() * seconds.len());
        for &h in &hours {
            for &m in &minutes {
                for &s in &seconds {
                    if let Ok(t) = Time::new(h, m, s, 0) {
                        times.push(t);
                    }
                }
            }
        }
        times
    }
}

/// The first period: the start's year, month, week (by `WKST`), day, hour, minute or
/// second.
fn first_period(rule: &RecurrenceRule, start: DateTime) -> Option<DateTime> {
    let date = start.date();
    let midnight = |d: Date| d.to_datetime(Time::midnight());
    Some(match rule.freq {
        Frequency::Yearly => midnight(Date::new(date.year(), 1, 1).ok()?),
        Frequency::Monthly => midnight(date.first_of_month()),
        Frequency::Weekly => {
            let back = days_since_week_start(date.weekday(), rule.week_start);
            midnight(
                date.checked_sub(SignedDuration::from_hours(24 * back))
                    .ok()?,
            )
        }
        Frequency::Daily => midnight(date),
        Frequency::Hourly => date.to_datetime(Time::new(start.hour(), 0, 0, 0).ok()?),
        Frequency::Minutely => {
            date.to_datetime(Time::new(start.hour(), start.minute(), 0, 0).ok()?)
        }
        Frequency::Secondly => start,
    })
}

fn days_since_week_start(day: Weekday, week_start: Weekday) -> i64 {
    i64::from((day.to_monday_zero_offset() - week_start.to_monday_zero_offset()).rem_euclid(7))
}

/// The `k`-th period (counting every `INTERVAL`) after `first`.
fn period(rule: &RecurrenceRule, first: DateTime, k: i64) -> Option<DateTime> {
    let n = k.checked_mul(i64::from(rule.interval))?;
    let secs = |unit: i64| -> Option<DateTime> {
        first
            .checked_add(SignedDuration::from_secs(n.checked_mul(unit)?))
            .ok()
    };
    match rule.freq {
        Frequency::Yearly => {
            let year = i16::try_from(i64::from(first.year()).checked_add(n)?).ok()?;
            Some(Date::new(year, 1, 1).ok()?.to_datetime(Time::midnight()))
        }
        Frequency::Monthly => {
            let index = i64::from(first.year()) * 12 + i64::from(first.month() - 1) + n;
            let year = i16::try_from(index.div_euclid(12)).ok()?;
            let month = i8::try_from(index.rem_euclid(12) + 1).ok()?;
            Some(
                Date::new(year, month, 1)
                    .ok()?
                    .to_datetime(Time::midnight()),
            )
        }
        Frequency::Weekly => secs(7 * 86_400),
        Frequency::Daily => secs(86_400),
        Frequency::Hourly => secs(3_600),
        Frequency::Minutely => secs(60),
        Frequency::Secondly => secs(1),
    }
}

/// How many periods lie wholly before `target`: where a walk that needs nothing earlier
/// than `target` may begin.
fn periods_before(rule: &RecurrenceRule, first: DateTime, target: DateTime) -> i64 {
    let interval = i64::from(rule.interval);
    let elapsed = match rule.freq {
        Frequency::Yearly => i64::from(target.year()) - i64::from(first.year()),
        Frequency::Monthly => {
            (i64::from(target.year()) - i64::from(first.year())) * 12 + i64::from(target.month())
                - i64::from(first.month())
        }
        _ => {
            let unit = match rule.freq {
                Frequency::Weekly => 7 * 86_400,
                Frequency::Daily => 86_400,
                Frequency::Hourly => 3_600,
                Frequency::Minutely => 60,
                _ => 1,
            };
            target.duration_since(first).as_secs().div_euclid(unit)
        }
    };
    (elapsed.div_euclid(interval) - 1).max(0)
}

/// The instant of a rule-generated local time: `None` when it falls in a gap (ignored, per
/// RFC 5545 §3.3.10), the first of two when it is repeated.
fn occurrence_instant(zone: &TimeZone, local: DateTime) -> Option<Timestamp> {
    let ambiguous = zone.to_ambiguous_timestamp(local);
    let offset = match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { offset } => offset,
        AmbiguousOffset::Gap { .. } => return None,
        AmbiguousOffset::Fold { before, .. } => before,
    };
    offset.to_timestamp(local).ok()
}

/// The expansion so far, when the budget ran out before the local time `at`.
fn stopped(
    mut out: Expansion,
    zone: &TimeZone,
    at: DateTime,
    from: Timestamp,
    to: Timestamp,
) -> Expansion {
    out.complete_until = zone
        .to_ambiguous_timestamp(at)
        .compatible()
        .unwrap_or(from)
        .min(to);
    tracing::debug!(
        until = %out.complete_until,
        "recurrence expansion stopped: work budget spent"
    );
    out
}

/// What one step of the walk decided.
enum Step {
    Continue,
    Done,
}

/// The occurrences of `rule` starting at `start` (local `start_local` in `zone`) and
/// lasting `duration` that overlap `[from, to)`, visiting at most `budget` candidates.
#[allow(clippy::too_many_arguments)]
pub(crate) fn expand(
    rule: &RecurrenceRule,
    zone: &TimeZone,
    start_local: DateTime,
    start: Timestamp,
    duration: SignedDuration,
    from: Timestamp,
    to: Timestamp,
    budget: u64,
) -> Expansion {
    let mut out = Expansion {
        intervals: Vec::new(),
        complete_until: to,
    };
    let push = |intervals: &mut Vec<(Timestamp, Timestamp)>, s: Timestamp| -> Step {
        if s >= to {
            return Step::Done;
        }
        let end = s.checked_add(duration).unwrap_or(Timestamp::MAX);
        if end > from {
            intervals.push((s, end));
        }
        Step::Continue
    };
    // The start is always the first occurrence.
    if let Step::Done = push(&mut out.intervals, start) {
        return out;
    }
    let mut emitted: u64 = 1;
    if rule.count.is_some_and(|c| u64::from(c) <= emitted) {
        return out;
    }
    let Some(first) = first_period(rule, start_local) else {
        return out;
    };
    let plan = Plan::new(rule, start_local);
    let day = SignedDuration::from_hours(24);
    // Walk no further than a day (in local time) past `to`, nor past UNTIL.
    let mut stop_local = zone
        .to_datetime(to)
        .checked_add(day)
        .unwrap_or(DateTime::MAX);
    if let Some(until) = rule.until {
        let until_local = match until {
            Until::Utc(t) => zone.to_datetime(t),
            Until::Local(dt) => dt,
            Until::Date(d) => d.to_datetime(Time::MAX),
        };
        stop_local = stop_local.min(until_local.checked_add(day).unwrap_or(DateTime::MAX));
    }
    // Without COUNT nothing before the range matters: skip the periods that end before an
    // occurrence could still overlap `from`.
    let mut k = 0i64;
    if rule.count.is_none() {
        let earliest = from
            .checked_sub(duration)
            .map(|t| zone.to_datetime(t))
            .unwrap_or(DateTime::MIN);
        // A local time can run back (clocks going back) by at most a couple of hours in
        // today's zones; a day of margin is cheap for daily and longer periods, three
        // hours keep secondly rules from walking a whole day of seconds.
        let margin = if rule.freq < Frequency::Daily {
            SignedDuration::from_hours(3)
        } else {
            day
        };
        let earliest = earliest.checked_sub(margin).unwrap_or(DateTime::MIN);
        if earliest > first {
            k = periods_before(rule, first, earliest);
        }
    }
    let mut spent: u64 = 0;
    loop {
        let Some(p) = period(rule, first, k) else {
            return out;
        };
        if p > stop_local {
            return out;
        }
        k += 1;
        spent += 1;
        if spent > budget {
            return stopped(out, zone, p, from, to);
        }
        let days = plan.days(p);
        if days.is_empty() {
            continue;
        }
        let times = plan.times(p);
        let per_day = times.len();
        let total = days.len() * per_day;
        if total == 0 {
            continue;
        }
        // Every candidate, or only those BYSETPOS picks (1-based, negative from the end).
        let mut all = 0..total;
        let mut picked = {
            let mut v: Vec<usize> = rule
                .by_set_pos
                .iter()
                .filter_map(|&pos| {
                    let pos = i64::from(pos);
                    let idx = if pos > 0 { pos - 1 } else { total as i64 + pos };
                    usize::try_from(idx).ok().filter(|&i| i < total)
                })
                .collect();
            v.sort_unstable();
            v.dedup();
            v.into_iter()
        };
        let indices: &mut dyn Iterator<Item = usize> = if rule.by_set_pos.is_empty() {
            &mut all
        } else {
            &mut picked
        };
        for index in indices {
            spent += 1;
            let local = days[index / per_day].to_datetime(times[index % per_day]);
            if spent > budget {
                return stopped(out, zone, local, from, to);
            }
            if local <= start_local {
                continue;
            }
            let Some(at) = occurrence_instant(zone, local) else {
                continue;
            };
            let past_until = match rule.until {
                Some(Until::Utc(u)) => at > u,
                Some(Until::Local(u)) => local > u,
                Some(Until::Date(d)) => local.date() > d,
                None => false,
            };
            if past_until {
                return out;
            }
            if let Some(c) = rule.count {
                if emitted >= u64::from(c) {
                    return out;
                }
                emitted += 1;
            }
            if let Step::Done = push(&mut out.intervals, at) {
                return out;
            }
        }
    }
}
