//! `--as-of`: a batch or mailbox as the views stood at a past time,
//! folded again from the log up to that time.

use std::sync::Arc;

use ferry_api::ApiError;
use ferry_api::wire::Response;
use ferry_projections::Projections;

use super::{internal, parse_time, store_error};
use crate::app::App;

/// The views as they stood at `time`: every event up to the last one
/// recorded at or before it, folded one at a time from the log.
async fn as_of(app: &Arc<App>, t: i64) -> Result<Projections, ApiError> {
    let app = app.clone();
    tokio::task::spawn_blocking(move || {
        let mut p = Projections::default();
        for env in app.store.read_all(1) {
            let env = env.map_err(store_error)?;
            if env.time_us > t {
                break;
            }
            p.apply(&env);
        }
        Ok(p)
    })
    .await
    .map_err(internal)?
}

fn absent(what: &str, name: &str, time: &str) -> ApiError {
    ApiError::new(
        ferry_api::ErrorCode::NotFound,
        format!("no {what} named {name:?} as of {time}"),
    )
}

pub async fn batch_as_of(app: &Arc<App>, name: &str, time: &str) -> Result<Response, ApiError> {
    let at = parse_time("--as-of", time)?;
    let p = as_of(app, at).await?;
    super::query::batch_detail(&p, name, at)
        .map(|d| Response::Batch(Box::new(d)))
        .ok_or_else(|| absent("batch", name, time))
}

pub async fn mailbox_as_of(
    app: &Arc<App>,
    address: &str,
    time: &str,
) -> Result<Response, ApiError> {
    let address = address.to_lowercase();
    let mut p = as_of(app, parse_time("--as-of", time)?).await?;
    p.mailboxes
        .remove(&address)
        .map(|m| Response::Mailbox(Box::new(m)))
        .ok_or_else(|| absent("mailbox", &address, time))
}
