//! Time as the log keeps it (µs since the Unix epoch, UTC) and the ways
//! people read or give it. Every crate parses and formats time here.

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, as the log records time.
pub fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

/// RFC 3339 to the second, `Z` for UTC: what answers and reports carry.
pub fn rfc3339(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// RFC 3339 to the microsecond: what audit records carry, so no two
/// events of a second read alike.
pub fn rfc3339_micros(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// `2026-11-21 22:00:00 UTC`: what a terminal or a page shows.
pub fn display(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// `2026-11-21 22:00:00`: a table's column, where the heading says UTC.
pub fn table(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// `22:00:00.250`: a chart's axis, where the day is known.
pub fn clock(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_default()
}

/// An RFC 3339 time given by a person, in µs; `what` names it in the error
/// (a flag such as `--at`).
pub fn parse_rfc3339(what: &str, text: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| format!("{what} {text:?}: {e} (give RFC 3339, e.g. 2026-11-21T22:00:00Z)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_the_flag() {
        let us = parse_rfc3339("--at", "2026-11-21T22:00:00+01:00").unwrap();
        assert_eq!(rfc3339(us), "2026-11-21T21:00:00Z");
        assert_eq!(display(us), "2026-11-21 21:00:00 UTC");
        assert_eq!(table(us), "2026-11-21 21:00:00");
        assert_eq!(clock(us + 250_000), "21:00:00.250");
        assert_eq!(rfc3339_micros(us + 7), "2026-11-21T21:00:00.000007Z");
        let e = parse_rfc3339("--at", "tomorrow").unwrap_err();
        assert!(e.starts_with("--at \"tomorrow\":"), "{e}");
    }
}
