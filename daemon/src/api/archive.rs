//! `batch archive`: a deleted batch's events, exported by ferryctl,
//! checked against the log and recorded.

use std::sync::Arc;

use ferry_api::ApiError;
use ferry_api::audit::Format;
use ferry_api::wire::Response;
use ferry_events::{Actor, Event, ExpectedVersion, stream};
use sha2::Digest;

use super::export::{self, Selection};
use super::{conflict, done, internal, store_error};
use crate::app::App;

/// `batch archive`: ferryctl wrote the export; ferryd exports again, and
/// records `BatchArchived` only when count and SHA-256 agree.
pub async fn archive(
    app: &Arc<App>,
    actor: Actor,
    name: &str,
    file: &str,
    events: u64,
    sha256: &str,
) -> Result<Response, ApiError> {
    // No command lock while exporting (it may take long): the append below
    // expects the stream as it was here, so a change in between is refused.
    let version = app.store.stream_version(&stream::batch(name));
    let sel = Selection::archived(app, name)?;
    let format = Format::Jsonl;
    let check = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            let mut sha = sha2::Sha256::new();
            let n = export::write(&app, sel, format, |b| {
                sha.update(&b);
                true
            })?;
            Ok::<_, std::io::Error>((n, hex::encode(sha.finalize())))
        })
    };
    let (n, sum) = check.await.map_err(internal)?.map_err(internal)?;
    if n != events || sum != sha256 {
        return Err(conflict(format!(
            "the archive of batch {name} does not match the log ({events} records, sha256 {sha256}; \
             the log gives {n}, {sum}); nothing was recorded"
        )));
    }
    let envs = app
        .append(
            &stream::batch(name),
            ExpectedVersion::Exact(version),
            actor,
            vec![Event::BatchArchived {
                batch: name.to_string(),
                file: file.to_string(),
                events,
                sha256: sha256.to_string(),
            }],
        )
        .await
        .map_err(store_error)?;
    Ok(done(
        format!("batch {name}: {events} events archived to {file}"),
        &envs,
    ))
}
