//! Tests of schedule parsing and recurrence expansion, with exact UTC instants.

use chrono::{DateTime, Utc};

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn schedule(dtstart: &str, dtend: &str, rrule: &str) -> Schedule {
    Schedule::parse(dtstart, dtend, rrule).unwrap_or_else(|e| panic!("{e:?}"))
}

/// The starts of the occurrences overlapping `[from, to)`, as RFC 3339 UTC strings.
fn starts(s: &Schedule, from: &str, to: &str) -> Vec<String> {
    s.occurrences(utc(from), utc(to))
        .intervals
        .iter()
        .map(|(start, _)| start.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .collect()
}

fn errors(dtstart: &str, dtend: &str, rrule: &str) -> Vec<String> {
    Schedule::parse(dtstart, dtend, rrule)
        .expect_err("should not parse")
        .iter()
        .map(ToString::to_string)
        .collect()
}

const NY_9: &str = "TZID=America/New_York:20260302T090000";
const NY_17: &str = "TZID=America/New_York:20260302T170000";

#[test]
fn daily_new_york_keeps_local_time_across_march_change() {
    // US clocks go forward on Sunday 8 March 2026: 09:00 EST is 14:00Z, 09:00 EDT 13:00Z.
    let s = schedule(NY_9, NY_17, "FREQ=DAILY");
    assert_eq!(
        starts(&s, "2026-03-06T00:00:00Z", "2026-03-10T00:00:00Z"),
        [
            "2026-03-06T14:00:00Z",
            "2026-03-07T14:00:00Z",
            "2026-03-08T13:00:00Z",
            "2026-03-09T13:00:00Z",
        ]
    );
    let occ = s.occurrences(utc("2026-03-08T00:00:00Z"), utc("2026-03-09T00:00:00Z"));
    // Exactly eight hours: 09:00-17:00 EDT.
    assert_eq!(
        occ.intervals,
        [(utc("2026-03-08T13:00:00Z"), utc("2026-03-08T21:00:00Z"))]
    );
}

#[test]
fn daily_new_york_keeps_local_time_across_november_change() {
    // Clocks go back on Sunday 1 November 2026.
    let s = schedule(NY_9, NY_17, "FREQ=DAILY");
    assert_eq!(
        starts(&s, "2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z"),
        [
            "2026-10-31T13:00:00Z",
            "2026-11-01T14:00:00Z",
            "2026-11-02T14:00:00Z",
        ]
    );
}

#[test]
fn skipped_local_time_is_ignored_by_the_rule() {
    // 02:30 does not exist on 8 March 2026 in New York: that occurrence is dropped.
    let s = schedule(
        "TZID=America/New_York:20260301T023000",
        "TZID=America/New_York:20260301T030000",
        "FREQ=DAILY",
    );
    assert_eq!(
        starts(&s, "2026-03-07T00:00:00Z", "2026-03-10T00:00:00Z"),
        ["2026-03-07T07:30:00Z", "2026-03-09T06:30:00Z"]
    );
    // And not counted: COUNT=9 from 1 March reaches 10 March.
    let s = schedule(
        "TZID=America/New_York:20260301T023000",
        "TZID=America/New_York:20260301T030000",
        "FREQ=DAILY;COUNT=9",
    );
    let all = starts(&s, "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z");
    assert_eq!(all.len(), 9);
    assert_eq!(all.last().map(String::as_str), Some("2026-03-10T06:30:00Z"));
}

#[test]
fn skipped_start_uses_the_offset_before_the_gap() {
    // RFC 5545 §3.3.5: 02:30 on the change day means 03:30 EDT.
    let s = schedule(
        "TZID=America/New_York:20260308T023000",
        "TZID=America/New_York:20260308T043000",
        "",
    );
    assert_eq!(s.start(), utc("2026-03-08T07:30:00Z"));
    assert_eq!(s.duration(), std::time::Duration::from_secs(3600));
}

#[test]
fn repeated_local_time_means_the_first() {
    // 01:30 happens twice on 1 November 2026: EDT (05:30Z) first.
    let s = schedule(
        "TZID=America/New_York:20261030T013000",
        "TZID=America/New_York:20261030T020000",
        "FREQ=DAILY",
    );
    assert_eq!(
        starts(&s, "2026-10-31T00:00:00Z", "2026-11-03T00:00:00Z"),
        [
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z",
            "2026-11-02T06:30:00Z",
        ]
    );
}

#[test]
fn weekly_by_day_and_interval() {
    // Thursday 1 January 2026; weekends.
    let s = schedule(
        "20260103T000000Z",
        "20260103T010000Z",
        "FREQ=WEEKLY;BYDAY=SA,SU",
    );
    assert_eq!(
        starts(&s, "2026-01-01T00:00:00Z", "2026-01-12T00:00:00Z"),
        [
            "2026-01-03T00:00:00Z",
            "2026-01-04T00:00:00Z",
            "2026-01-10T00:00:00Z",
            "2026-01-11T00:00:00Z",
        ]
    );
    // Every other week, Mondays and Wednesdays, weeks starting on Monday.
    let s = schedule(
        "20260105T100000Z",
        "20260105T110000Z",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE",
    );
    assert_eq!(
        starts(&s, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z"),
        [
            "2026-01-05T10:00:00Z",
            "2026-01-07T10:00:00Z",
            "2026-01-19T10:00:00Z",
            "2026-01-21T10:00:00Z",
        ]
    );
    // Without BYDAY, the start's weekday.
    let s = schedule("20260106T100000Z", "20260106T110000Z", "FREQ=WEEKLY");
    assert_eq!(
        starts(&s, "2026-01-01T00:00:00Z", "2026-01-21T00:00:00Z"),
        [
            "2026-01-06T10:00:00Z",
            "2026-01-13T10:00:00Z",
            "2026-01-20T10:00:00Z"
        ]
    );
}

#[test]
fn week_start_changes_which_weeks_an_interval_picks() {
    // RFC 5545's own example: WKST=MO gives 5, 10, 19, 24 August 1997; WKST=SU gives 5,
    // 17, 19, 31.
    let s = schedule(
        "19970805T090000Z",
        "19970805T100000Z",
        "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=MO",
    );
    assert_eq!(
        starts(&s, "1997-08-01T00:00:00Z", "1997-09-30T00:00:00Z"),
        [
            "1997-08-05T09:00:00Z",
            "1997-08-10T09:00:00Z",
            "1997-08-19T09:00:00Z",
            "1997-08-24T09:00:00Z",
        ]
    );
    let s = schedule(
        "19970805T090000Z",
        "19970805T100000Z",
        "FREQ=WEEKLY;INTERVAL=2;COUNT=4;BYDAY=TU,SU;WKST=SU",
    );
    assert_eq!(
        starts(&s, "1997-08-01T00:00:00Z", "1997-09-30T00:00:00Z"),
        [
            "1997-08-05T09:00:00Z",
            "1997-08-17T09:00:00Z",
            "1997-08-19T09:00:00Z",
            "1997-08-31T09:00:00Z",
        ]
    );
}

#[test]
fn monthly_by_day_ordinals_and_month_days() {
    // Second Tuesday and last Friday of each month.
    let s = schedule(
        "20260101T120000Z",
        "20260101T130000Z",
        "FREQ=MONTHLY;BYDAY=2TU,-1FR",
    );
    assert_eq!(
        starts(&s, "2026-01-02T00:00:00Z", "2026-03-01T00:00:00Z"),
        [
            "2026-01-13T12:00:00Z",
            "2026-01-30T12:00:00Z",
            "2026-02-10T12:00:00Z",
            "2026-02-27T12:00:00Z",
        ]
    );
    // The 31st: months without one are skipped (not moved).
    let s = schedule("20260131T080000Z", "20260131T090000Z", "FREQ=MONTHLY");
    assert_eq!(
        starts(&s, "2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z"),
        [
            "2026-01-31T08:00:00Z",
            "2026-03-31T08:00:00Z",
            "2026-05-31T08:00:00Z"
        ]
    );
    // The last day of each month.
    let s = schedule(
        "20260131T080000Z",
        "20260131T090000Z",
        "FREQ=MONTHLY;BYMONTHDAY=-1",
    );
    assert_eq!(
        starts(&s, "2026-01-01T00:00:00Z", "2026-05-01T00:00:00Z"),
        [
            "2026-01-31T08:00:00Z",
            "2026-02-28T08:00:00Z",
            "2026-03-31T08:00:00Z",
            "2026-04-30T08:00:00Z",
        ]
    );
    // Friday the 13th (BYDAY limits BYMONTHDAY).
    let s = schedule(
        "20260101T000000Z",
        "20260101T000001Z",
        "FREQ=MONTHLY;BYDAY=FR;BYMONTHDAY=13",
    );
    assert_eq!(
        starts(&s, "2026-01-02T00:00:00Z", "2027-01-01T00:00:00Z"),
        [
            "2026-02-13T00:00:00Z",
            "2026-03-13T00:00:00Z",
            "2026-11-13T00:00:00Z"
        ]
    );
}

#[test]
fn last_weekday_of_the_month_with_bysetpos() {
    let s = schedule(
        "20260130T170000Z",
        "20260130T180000Z",
        "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
    );
    assert_eq!(
        starts(&s, "2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z"),
        [
            "2026-01-30T17:00:00Z",
            "2026-02-27T17:00:00Z",
            "2026-03-31T17:00:00Z",
            "2026-04-30T17:00:00Z",
            "2026-05-29T17:00:00Z",
        ]
    );
}

#[test]
fn yearly_rules() {
    // Default: the start's date every year; BYMONTH + BYMONTHDAY; BYDAY ordinal in a month
    // (US Thanksgiving, fourth Thursday of November); BYYEARDAY.
    let s = schedule("20261224T000000Z", "20261227T000000Z", "FREQ=YEARLY");
    assert_eq!(
        starts(&s, "2026-01-01T00:00:00Z", "2029-01-01T00:00:00Z"),
        [
            "2026-12-24T00:00:00Z",
            "2027-12-24T00:00:00Z",
            "2028-12-24T00:00:00Z"
        ]
    );
    let s = schedule(
        "20261126T000000Z",
        "20261127T000000Z",
        "FREQ=YEARLY;BYMONTH=11;BYDAY=4TH",
    );
    assert_eq!(
        starts(&s, "2026-01-01T00:00:00Z", "2029-01-01T00:00:00Z"),
        [
            "2026-11-26T00:00:00Z",
            "2027-11-25T00:00:00Z",
            "2028-11-23T00:00:00Z"
        ]
    );
    // The 20th Monday of the year (RFC 5545 example: 19 May 1997).
    let s = schedule(
        "19970519T090000Z",
        "19970519T100000Z",
        "FREQ=YEARLY;BYDAY=20MO",
    );
    assert_eq!(
        starts(&s, "1997-01-01T00:00:00Z", "1999-01-01T00:00:00Z"),
        ["1997-05-19T09:00:00Z", "1998-05-18T09:00:00Z"]
    );
    let s = schedule(
        "20260101T000000Z",
        "20260101T000001Z",
        "FREQ=YEARLY;BYYEARDAY=1,-1",
    );
    assert_eq!(
        starts(&s, "2026-01-01T00:00:00Z", "2027-12-31T12:00:00Z"),
        [
            "2026-01-01T00:00:00Z",
            "2026-12-31T00:00:00Z",
            "2027-01-01T00:00:00Z",
            "2027-12-31T00:00:00Z"
        ]
    );
}

#[test]
fn count_and_until() {
    let s = schedule("20260101T090000Z", "20260101T100000Z", "FREQ=DAILY;COUNT=3");
    assert_eq!(
        starts(&s, "2025-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        [
            "2026-01-01T09:00:00Z",
            "2026-01-02T09:00:00Z",
            "2026-01-03T09:00:00Z"
        ]
    );
    // UNTIL is inclusive.
    let s = schedule(
        "20260101T090000Z",
        "20260101T100000Z",
        "FREQ=DAILY;UNTIL=20260103T090000Z",
    );
    assert_eq!(
        starts(&s, "2025-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        [
            "2026-01-01T09:00:00Z",
            "2026-01-02T09:00:00Z",
            "2026-01-03T09:00:00Z"
        ]
    );
    // A date UNTIL covers its whole day (in the start's zone).
    let s = schedule(
        "TZID=Asia/Tokyo:20260101T230000",
        "TZID=Asia/Tokyo:20260101T233000",
        "FREQ=DAILY;UNTIL=20260102",
    );
    assert_eq!(
        starts(&s, "2025-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
        ["2026-01-01T14:00:00Z", "2026-01-02T14:00:00Z"]
    );
}

#[test]
fn sub_daily_frequencies() {
    // Every 15 minutes from 09:00 to 09:45 UTC, every day.
    let s = schedule(
        "20260101T090000Z",
        "20260101T090500Z",
        "FREQ=MINUTELY;INTERVAL=15;BYHOUR=9",
    );
    assert_eq!(
        starts(&s, "2026-01-02T00:00:00Z", "2026-01-02T23:59:59Z"),
        [
            "2026-01-02T09:00:00Z",
            "2026-01-02T09:15:00Z",
            "2026-01-02T09:30:00Z",
            "2026-01-02T09:45:00Z",
        ]
    );
    // Every 6 hours, at minute 30.
    let s = schedule(
        "20260101T003000Z",
        "20260101T010000Z",
        "FREQ=HOURLY;INTERVAL=6",
    );
    assert_eq!(
        starts(&s, "2026-03-01T00:00:00Z", "2026-03-01T23:59:59Z"),
        [
            "2026-03-01T00:30:00Z",
            "2026-03-01T06:30:00Z",
            "2026-03-01T12:30:00Z",
            "2026-03-01T18:30:00Z",
        ]
    );
    let s = schedule(
        "20260101T000000Z",
        "20260101T000001Z",
        "FREQ=SECONDLY;INTERVAL=20",
    );
    assert_eq!(
        starts(&s, "2026-06-01T00:00:00Z", "2026-06-01T00:01:00Z"),
        [
            "2026-06-01T00:00:00Z",
            "2026-06-01T00:00:20Z",
            "2026-06-01T00:00:40Z"
        ]
    );
}

#[test]
fn a_dense_rule_reports_how_far_it_got() {
    let s = schedule("20260101T000000Z", "20260101T000001Z", "FREQ=SECONDLY");
    let occ = s.occurrences_with_budget(
        utc("2026-06-01T00:00:00Z"),
        utc("2026-06-02T00:00:00Z"),
        50_000,
    );
    assert!(occ.complete_until > utc("2026-06-01T00:00:00Z"));
    assert!(occ.complete_until < utc("2026-06-02T00:00:00Z"));
    assert!(
        occ.intervals
            .iter()
            .all(|(start, _)| *start < occ.complete_until)
    );
    // With the default budget a whole hour is there.
    let occ = s.occurrences(utc("2026-06-01T00:00:00Z"), utc("2026-06-01T01:00:00Z"));
    assert_eq!(occ.intervals.len(), 3_600);
    assert_eq!(occ.complete_until, utc("2026-06-01T01:00:00Z"));
}

/// What EXPANSION_BUDGET's documentation promises: a minutely rule over the evaluator's
/// 400 days, a secondly one over about 11 days.
#[test]
fn the_default_budget_covers_what_it_says() {
    let from = utc("2026-06-01T00:00:00Z");
    let s = schedule("20260101T000000Z", "20260101T000010Z", "FREQ=MINUTELY");
    let to = from + chrono::TimeDelta::days(400);
    assert_eq!(s.occurrences(from, to).complete_until, to);
    let s = schedule("20260101T000000Z", "20260101T000001Z", "FREQ=SECONDLY");
    let reached = s.occurrences(from, to).complete_until;
    assert!(
        reached > from + chrono::TimeDelta::days(11)
            && reached < from + chrono::TimeDelta::days(12),
        "{reached}"
    );
}

#[test]
fn a_rule_that_never_matches_stops_within_the_budget() {
    // 30 February never comes: a secondly rule walks every second looking for it.
    let s = schedule(
        "20260101T000000Z",
        "20260101T000001Z",
        "FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30",
    );
    let occ = s.occurrences_with_budget(
        utc("2026-06-01T00:00:00Z"),
        utc("2027-06-01T00:00:00Z"),
        10_000,
    );
    assert!(occ.intervals.is_empty(), "{occ:?}");
    assert!(occ.complete_until < utc("2026-06-02T00:00:00Z"), "{occ:?}");
    // A yearly one gets to the end of the range.
    let s = schedule(
        "20260101T000000Z",
        "20260101T000001Z",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
    );
    let occ = s.occurrences(utc("2026-06-01T00:00:00Z"), utc("2036-06-01T00:00:00Z"));
    assert!(occ.intervals.is_empty());
    assert_eq!(occ.complete_until, utc("2036-06-01T00:00:00Z"));
}

#[test]
fn occurrences_overlapping_the_range_start_are_included() {
    // A 30-day occurrence every 7 days: at any instant, several are running.
    let s = schedule("20260101T000000Z", "20260131T000000Z", "FREQ=WEEKLY");
    let occ = s.occurrences(utc("2026-03-01T00:00:00Z"), utc("2026-03-02T00:00:00Z"));
    let firsts: Vec<_> = occ.intervals.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        firsts,
        [
            utc("2026-02-05T00:00:00Z"),
            utc("2026-02-12T00:00:00Z"),
            utc("2026-02-19T00:00:00Z"),
            utc("2026-02-26T00:00:00Z"),
        ]
    );
}

/// Starting the walk near the range (no COUNT) finds exactly what walking from the start
/// finds.
#[test]
fn skipping_ahead_matches_walking_from_the_start() {
    let rules = [
        "FREQ=YEARLY;BYMONTH=3,11;BYDAY=1SU",
        "FREQ=MONTHLY;INTERVAL=5;BYMONTHDAY=1,15,-1",
        "FREQ=WEEKLY;INTERVAL=3;BYDAY=MO,FR",
        "FREQ=DAILY;INTERVAL=9;BYHOUR=1,2,3",
        "FREQ=HOURLY;INTERVAL=7;BYMINUTE=0,30",
        "FREQ=MINUTELY;INTERVAL=97",
    ];
    for rule in rules {
        let s = schedule(
            "TZID=America/New_York:20240102T013000",
            "TZID=America/New_York:20240102T020000",
            rule,
        );
        let (from, to) = (utc("2026-10-30T00:00:00Z"), utc("2026-11-10T00:00:00Z"));
        let near = s.occurrences(from, to).intervals;
        let all = s
            .occurrences(utc("2024-01-01T00:00:00Z"), to)
            .intervals
            .into_iter()
            .filter(|(_, end)| *end > from)
            .collect::<Vec<_>>();
        assert_eq!(near, all, "{rule}");
    }
}

#[test]
fn one_shot_window() {
    let s = schedule("20261224T000000Z", "20261227T000000Z", "");
    assert!(!s.is_recurring());
    assert_eq!(
        s.occurrences(utc("2026-12-26T00:00:00Z"), utc("2027-01-01T00:00:00Z"))
            .intervals,
        [(utc("2026-12-24T00:00:00Z"), utc("2026-12-27T00:00:00Z"))]
    );
    assert!(
        s.occurrences(utc("2026-12-27T00:00:00Z"), utc("2027-01-01T00:00:00Z"))
            .intervals
            .is_empty()
    );
}

#[test]
fn date_time_forms() {
    let at = |v: &str| IcalDateTime::parse(v).and_then(|d| d.instant());
    assert_eq!(
        at("TZID=Europe/Berlin:20260701T090000").map(|t| t.to_string()),
        Ok("2026-07-01T07:00:00Z".to_owned())
    );
    assert_eq!(
        at("tzid=europe/berlin:20260101T090000").map(|t| t.to_string()),
        Ok("2026-01-01T08:00:00Z".to_owned())
    );
    assert_eq!(
        at("20260101T090000Z").map(|t| t.to_string()),
        Ok("2026-01-01T09:00:00Z".to_owned())
    );
    // Floating: read as UTC.
    assert_eq!(
        at("20260101T090000").map(|t| t.to_string()),
        Ok("2026-01-01T09:00:00Z".to_owned())
    );
    assert_eq!(
        at("TZID=Asia/Kolkata:20260101").map(|t| t.to_string()),
        Ok("2025-12-31T18:30:00Z".to_owned())
    );
}

#[test]
fn bad_times_say_what_is_expected() {
    let cases = [
        ("", "dtstart: a date-time is required"),
        (
            "TZID=Mars/Olympus:20260101T090000",
            "unknown time zone \"Mars/Olympus\"",
        ),
        (
            "TZID=America/New_York:20260101T090000Z",
            "cannot also have a TZID",
        ),
        ("TZID=America/New_York", "must be followed by ':'"),
        ("20260230T090000Z", "\"20260230\" is not a calendar date"),
        ("20260101T250000Z", "invalid time \"250000\""),
        ("2026-01-01T09:00:00Z", "expected a date as YYYYMMDD"),
        ("20260101T0900Z", "expected the time as HHMMSS"),
        ("20260101Z", "cannot end in Z"),
    ];
    for (dtstart, wanted) in cases {
        let errs = errors(dtstart, "20270101T000000Z", "");
        assert!(
            errs.iter().any(|e| e.contains(wanted)),
            "{dtstart}: {errs:?}"
        );
    }
    let errs = errors("20260102T000000Z", "20260101T000000Z", "");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("dtend: dtend \"20260101T000000Z\""),
        "{errs:?}"
    );
    assert!(errs[0].contains("must be after dtstart"), "{errs:?}");
    // Equal is not after.
    assert_eq!(errors("20260101T000000Z", "20260101T000000Z", "").len(), 1);
    // Every field's problem at once.
    let errs = errors("x", "y", "z");
    assert_eq!(errs.len(), 3, "{errs:?}");
}

#[test]
fn bad_rules_say_what_is_wrong() {
    let cases = [
        ("BYDAY=MO", "FREQ is required"),
        ("FREQ=FORTNIGHTLY", "unknown FREQ \"FORTNIGHTLY\""),
        ("FREQ=DAILY;BYWEEKNO=20", "BYWEEKNO is not supported"),
        ("FREQ=DAILY;BYEASTER=0", "unknown rule part \"BYEASTER\""),
        (
            "FREQ=DAILY;COUNT=2;UNTIL=20270101T000000Z",
            "COUNT and UNTIL cannot both be set",
        ),
        ("FREQ=WEEKLY;BYDAY=1MO", "needs FREQ=MONTHLY or FREQ=YEARLY"),
        ("FREQ=MONTHLY;BYDAY=6MO", "out of range for FREQ=MONTHLY"),
        (
            "FREQ=WEEKLY;BYMONTHDAY=1",
            "BYMONTHDAY cannot be used with FREQ=WEEKLY",
        ),
        (
            "FREQ=MONTHLY;BYYEARDAY=1",
            "BYYEARDAY cannot be used with FREQ=MONTHLY",
        ),
        ("FREQ=DAILY;BYSETPOS=1", "BYSETPOS needs another BYxxx"),
        (
            "FREQ=DAILY;BYHOUR=24",
            "BYHOUR value \"24\" is not a whole number from 0 to 23",
        ),
        ("FREQ=DAILY;BYMONTHDAY=0", "-31 to -1"),
        ("FREQ=DAILY;BYDAY=XX", "unknown weekday \"XX\""),
        ("FREQ=DAILY;BYDAY=éM", "is not a weekday"),
        (
            "FREQ=DAILY;INTERVAL=0",
            "INTERVAL=\"0\" is not a whole number from 1",
        ),
        ("FREQ=DAILY;FREQ=WEEKLY", "FREQ appears more than once"),
        ("FREQ=DAILY;UNTIL=2027", "UNTIL=\"2027\""),
        ("FREQ", "is not NAME=VALUE"),
    ];
    for (rule, wanted) in cases {
        let errs = errors("20260101T000000Z", "20260101T010000Z", rule);
        assert_eq!(errs.len(), 1, "{rule}: {errs:?}");
        assert!(errs[0].starts_with("rrule: "), "{rule}: {errs:?}");
        assert!(errs[0].contains(wanted), "{rule}: {errs:?}");
    }
    // Accepted spellings.
    for rule in [
        "RRULE:FREQ=DAILY",
        "freq=daily;byday=mo",
        "FREQ=MONTHLY;BYDAY=+1MO",
        "FREQ=DAILY;",
    ] {
        assert!(
            Schedule::parse("20260101T000000Z", "20260101T010000Z", rule).is_ok(),
            "{rule}"
        );
    }
}
