//! A cron schedule in its time zone, as a pure function of time.
//!
//! Time zones: the cron fields are matched against local wall-clock time.
//! A local time that does not exist (spring forward) fires at the first
//! instant after the gap, once; a local time that happens twice (fall back)
//! fires at its first occurrence only, unless the expression runs every hour,
//! in which case both hours get their fires (as cronie does).

use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use cron::TimeUnitSpec;
use ferry_projections::BatchView;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "cron expression {expr:?} has {fields} fields; give 5 (minute hour day-of-month month day-of-week) or 6-7 (seconds first, optional year)"
    )]
    Fields { expr: String, fields: usize },
    #[error("cron expression {expr:?}: {reason}")]
    Cron { expr: String, reason: String },
    #[error("cron expression {expr:?}: {field} {value} is out of range ({min}-{max})")]
    Range {
        expr: String,
        field: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
    #[error("unknown time zone {0:?}: use an IANA name such as Europe/Paris or UTC")]
    Zone(String),
    #[error("cron expression {0:?} never fires")]
    Never(String),
}

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Cron {
    schedule: cron::Schedule,
    tz: Tz,
    every_hour: bool,
}

/// How far before a query instant to look for wall-clock candidates, so
/// that times shifted by a DST transition are still seen.
const DST_LOOKBACK_H: i64 = 3;

impl Cron {
    /// Parses a crontab line (5 fields, or `@daily` and the like) or a
    /// `cron` crate line (6 or 7, seconds first). Values out of range are
    /// refused in the user's own terms.
    pub fn parse(expr: &str, tz: &str) -> Result<Cron, ScheduleError> {
        let expr = expr.trim();
        let crontab = nickname(expr).unwrap_or(expr);
        let fields: Vec<&str> = crontab.split_whitespace().collect();
        let bounds: &[Bounds] = match fields.len() {
            5 => &CRONTAB,
            6 | 7 => &SECONDS_FIRST,
            n => {
                return Err(ScheduleError::Fields {
                    expr: expr.to_string(),
                    fields: n,
                });
            }
        };
        for (field, b) in fields.iter().zip(bounds) {
            check_field(expr, field, b)?;
        }
        let full = if fields.len() == 5 {
            let dow = crontab_weekdays(fields[4]);
            format!("0 {} {dow}", fields[..4].join(" "))
        } else {
            crontab.to_string()
        };
        let schedule = cron::Schedule::from_str(&full).map_err(|e| ScheduleError::Cron {
            expr: expr.to_string(),
            reason: e.to_string(),
        })?;
        let tz = Tz::from_str(tz).map_err(|_| ScheduleError::Zone(tz.to_string()))?;
        let every_hour = schedule.hours().is_all();
        let c = Cron {
            schedule,
            tz,
            every_hour,
        };
        if c.next_after(ferry_events::time::now_us()).is_none() {
            return Err(ScheduleError::Never(expr.to_string()));
        }
        Ok(c)
    }

    /// The instants a wall-clock time stands for, earliest first.
    fn instants(&self, local: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(first, second) if self.every_hour => {
                vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
            }
            LocalResult::Ambiguous(first, _) => vec![first.with_timezone(&Utc)],
            LocalResult::None => {
                // In a gap: the first whole minute that exists.
                let mut t = local
                    .with_second(0)
                    .and_then(|t| t.with_nanosecond(0))
                    .unwrap_or(local);
                for _ in 0..(24 * 60) {
                    t += chrono::Duration::minutes(1);
                    if let Some(x) = self.tz.from_local_datetime(&t).earliest() {
                        return vec![x.with_timezone(&Utc)];
                    }
                }
                Vec::new()
            }
        }
    }

    fn offset_at(&self, t: DateTime<Utc>) -> chrono::FixedOffset {
        self.tz.offset_from_utc_datetime(&t.naive_utc()).fix()
    }

    /// The first fire strictly after `after_us`.
    pub fn next_after(&self, after_us: i64) -> Option<i64> {
        let after = DateTime::from_timestamp_micros(after_us)?;
        let local = after.with_timezone(&self.tz).naive_local();
        // Walking back hours of candidates is only needed near a change of
        // offset (a repeated hour's second run comes after the query); a
        // schedule by the second would walk thousands each call.
        let window = chrono::Duration::hours(DST_LOOKBACK_H);
        let offset = self.offset_at(after);
        let from = if self.offset_at(after - window) == offset
            && self.offset_at(after + window) == offset
        {
            local
        } else {
            local - window
        }
        .and_utc();
        // The schedule walks wall-clock times; UTC carries them unchanged.
        for candidate in self.schedule.after(&from).take(1_000_000) {
            for t in self.instants(candidate.naive_utc()) {
                if t > after {
                    return Some(t.timestamp_micros());
                }
            }
        }
        None
    }

    /// Every fire in `(after_us, until_us]`, oldest first.
    pub fn fires(&self, after_us: i64, until_us: i64) -> impl Iterator<Item = i64> + '_ {
        std::iter::successors(self.next_after(after_us), move |t| self.next_after(*t))
            .take_while(move |t| *t <= until_us)
    }
}

/// A field's name and bounds, as the user wrote the expression.
type Bounds = (&'static str, u32, u32);

/// A crontab line: day of week 0-7, both 0 and 7 Sunday.
const CRONTAB: [Bounds; 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

/// The `cron` crate's line: seconds first, day of week 1-7 from Sunday,
/// an optional year.
const SECONDS_FIRST: [Bounds; 7] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 1, 7),
    ("year", 1970, 2099),
];

/// The crontab line a `@name` stands for.
fn nickname(expr: &str) -> Option<&'static str> {
    Some(match expr.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return None,
    })
}

/// Refuses a number outside the field's bounds, or a step of 0. Names
/// (MON, JAN) are left to the parser.
fn check_field(expr: &str, field: &str, (name, min, max): &Bounds) -> Result<(), ScheduleError> {
    let bad = |value: u32, min: u32, max: u32| ScheduleError::Range {
        expr: expr.to_string(),
        field: name,
        value,
        min,
        max,
    };
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step.and_then(|s| s.parse::<u32>().ok())
            && step == 0
        {
            return Err(bad(0, 1, max - min + 1));
        }
        for n in range.split('-').filter_map(|v| v.parse::<u32>().ok()) {
            if n < *min || n > *max {
                return Err(bad(n, *min, *max));
            }
        }
    }
    Ok(())
}

/// A crontab day-of-week field (0-7, 0 and 7 Sunday) by name, as the
/// `cron` crate counts days from 1.
fn crontab_weekdays(field: &str) -> String {
    const DAYS: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let day = |v: &str| match v.parse::<usize>() {
        Ok(n) if n < DAYS.len() => DAYS[n].to_string(),
        _ => v.to_string(),
    };
    field
        .split(',')
        .map(|item| {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, format!("/{s}")),
                None => (item, String::new()),
            };
            match range.split_once('-') {
                // Up to 7 is up to Saturday, and Sunday.
                Some((a, "7")) if step.is_empty() && a != "0" => format!("{}-SAT,SUN", day(a)),
                Some((a, b)) => format!("{}-{}{step}", day(a), day(b)),
                None => format!("{}{step}", day(range)),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The next fire of a batch's schedule after `now_us`, if it has one.
pub fn next_fire(b: &BatchView, now_us: i64) -> Option<i64> {
    let s = b.schedule.as_ref()?;
    let cron = Cron::parse(&s.cron, &s.tz).ok()?;
    cron.next_after(now_us.max(s.last_due_us.unwrap_or(s.set_us)))
}
