//! The fuzz targets' bodies, one per input that ferryd or ferryctl reads
//! from outside. `fuzz/` (cargo-fuzz, nightly, outside the workspace) runs
//! them under libFuzzer; `tests/it/fuzz_corpora.rs` replays the committed
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
    if let Ok(request) = serde_json::from_slice::<ferry_api::Request>(data) {
        let written = serde_json::to_vec(&request).expect("a request serializes");
        let again: ferry_api::Request =
            serde_json::from_slice(&written).expect("a written request reads back");
        assert_eq!(again, request);
    }
}

/// Server answers, one after another, parsed by imap-proto and folded as
/// an IMAP session folds them. imap-proto 0.17 panics on some malformed
/// answers (a non-ASCII byte right after a response code); a session
/// catches that and drops the connection (`imap::session::Conn::next`), so
/// here such an answer ends the input quietly and the fuzzer looks past it.
pub fn imap_response(data: &[u8]) {
    use ferry_connectors::imap::{imap_proto::Response, parse::fold_answer};
    let mut rest = data;
    while !rest.is_empty() {
        let Some(Ok((left, response))) = quietly(|| Response::parse(rest)) else {
            return;
        };
        fold_answer(&response);
        if left.len() == rest.len() {
            return;
        }
        rest = left;
    }
}

/// Runs `f`, turning a panic into `None` without printing it or letting a
/// fuzzer's panic hook abort: only for a dependency's known panics.
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Option<T> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    result.ok()
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
    if let Ok(cron) = ferryd::cron::Cron::parse(expr, tz) {
        let now = 1_796_000_000_000_000;
        if let Some(next) = cron.next_after(now) {
            assert!(next > now, "{expr:?} {tz:?}: {next} is not after {now}");
        }
    }
    let _ = ferryd::api::parse_time("--at", text);
}

/// `audit verify` input: any file is judged, never a panic.
pub fn audit_verify(data: &[u8]) {
    let _ = ferry_ctl::verify::verify_reader(data);
}
