//! The fuzz targets' bodies, one per input that ferryd or ferryctl reads
//! from outside. `fuzz/` (cargo-fuzz, nightly, outside the workspace) runs
//! them under libFuzzer; `tests/fuzz_corpora.rs` replays the committed
//! corpora through them on stable, so CI keeps every input that once
//! mattered. Each returns normally or panics on a broken invariant.

use ferry_connectors::maildir::{flags, layout};
use ferry_connectors::utf7;

/// Batch CSV files: whatever the file, the rows taken are at most 2,000
/// and every address is a plain `local@domain`.
pub fn csv_import(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(rows) = ferryd::csvimport::parse(text) {
        assert!(rows.len() <= ferryd::csvimport::MAX_ROWS);
        for row in rows {
            for address in [&row.address, &row.destination_address] {
                let problem = ferryd::csvimport::address_problem(address);
                assert!(problem.is_none(), "{address:?} {problem:?}");
            }
        }
    }
}

/// Control requests as they arrive on the socket: one that reads writes
/// back to the same request.
pub fn control_request(data: &[u8]) {
    if let Ok(request) = serde_json::from_slice::<ferry_ctl::Request>(data) {
        let written = serde_json::to_vec(&request).expect("a request serializes");
        let again: ferry_ctl::Request =
            serde_json::from_slice(&written).expect("a written request reads back");
        assert_eq!(again, request);
    }
}

/// Server answers, one after another, read as an IMAP session reads them.
pub fn imap_response(data: &[u8]) {
    let mut rest = data;
    while let Some(used) = ferry_connectors::imap::parse::read_answer(rest) {
        if used == 0 {
            break;
        }
        rest = &rest[used..];
    }
}

/// Maildir file names and folder directory names, and the modified UTF-7
/// that folder names are written in.
pub fn maildir_names(data: &[u8]) {
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    let (base, info) = flags::split_file_name(name);
    assert!(name.starts_with(base) && name.ends_with(info));
    if let Some(segments) = layout::parse_dir_name(name) {
        let _ = layout::dir_name(&segments, "fuzz");
    }
    assert_eq!(utf7::decode(&utf7::encode(name)).as_deref(), Some(name));
    if let Some(decoded) = utf7::decode(name) {
        let encoded = utf7::encode(&decoded);
        assert_eq!(utf7::decode(&encoded).as_deref(), Some(&*decoded));
    }
}

/// Schedules (`batch schedule --delta CRON --tz ZONE`: the first line is
/// the expression, the second the zone) and times (`--at`, `--since`).
pub fn schedule_expr(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(2, '\n');
    let expr = lines.next().unwrap_or("");
    let tz = lines.next().unwrap_or("UTC");
    if let Ok(cron) = ferryd::scheduler::Cron::parse(expr, tz) {
        let now = 1_796_000_000_000_000;
        if let Some(next) = cron.next_after(now) {
            assert!(next > now, "{expr:?} {tz:?}: {next} is not after {now}");
        }
    }
    let _ = ferryd::api::parse_time("--at", text);
}

/// `audit verify` input: any file is judged, never a panic.
pub fn audit_verify(data: &[u8]) {
    let _ = ferry_ctl::audit::verify_reader(data);
}
