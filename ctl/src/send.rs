//! One request to ferryd, its answer printed.

use ferry_api::{Client, Request, Response};

use crate::output;

/// Sends `req` and prints the answer; hands it back for commands whose
/// exit status depends on it.
pub async fn answer(client: &Client, req: &Request, json: bool) -> anyhow::Result<Response> {
    let resp = client.call(req).await?;
    output::print(&resp, json)?;
    Ok(resp)
}

/// Sends `req` and prints the answer: exit status 0.
pub async fn print(client: &Client, req: &Request, json: bool) -> anyhow::Result<i32> {
    answer(client, req, json).await.map(|_| 0)
}
