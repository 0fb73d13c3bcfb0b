//! Control API handlers: check a command against the views, then append.
//!
//! One file per area. A handler returns a [`Response`] or an [`ApiError`]
//! whose code becomes the HTTP status; nothing is appended on error.

pub mod archive;
pub mod as_of;
pub mod batch;
pub mod cutover;
pub mod endpoint;
pub mod export;
pub mod mx;
pub mod notify_targets;
pub mod plan;
pub mod query;
pub mod report;
pub mod users;

use std::sync::Arc;

use ferry_api::wire::{
    ApiError, BatchArchive, BatchComplete, BatchDelete, BatchRemoveUser, BatchSchedule, BatchShow,
    BatchShowAsOf, BatchStop, Checklist, Cutover, EndpointRemove, EndpointVerify, ErrorCode,
    MailboxShow, MailboxShowAsOf, MxCheck, MxSwitch, Report, Request, Response,
};
use ferry_events::{Actor, Envelope, Event, ExpectedVersion, StoreError};
use ferry_projections::Projections;

use crate::app::App;
use crate::shutdown::Shutdown;

pub async fn dispatch(
    app: &Arc<App>,
    actor: Actor,
    req: Request,
    shutdown: Shutdown,
) -> Result<Response, ApiError> {
    if req.is_mutating() && app.is_draining() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            "ferryd is shutting down and takes no new commands",
        ));
    }
    tracing::debug!(op = req.op(), %actor, "request");
    match req {
        Request::Status => Ok(query::status(app)),
        Request::EndpointList => Ok(query::endpoints(app)),
        Request::BatchShow(BatchShow { name }) => query::batch(app, &name),
        Request::BatchList => Ok(query::batches(app)),
        Request::MailboxShow(MailboxShow { address }) => query::mailbox(app, &address),
        Request::Events(r) => query::events(app, r, shutdown).await,
        Request::EndpointAdd(r) => endpoint::add(app, actor, r).await,
        Request::EndpointVerify(EndpointVerify { name, as_user }) => {
            endpoint::verify(app, actor, &name, as_user.as_deref()).await
        }
        Request::BatchCreate(r) => batch::import(app, actor, batch::Import::Create(r)).await,
        Request::BatchAddUsers(r) => batch::import(app, actor, batch::Import::AddUsers(r)).await,
        Request::BatchStart(r) => batch::start(app, actor, r).await,
        Request::BatchStop(BatchStop { name }) => batch::stop(app, actor, &name).await,
        Request::BatchDelete(BatchDelete { name, force }) => {
            batch::delete(app, actor, &name, force).await
        }
        Request::BatchSchedule(BatchSchedule { name, delta, tz }) => {
            batch::schedule(app, actor, &name, &delta, tz.as_deref()).await
        }
        Request::BatchComplete(BatchComplete { name, at, force }) => {
            batch::complete(app, actor, &name, at.as_deref(), force).await
        }
        Request::Cutover(Cutover { addresses, force }) => {
            cutover::cutover(app, actor, addresses, force).await
        }
        Request::MxCheck(MxCheck { domain }) => mx::check(app, actor, &domain).await,
        Request::MxSwitch(MxSwitch { domain, to, manual }) => {
            mx::switch(app, actor, &domain, &to, manual).await
        }
        Request::Checklist(Checklist { batch }) => mx::checklist(app, &batch).await,
        Request::BatchNotify(r) => notify_targets::set(app, actor, r).await,
        Request::BatchShowAsOf(BatchShowAsOf { name, time }) => {
            as_of::batch_as_of(app, &name, &time).await
        }
        Request::MailboxShowAsOf(MailboxShowAsOf { address, time }) => {
            as_of::mailbox_as_of(app, &address, &time).await
        }
        Request::Report(Report { batch }) => report::report(app, &batch).await,
        Request::MailboxSetCredentials(r) => users::set_credentials(app, actor, r).await,
        Request::BatchRemoveUser(BatchRemoveUser { name, address }) => {
            users::remove(app, actor, &name, &address).await
        }
        Request::EndpointUpdate(r) => endpoint::update(app, actor, r).await,
        Request::EndpointRemove(EndpointRemove { name }) => {
            endpoint::remove(app, actor, &name).await
        }
        Request::BatchArchive(BatchArchive {
            name,
            file,
            events,
            sha256,
        }) => archive::archive(app, actor, &name, &file, events, &sha256).await,
        Request::BatchPlan(r) => plan::plan(app, r).await,
    }
}

pub use ferry_events::time::now_us;

/// Removes the secrets in `refs` that nothing in the views refers to any
/// more (a deleted batch's, replaced credentials).
pub fn forget_secrets(app: &App, refs: &[ferry_events::SecretRef]) {
    let keep = crate::secrets::referenced(&app.views.read().unwrap());
    for r in refs.iter().filter(|r| !keep.contains(&r.0)) {
        app.secrets.remove(r);
    }
}

/// A time given as RFC 3339 on the command line, in µs; `flag` names it
/// in the refusal.
pub fn parse_time(flag: &str, t: &str) -> Result<i64, ApiError> {
    ferry_events::time::parse_rfc3339(flag, t).map_err(invalid)
}

/// A failure of ferryd itself (a task that died, a log it cannot read).
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::Internal, e.to_string())
}

pub fn not_yet(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::NotImplemented,
        format!("{what} is not available in this ferryd yet; nothing was recorded"),
    )
}

pub fn not_found(what: &str, name: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no {what} named {name:?}"))
}

pub fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Invalid, msg)
}

pub fn conflict(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Conflict, msg)
}

/// Maps a store error to the API: a stale version is a conflict.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::WrongVersion { .. } => conflict(format!(
            "{e}: someone changed it since you looked; check and retry"
        )),
        StoreError::Closed | StoreError::Database { .. } => {
            ApiError::new(ErrorCode::Unavailable, e.to_string())
        }
        other => internal(other),
    }
}

/// A mailbox and its batch, once the batch accepts `cmd` now.
pub fn mailbox_for<'v>(
    views: &'v Projections,
    address: &str,
    cmd: &ferry_projections::rules::Command,
) -> Result<
    (
        &'v ferry_projections::MailboxView,
        &'v ferry_projections::BatchView,
    ),
    ApiError,
> {
    let m = views
        .mailboxes
        .get(address)
        .ok_or_else(|| not_found("mailbox", address))?;
    let b = views
        .batches
        .get(&m.batch)
        .ok_or_else(|| not_found("batch", &m.batch))?;
    ferry_projections::rules::check(views, b, cmd, now_us()).map_err(conflict)?;
    Ok((m, b))
}

/// Appends to `stream` what `decide` makes of the views, at the stream's
/// version it read there, or at `expected` (a version the user named).
/// When the engine, the scheduler or another worker wrote to the stream in
/// between, and no version was named, decides again on views that include
/// that write: the user saw nothing stale, so there is nothing to refuse.
pub async fn append_decided(
    app: &App,
    stream: &str,
    actor: Actor,
    expected: Option<u64>,
    mut decide: impl FnMut(&Projections) -> Result<(u64, Vec<Event>), ApiError>,
) -> Result<Vec<Envelope>, ApiError> {
    let mut attempts = 0;
    loop {
        let (version, events) = decide(&app.views.read().unwrap())?;
        let at = ExpectedVersion::Exact(expected.unwrap_or(version));
        match app.append(stream, at, actor.clone(), events).await {
            Err(StoreError::WrongVersion { .. }) if expected.is_none() && attempts < 5 => {
                attempts += 1;
                app.catch_up();
            }
            res => return res.map_err(store_error),
        }
    }
}

pub fn done(message: impl Into<String>, envs: &[Envelope]) -> Response {
    Response::Done {
        message: message.into(),
        seq: envs.last().map_or(0, |e| e.seq),
    }
}

/// Names of endpoints and batches: letters, digits, `.`, `_`, `-`; up to 64.
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    // "." and ".." would name a runbook folder's own or its parent.
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.chars().all(|c| c == '.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} name {name:?} must be 1-64 letters, digits, '.', '_' or '-', not only dots"
        )))
    }
}
