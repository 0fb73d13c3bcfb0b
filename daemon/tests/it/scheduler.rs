//! The scheduler on an injected clock: every instant is given, none read.

use chrono::{DateTime, TimeZone, Utc};
use ferryd::cron::Cron;
use ferryd::scheduler::{Decision, plan};

fn us(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
}

fn iso(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn fires(expr: &str, tz: &str, from: &str, to: &str) -> Vec<String> {
    Cron::parse(expr, tz)
        .unwrap()
        .fires(us(from), us(to))
        .map(iso)
        .collect()
}

const HOUR: i64 = 3600 * 1_000_000;

#[test]
fn five_field_crontab_line_fires_on_the_minute() {
    assert_eq!(
        fires(
            "30 2 * * *",
            "UTC",
            "2026-06-01T00:00:00Z",
            "2026-06-03T23:59:59Z"
        ),
        [
            "2026-06-01T02:30:00Z",
            "2026-06-02T02:30:00Z",
            "2026-06-03T02:30:00Z"
        ]
    );
    // Day-of-week names and ranges, as in crontab.
    assert_eq!(
        fires(
            "0 22 * * Mon-Fri",
            "UTC",
            "2026-11-20T00:00:00Z",
            "2026-11-24T00:00:00Z"
        ),
        ["2026-11-20T22:00:00Z", "2026-11-23T22:00:00Z"]
    );
}

#[test]
fn six_field_expression_has_seconds() {
    assert_eq!(
        fires(
            "*/20 * * * * *",
            "UTC",
            "2026-06-01T00:00:00Z",
            "2026-06-01T00:01:00Z"
        ),
        [
            "2026-06-01T00:00:20Z",
            "2026-06-01T00:00:40Z",
            "2026-06-01T00:01:00Z"
        ]
    );
}

#[test]
fn a_zone_shifts_the_fire() {
    // 02:30 in Paris in June is 00:30 UTC (CEST, +2).
    assert_eq!(
        fires(
            "30 2 * * *",
            "Europe/Paris",
            "2026-06-01T00:00:00Z",
            "2026-06-01T23:00:00Z"
        ),
        ["2026-06-01T00:30:00Z"]
    );
}

#[test]
fn spring_forward_runs_a_missing_time_once_paris() {
    // 2026-03-29: Paris clocks jump from 02:00 to 03:00; 02:30 does not exist.
    assert_eq!(
        fires(
            "30 2 * * *",
            "Europe/Paris",
            "2026-03-28T00:00:00Z",
            "2026-03-30T23:00:00Z"
        ),
        [
            "2026-03-28T01:30:00Z", // 02:30 CET
            "2026-03-29T01:00:00Z", // 03:00 CEST, the first minute after the gap
            "2026-03-30T00:30:00Z", // 02:30 CEST
        ]
    );
}

#[test]
fn spring_forward_runs_a_missing_time_once_new_york() {
    // 2026-03-08: New York jumps from 02:00 to 03:00.
    assert_eq!(
        fires(
            "30 2 * * *",
            "America/New_York",
            "2026-03-07T00:00:00Z",
            "2026-03-09T23:00:00Z"
        ),
        [
            "2026-03-07T07:30:00Z", // 02:30 EST
            "2026-03-08T07:00:00Z", // 03:00 EDT
            "2026-03-09T06:30:00Z", // 02:30 EDT
        ]
    );
}

#[test]
fn fall_back_never_runs_twice_paris() {
    // 2026-10-25: Paris goes from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
    assert_eq!(
        fires(
            "30 2 * * *",
            "Europe/Paris",
            "2026-10-24T00:00:00Z",
            "2026-10-26T23:00:00Z"
        ),
        [
            "2026-10-24T00:30:00Z", // CEST
            "2026-10-25T00:30:00Z", // the first 02:30 (CEST) only
            "2026-10-26T01:30:00Z", // CET
        ]
    );
}

#[test]
fn fall_back_never_runs_twice_new_york() {
    // 2026-11-01: New York goes from 02:00 EDT back to 01:00 EST.
    assert_eq!(
        fires(
            "30 1 * * *",
            "America/New_York",
            "2026-10-31T00:00:00Z",
            "2026-11-02T23:00:00Z"
        ),
        [
            "2026-10-31T05:30:00Z",
            "2026-11-01T05:30:00Z", // 01:30 EDT; not again at 01:30 EST
            "2026-11-02T06:30:00Z",
        ]
    );
}

#[test]
fn an_hourly_expression_keeps_both_repeated_hours() {
    // Every hour at :30 runs in both copies of the repeated hour, like cronie.
    let f = fires(
        "30 * * * *",
        "America/New_York",
        "2026-11-01T04:00:00Z",
        "2026-11-01T08:00:00Z",
    );
    assert_eq!(
        f,
        [
            "2026-11-01T04:30:00Z", // 00:30 EDT
            "2026-11-01T05:30:00Z", // 01:30 EDT
            "2026-11-01T06:30:00Z", // 01:30 EST
            "2026-11-01T07:30:00Z", // 02:30 EST
        ]
    );
}

#[test]
fn bad_expressions_and_zones_are_refused_clearly() {
    let e = Cron::parse("* * * *", "UTC").unwrap_err().to_string();
    assert!(e.contains("4 fields"), "{e}");
    let e = Cron::parse("61 * * * *", "UTC").unwrap_err().to_string();
    assert!(e.contains("61 * * * *"), "{e}");
    let e = Cron::parse("0 2 * * *", "Europe/Atlantis")
        .unwrap_err()
        .to_string();
    assert!(e.contains("Europe/Atlantis"), "{e}");
    let e = Cron::parse("0 0 0 30 2 * 2030", "UTC")
        .unwrap_err()
        .to_string();
    assert!(e.contains("never fires"), "{e}");
}

#[test]
fn out_of_range_values_are_named_in_the_users_terms() {
    let e = Cron::parse("0 25 * * *", "UTC").unwrap_err().to_string();
    assert_eq!(
        e,
        r#"cron expression "0 25 * * *": hour 25 is out of range (0-23)"#
    );
    let e = Cron::parse("0 3 * * 8", "UTC").unwrap_err().to_string();
    assert!(e.ends_with("day of week 8 is out of range (0-7)"), "{e}");
    let e = Cron::parse("0 0 3 * * 0", "UTC").unwrap_err().to_string();
    assert!(e.ends_with("day of week 0 is out of range (1-7)"), "{e}");
    let e = Cron::parse("*/0 * * * *", "UTC").unwrap_err().to_string();
    assert!(e.contains("minute 0 is out of range"), "{e}");
}

#[test]
fn nicknames_and_crontab_weekdays_fire_as_cron_does() {
    let day = |expr: &str| fires(expr, "UTC", "2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z");
    // 2026-06-01 is a Monday.
    assert_eq!(day("@weekly"), ["2026-06-07T00:00:00Z"]);
    assert_eq!(day("@daily").len(), 7);
    assert_eq!(day("@hourly").len(), 7 * 24);
    assert_eq!(day("0 3 * * 1"), ["2026-06-01T03:00:00Z"]);
    assert_eq!(day("0 3 * * 0"), day("0 3 * * 7"));
    assert_eq!(
        day("0 3 * * 5-7"),
        [
            "2026-06-05T03:00:00Z",
            "2026-06-06T03:00:00Z",
            "2026-06-07T03:00:00Z"
        ]
    );
    assert_eq!(
        fires(
            "@monthly",
            "UTC",
            "2026-06-01T00:00:00Z",
            "2026-08-01T00:00:00Z"
        ),
        ["2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z"]
    );
    assert_eq!(
        fires(
            "@yearly",
            "UTC",
            "2026-06-01T00:00:00Z",
            "2028-01-01T00:00:00Z"
        ),
        ["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]
    );
}

#[test]
fn nothing_due_plans_nothing() {
    let c = Cron::parse("0 * * * *", "UTC").unwrap();
    let t0 = us("2026-06-01T10:00:00Z");
    assert!(plan(&c, t0, t0 + HOUR - 1, 6 * HOUR, None).is_empty());
}

#[test]
fn a_due_fire_runs_once() {
    let c = Cron::parse("0 * * * *", "UTC").unwrap();
    let t0 = us("2026-06-01T10:00:00Z");
    assert_eq!(
        plan(&c, t0, t0 + HOUR + 5, 6 * HOUR, None),
        [Decision::Fire { due_us: t0 + HOUR }]
    );
}

#[test]
fn a_fire_during_a_running_pass_is_skipped_not_queued() {
    let c = Cron::parse("0 * * * *", "UTC").unwrap();
    let t0 = us("2026-06-01T10:00:00Z");
    let d = plan(
        &c,
        t0,
        t0 + HOUR,
        6 * HOUR,
        Some("a delta pass is still running"),
    );
    assert_eq!(
        d,
        [Decision::Skip {
            due_us: t0 + HOUR,
            reason: "a delta pass is still running".into()
        }]
    );
}

#[test]
fn downtime_within_the_deadline_catches_up_once() {
    let c = Cron::parse("0 * * * *", "UTC").unwrap();
    let t0 = us("2026-06-01T10:00:00Z");
    // Down from 10:00 to 13:20: fires at 11, 12 and 13 were missed.
    let d = plan(&c, t0, t0 + 3 * HOUR + 20 * 60_000_000, 6 * HOUR, None);
    let fired: Vec<_> = d
        .iter()
        .filter_map(|d| match d {
            Decision::Fire { due_us } => Some(*due_us),
            _ => None,
        })
        .collect();
    assert_eq!(fired, [t0 + 3 * HOUR], "{d:?}");
    assert_eq!(
        d.iter()
            .filter(|d| matches!(d, Decision::Skip { .. }))
            .count(),
        2
    );
    assert!(!d.iter().any(|d| matches!(d, Decision::Miss { .. })));
}

#[test]
fn downtime_past_the_deadline_records_misses() {
    let c = Cron::parse("0 * * * *", "UTC").unwrap();
    let t0 = us("2026-06-01T10:00:00Z");
    // Down 10.5 h: fires 11..14 are older than 6 h, 15..20 are within.
    let now = t0 + 10 * HOUR + 30 * 60_000_000;
    let d = plan(&c, t0, now, 6 * HOUR, None);
    let missed: Vec<_> = d
        .iter()
        .filter_map(|d| match d {
            Decision::Miss { due_us } => Some(iso(*due_us)),
            _ => None,
        })
        .collect();
    assert_eq!(
        missed,
        [
            "2026-06-01T11:00:00Z",
            "2026-06-01T12:00:00Z",
            "2026-06-01T13:00:00Z",
            "2026-06-01T14:00:00Z"
        ]
    );
    assert_eq!(
        d.last(),
        Some(&Decision::Fire {
            due_us: t0 + 10 * HOUR
        })
    );
    assert_eq!(d.len(), 4 + 5 + 1);
    // With a 20-minute deadline every fire is too old to run.
    let d = plan(&c, t0, now, HOUR / 3, None);
    assert!(
        !d.iter().any(|d| matches!(d, Decision::Fire { .. })),
        "{d:?}"
    );
    assert_eq!(
        d.iter()
            .filter(|d| matches!(d, Decision::Miss { .. }))
            .count(),
        10
    );
}

#[test]
fn a_long_outage_is_summarised_not_listed_fire_by_fire() {
    let c = Cron::parse("* * * * *", "UTC").unwrap();
    let t0 = Utc
        .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
        .unwrap()
        .timestamp_micros();
    // Three days down with a per-minute schedule and a 6 h deadline.
    let d = plan(&c, t0, t0 + 72 * HOUR, 6 * HOUR, None);
    let misses = d
        .iter()
        .filter(|d| matches!(d, Decision::Miss { .. }))
        .count();
    assert_eq!(misses, 100);
    let Decision::Skip { reason, .. } = &d[0] else {
        panic!("{:?}", d[0])
    };
    assert!(reason.contains("3859 fires"), "{reason}");
    assert_eq!(
        d.last(),
        Some(&Decision::Fire {
            due_us: t0 + 72 * HOUR
        })
    );
}
