//! Times in expressions, as expr-lang's `time.Time`: a git subscription's `commitDate` and
//! `creatorDate` are RFC 3339 strings in UTC (so they compare as text), and they answer
//! Go's time methods: `commitDate.Year() >= 2023`, `.Month()`, `.Day()`, `.Hour()`,
//! `.Minute()`, `.Second()`, `.YearDay()`, `.Weekday()` (0 = Sunday), `.Unix()`,
//! `.UnixMilli()`, `.Before(t)`, `.After(t)`, `.Equal(t)`, `.Compare(t)`, `.IsZero()`,
//! `.UTC()`, `.Format(layout)` (Go layouts). `date(text)` reads a time (RFC 3339, or
//! `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS`) into the same UTC form, so
//! `commitDate > date('2024-06-01')` compares as Kargo's does.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, SecondsFormat, Timelike, Utc};
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

fn err(message: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, message)
}

/// Registers `date()` and the time methods of strings that hold a time.
pub(super) fn register(env: &mut Environment<'static>) {
    env.add_function("date", |text: Value| -> Result<Value, Error> {
        let s = text
            .as_str()
            .ok_or_else(|| err(format!("date(): expected a string, got {}", text.kind())))?;
        let t = parse_time(s).ok_or_else(|| {
            err(format!(
                "date(): {s:?} is not a time (expected RFC 3339, YYYY-MM-DD or \
                 YYYY-MM-DD HH:MM:SS)"
            ))
        })?;
        Ok(Value::from(format_time(&t)))
    });
    env.set_unknown_method_callback(|_state, value, name, args| {
        let Some(t) = value.as_str().and_then(parse_time) else {
            return Err(Error::new(
                ErrorKind::UnknownMethod,
                format!("{} has no method named {name}", value.kind()),
            ));
        };
        call(&t, name, args)
    });
}

/// A time as the expressions hold it: RFC 3339 in UTC, whole seconds unless it has more.
pub(crate) fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn other(name: &str, args: &[Value]) -> Result<DateTime<Utc>, Error> {
    match args {
        [v] => v
            .as_str()
            .and_then(parse_time)
            .ok_or_else(|| err(format!("{name}(): the argument must be a time, got {v}"))),
        _ => Err(err(format!(
            "{name}() takes one time, got {} arguments",
            args.len()
        ))),
    }
}

fn no_args(name: &str, args: &[Value]) -> Result<(), Error> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(err(format!("{name}() takes no arguments")))
    }
}

fn call(t: &DateTime<Utc>, name: &str, args: &[Value]) -> Result<Value, Error> {
    let int = |n: i64| Ok(Value::from(n));
    match name {
        "Before" => Ok(Value::from(*t < other(name, args)?)),
        "After" => Ok(Value::from(*t > other(name, args)?)),
        "Equal" => Ok(Value::from(*t == other(name, args)?)),
        "Compare" => int(match t.cmp(&other(name, args)?) {
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => 0,
            std::cmp::Ordering::Greater => 1,
        }),
        "Format" => match args {
            [layout] => {
                let layout = layout
                    .as_str()
                    .ok_or_else(|| err("Format(): the layout must be a string".to_owned()))?;
                Ok(Value::from(go_format(t, layout)))
            }
            _ => Err(err("Format() takes one layout".to_owned())),
        },
        _ => {
            no_args(name, args)?;
            match name {
                "Year" => int(i64::from(t.year())),
                "Month" => int(i64::from(t.month())),
                "Day" => int(i64::from(t.day())),
                "Hour" => int(i64::from(t.hour())),
                "Minute" => int(i64::from(t.minute())),
                "Second" => int(i64::from(t.second())),
                "Nanosecond" => int(i64::from(t.nanosecond())),
                "YearDay" => int(i64::from(t.ordinal())),
                "Weekday" => int(i64::from(t.weekday().num_days_from_sunday())),
                "Unix" => int(t.timestamp()),
                "UnixMilli" => int(t.timestamp_millis()),
                "IsZero" => Ok(Value::from(t.timestamp() == -62_135_596_800)),
                "UTC" | "Local" => Ok(Value::from(format_time(t))),
                "String" => Ok(Value::from(
                    t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
                )),
                _ => Err(Error::new(
                    ErrorKind::UnknownMethod,
                    format!("a time has no method named {name}"),
                )),
            }
        }
    }
}

/// Go's reference-time layout (`2006-01-02T15:04:05Z07:00`) written with chrono.
fn go_format(t: &DateTime<Utc>, layout: &str) -> String {
    // Longest tokens first, so `2006` is not read as `2` + `006`.
    const TOKENS: &[(&str, &str)] = &[
        ("January", "%B"),
        ("Monday", "%A"),
        ("Z07:00", "Z"),
        ("-07:00", "+00:00"),
        ("-0700", "+0000"),
        ("2006", "%Y"),
        (".000", "%.3f"),
        ("Jan", "%b"),
        ("Mon", "%a"),
        ("MST", "UTC"),
        ("01", "%m"),
        ("02", "%d"),
        ("15", "%H"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("PM", "%p"),
        ("1", "%-m"),
        ("2", "%-d"),
        ("3", "%-I"),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        for (go, chrono_fmt) in TOKENS {
            if let Some(after) = rest.strip_prefix(go) {
                out.push_str(&t.format(chrono_fmt).to_string());
                rest = after;
                continue 'outer;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> DateTime<Utc> {
        parse_time("2024-03-09T17:04:05Z").unwrap()
    }

    #[test]
    fn methods_answer_as_go_does() {
        let v = |name: &str| call(&t(), name, &[]).unwrap();
        assert_eq!(v("Year"), Value::from(2024));
        assert_eq!(v("Month"), Value::from(3));
        assert_eq!(v("Day"), Value::from(9));
        assert_eq!(v("Weekday"), Value::from(6), "a Saturday");
        assert_eq!(v("YearDay"), Value::from(69));
        assert_eq!(v("Unix"), Value::from(1_710_003_845));
        let later = [Value::from("2024-03-10T00:00:00Z")];
        assert_eq!(call(&t(), "Before", &later).unwrap(), Value::from(true));
        assert_eq!(call(&t(), "After", &later).unwrap(), Value::from(false));
        assert!(call(&t(), "Nope", &[]).is_err());
        assert!(call(&t(), "Year", &[Value::from(1)]).is_err());
    }

    #[test]
    fn go_layouts() {
        assert_eq!(go_format(&t(), "2006-01-02"), "2024-03-09");
        assert_eq!(
            go_format(&t(), "Jan 2, 2006 at 15:04"),
            "Mar 9, 2024 at 17:04"
        );
        assert_eq!(
            go_format(&t(), "2006-01-02T15:04:05Z07:00"),
            "2024-03-09T17:04:05Z"
        );
    }

    #[test]
    fn dates_read_in_several_forms() {
        assert_eq!(
            parse_time("2024-03-09").map(|t| format_time(&t)).as_deref(),
            Some("2024-03-09T00:00:00Z")
        );
        assert_eq!(
            parse_time("2024-03-09T19:04:05+02:00")
                .map(|t| format_time(&t))
                .as_deref(),
            Some("2024-03-09T17:04:05Z")
        );
        assert!(parse_time("last tuesday").is_none());
    }
}
