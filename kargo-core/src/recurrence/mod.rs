//! Recurring time windows after iCalendar (RFC 5545): a start (`dtstart`), an end
//! (`dtend`) and an optional recurrence rule (`rrule`), as Kargo's promotion windows
//! write them. Without a rule a schedule is one interval, `[dtstart, dtend)`; with one,
//! every occurrence of the rule opens an interval as long as `dtend - dtstart` (an exact
//! duration, as RFC 5545 §3.8.5.3 says, so a window spanning a change of clocks is an hour
//! longer or shorter in wall-clock terms).
//!
//! Occurrences are computed in the wall-clock time of `dtstart`'s `TZID`: a window at
//! 09:00 in `America/New_York` stays at 09:00 local when daylight saving time starts or
//! ends. Time zones come from the IANA database compiled into the crate.
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use kargo_core::recurrence::Schedule;
//!
//! let s = Schedule::parse(
//!     "TZID=America/New_York:20260302T090000",
//!     "TZID=America/New_York:20260302T170000",
//!     "FREQ=DAILY",
//! ).unwrap();
//! // Before and after the March change of clocks (8 March 2026), 09:00 local.
//! let occ = s.occurrences(
//!     Utc.with_ymd_and_hms(2026, 3, 6, 0, 0, 0).unwrap(),
//!     Utc.with_ymd_and_hms(2026, 3, 10, 0, 0, 0).unwrap(),
//! );
//! let starts: Vec<String> = occ.intervals.iter().map(|(s, _)| s.to_rfc3339()).collect();
//! assert_eq!(starts, [
//!     "2026-03-06T14:00:00+00:00", "2026-03-07T14:00:00+00:00",
//!     "2026-03-08T13:00:00+00:00", "2026-03-09T13:00:00+00:00",
//! ]);
//! ```

mod datetime;
mod expand;
mod rule;
#[cfg(test)]
mod tests;

use std::fmt;

use chrono::{DateTime, Utc};
use jiff::{SignedDuration, Timestamp};

// The parsed forms stay inside the crate: the public API speaks chrono, like the rest of
// kargo-core, and jiff (which does the civil-time work) is not part of it.
pub(crate) use datetime::IcalDateTime;
pub(crate) use rule::RecurrenceRule;

/// How many candidate times one expansion may visit before it stops: a minutely rule
/// fits 400 days in it, a secondly one about 11 days. Beyond it, [`Occurrences`] says how
/// far it got.
pub const EXPANSION_BUDGET: u64 = 2_000_000;

/// The field of a schedule a problem is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScheduleField {
    /// `dtstart`.
    DtStart,
    /// `dtend`.
    DtEnd,
    /// `rrule`.
    RRule,
}

impl ScheduleField {
    /// The key as manifests spell it.
    pub fn key(self) -> &'static str {
        match self {
            ScheduleField::DtStart => "dtstart",
            ScheduleField::DtEnd => "dtend",
            ScheduleField::RRule => "rrule",
        }
    }
}

impl fmt::Display for ScheduleField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A problem with one field of a schedule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    /// The field.
    pub field: ScheduleField,
    /// What is wrong.
    pub message: String,
}

/// A parsed schedule: when it starts, how long each occurrence lasts, how it repeats.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    start: IcalDateTime,
    start_at: Timestamp,
    duration: SignedDuration,
    rule: Option<RecurrenceRule>,
}

/// The occurrences of a schedule that overlap a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrences {
    /// `[start, end)` of each occurrence overlapping the range, in order (they may
    /// overlap each other when an occurrence lasts longer than the rule's period).
    pub intervals: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Every occurrence starting before this instant is listed (if it overlaps the range):
    /// the range's end, or earlier when the rule was too dense to expand that far within
    /// [`EXPANSION_BUDGET`].
    pub complete_until: DateTime<Utc>,
}

impl Schedule {
    /// Parses `dtstart`, `dtend` and `rrule` (empty: a one-shot window); returns every
    /// problem found.
    pub fn parse(dtstart: &str, dtend: &str, rrule: &str) -> Result<Self, Vec<ScheduleError>> {
        let mut errors = Vec::new();
        let mut err = |field, message| errors.push(ScheduleError { field, message });
        let start = IcalDateTime::parse(dtstart)
            .and_then(|s| s.instant().map(|at| (s, at)))
            .map_err(|e| err(ScheduleField::DtStart, e))
            .ok();
        let end = IcalDateTime::parse(dtend)
            .and_then(|e| e.instant())
            .map_err(|e| err(ScheduleField::DtEnd, e))
            .ok();
        let rule = if rrule.trim().is_empty() {
            None
        } else {
            RecurrenceRule::parse(rrule)
                .map_err(|e| err(ScheduleField::RRule, e))
                .ok()
        };
        if let (Some((_, start_at)), Some(end_at)) = (&start, end)
            && end_at <= *start_at
        {
            err(
                ScheduleField::DtEnd,
                format!(
                    "dtend {dtend:?} ({end_at}) must be after dtstart {dtstart:?} ({start_at}): \
                     each occurrence lasts dtend - dtstart"
                ),
            );
        }
        match (start, end) {
            (Some((start, start_at)), Some(end_at)) if errors.is_empty() => Ok(Schedule {
                start,
                start_at,
                duration: end_at.duration_since(start_at),
                rule,
            }),
            _ => Err(errors),
        }
    }

    /// The first occurrence's start.
    pub fn start(&self) -> DateTime<Utc> {
        to_chrono(self.start_at)
    }

    /// How long each occurrence lasts.
    pub fn duration(&self) -> std::time::Duration {
        self.duration.unsigned_abs()
    }

    /// Whether it repeats (has a recurrence rule); otherwise it is one interval.
    pub fn is_recurring(&self) -> bool {
        self.rule.is_some()
    }

    /// The occurrences overlapping `[from, to)`.
    pub fn occurrences(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Occurrences {
        self.occurrences_with_budget(from, to, EXPANSION_BUDGET)
    }

    /// [`occurrences`](Self::occurrences) visiting at most `budget` candidate times.
    pub fn occurrences_with_budget(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        budget: u64,
    ) -> Occurrences {
        let (from, to) = (to_jiff(from), to_jiff(to));
        let expansion = match &self.rule {
            None => {
                let end = self
                    .start_at
                    .checked_add(self.duration)
                    .unwrap_or(Timestamp::MAX);
                let overlaps = self.start_at < to && end > from;
                expand::Expansion {
                    intervals: if overlaps {
                        vec![(self.start_at, end)]
                    } else {
                        Vec::new()
                    },
                    complete_until: to,
                }
            }
            Some(rule) => expand::expand(
                rule,
                &self.start.zone,
                self.start.civil,
                self.start_at,
                self.duration,
                from,
                to,
                budget,
            ),
        };
        Occurrences {
            intervals: expansion
                .intervals
                .into_iter()
                .map(|(s, e)| (to_chrono(s), to_chrono(e)))
                .collect(),
            complete_until: to_chrono(expansion.complete_until),
        }
    }
}

/// A chrono instant as a jiff one, clamped to jiff's range (years -9999 to 9999).
pub(crate) fn to_jiff(t: DateTime<Utc>) -> Timestamp {
    Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32).unwrap_or(
        if t.timestamp() < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        },
    )
}

/// A jiff instant as a chrono one (always in range: chrono's is wider).
pub(crate) fn to_chrono(t: Timestamp) -> DateTime<Utc> {
    let nanos = t.as_nanosecond();
    let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or_default();
    let subsec = u32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or_default();
    DateTime::from_timestamp(secs, subsec).unwrap_or_default()
}
