//! `audit export`: the log streamed as JSONL or CSV, with its hash chain.
//!
//! Records are read one at a time on a blocking thread and sent through a
//! small channel, so memory stays flat however long the log is.

use std::sync::Arc;

use bytes::Bytes;
use ferry_ctl::ApiError;
use ferry_ctl::audit::{Format, Writer};
use ferry_events::{EventStore, codec};
use serde::Deserialize;

use super::invalid;
use crate::app::App;
use crate::server::{self, Body};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub format: Format,
    /// RFC 3339 bounds on the event time: since ≤ time < until.
    pub since: Option<String>,
    pub until: Option<String>,
}

fn parse_time(what: &str, t: &Option<String>) -> Result<Option<i64>, ApiError> {
    t.as_ref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_micros())
                .map_err(|e| invalid(format!("--{what} {s:?}: {e}")))
        })
        .transpose()
}

/// Flush to the client after this many bytes.
const CHUNK: usize = 64 << 10;

pub fn export(app: &Arc<App>, q: ExportQuery) -> http::Response<Body> {
    let (since, until) = match (parse_time("since", &q.since), parse_time("until", &q.until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return server::error_response(&e),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let mut w = Writer::new(q.format);
        let mut buf = String::new();
        for raw in app.store.read_raw(1) {
            let env = raw.map_err(std::io::Error::other).and_then(|r| {
                codec::decode(&r.bytes)
                    .map(|e| (e, r.bytes))
                    .map_err(std::io::Error::other)
            });
            let (env, bytes) = match env {
                Ok(x) => x,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            // Time never decreases along the log, so `until` ends the scan.
            if until.is_some_and(|u| env.time_us >= u) {
                break;
            }
            if since.is_some_and(|s| env.time_us < s) {
                continue;
            }
            buf.push_str(&w.record(&env, &bytes));
            if buf.len() >= CHUNK
                && tx
                    .blocking_send(Ok(Bytes::from(std::mem::take(&mut buf))))
                    .is_err()
            {
                return;
            }
        }
        buf.push_str(&w.finish());
        let _ = tx.blocking_send(Ok(Bytes::from(buf)));
    });
    let chunks =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let content_type = match q.format {
        Format::Jsonl => "application/x-ndjson",
        Format::Csv => "text/csv",
    };
    server::stream_response(content_type, chunks)
}
