//! The HTTP core: every Graph request takes its mailbox's budget, carries
//! the application's token, and is retried as the service asks: after a
//! `429` exactly when `Retry-After` says, after a 503 or 504 with growing
//! pauses, after a 401 once with a fresh token.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::{AppAuth, Credential, DEFAULT_AUTHORITY, GRAPH_SCOPE};
use crate::budget::{Budget, Budgets};
use crate::{Error, Result};

/// Microsoft Graph in the global cloud.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";
/// Answers of 429, 503 and 504 (and lost connections of reads) retried
/// before the request fails.
const DEFAULT_RETRIES: u32 = 10;
/// The first pause after a 503 or 504 without `Retry-After`; it doubles.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What a `Graph` needs: where to sign in, as whom, and where Graph is.
pub struct GraphConfig {
    /// The sign-in host with its scheme (national clouds, the simulator).
    pub authority: String,
    pub tenant: String,
    pub client_id: String,
    pub credential: Credential,
    /// Graph's root with its version, such as `https://graph.microsoft.com/v1.0`.
    pub graph_url: String,
    /// A PEM certificate to trust besides the system's roots (test servers).
    pub extra_root_pem: Option<Vec<u8>>,
    /// The budgets to share; `Budgets::global()` unless set.
    pub budgets: Option<Arc<Budgets>>,
    /// 429/503/504 answers retried per request.
    pub retries: u32,
}

impl GraphConfig {
    /// Microsoft's global cloud for `tenant` and `client_id`.
    pub fn new(tenant: &str, client_id: &str, credential: Credential) -> GraphConfig {
        GraphConfig {
            authority: DEFAULT_AUTHORITY.into(),
            tenant: tenant.into(),
            client_id: client_id.into(),
            credential,
            graph_url: DEFAULT_GRAPH_URL.into(),
            extra_root_pem: None,
            budgets: None,
            retries: DEFAULT_RETRIES,
        }
    }
}

/// One application's way into Graph. Cheap to clone; clones share the
/// token cache and the budgets.
#[derive(Clone)]
pub struct Graph {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    auth: Arc<AppAuth>,
    base: String,
    budgets: Arc<Budgets>,
    retries: u32,
}

impl Graph {
    pub fn new(cfg: GraphConfig) -> Result<Graph> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(30))
            .timeout(Duration::from_secs(300));
        if let Some(pem) = &cfg.extra_root_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| Error::Invalid(format!("the extra root certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| Error::transport("HTTP client", e))?;
        let auth = Arc::new(AppAuth::new(
            http.clone(),
            &cfg.authority,
            &cfg.tenant,
            &cfg.client_id,
            cfg.credential,
        ));
        Ok(Graph {
            inner: Arc::new(Inner {
                http,
                auth,
                base: cfg.graph_url.trim_end_matches('/').to_string(),
                budgets: cfg.budgets.unwrap_or_else(Budgets::global),
                retries: cfg.retries,
            }),
        })
    }

    pub fn auth(&self) -> &Arc<AppAuth> {
        &self.inner.auth
    }

    pub fn budgets(&self) -> &Arc<Budgets> {
        &self.inner.budgets
    }

    /// Graph's root, such as `https://graph.microsoft.com/v1.0`.
    pub fn base(&self) -> &str {
        &self.inner.base
    }

    /// Acting for the user with this address (or object id).
    pub fn mailbox(&self, user: &str) -> Result<Mailbox> {
        if user.is_empty() || user.contains(['/', '?', '#', '%', ' ']) {
            return Err(Error::Invalid(format!(
                "not a user address or id: {user:?}"
            )));
        }
        Ok(Mailbox {
            graph: self.clone(),
            user: user.to_string(),
            budget: self.inner.budgets.get(user, self.inner.auth.client_id()),
        })
    }
}

/// A body to send.
pub(crate) enum Body {
    None,
    Json(Value),
    Bytes {
        bytes: Vec<u8>,
        content_type: &'static str,
    },
}

/// One request as the core sends it.
pub(crate) struct Req {
    pub op: String,
    pub method: Method,
    pub url: String,
    pub body: Body,
    pub headers: Vec<(&'static str, String)>,
    /// False for pre-authenticated URLs (upload and import sessions).
    pub bearer: bool,
    /// How many requests the budget counts (a `$batch` counts its parts).
    pub weight: u32,
}

impl Req {
    pub fn new(op: String, method: Method, url: String) -> Req {
        Req {
            op,
            method,
            url,
            body: Body::None,
            headers: Vec::new(),
            bearer: true,
            weight: 1,
        }
    }

    pub fn json(mut self, v: Value) -> Req {
        self.body = Body::Json(v);
        self
    }

    fn upload_size(&self) -> u64 {
        match &self.body {
            Body::None => 0,
            Body::Json(v) => v.to_string().len() as u64,
            Body::Bytes { bytes, .. } => bytes.len() as u64,
        }
    }
}

/// What the service answered.
pub(crate) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    pub fn json<T: DeserializeOwned>(&self, op: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Protocol {
            op: op.to_string(),
            reason: e.to_string(),
        })
    }
}

/// Graph's `{"error": {"code", "message"}}` as an `Error`.
pub(crate) fn http_error(op: &str, status: u16, body: &[u8]) -> Error {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    Error::Http {
        op: op.to_string(),
        status,
        code: e["code"].as_str().unwrap_or("").to_string(),
        message: e["message"].as_str().unwrap_or("").to_string(),
    }
}

/// `Retry-After` in seconds (Graph sends whole seconds; an HTTP date is
/// also accepted).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s >= 0.0).then(|| Duration::from_secs_f64(s));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let d = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(d.to_std().unwrap_or(Duration::ZERO))
}

/// The pause after the `attempt`th 503/504 without `Retry-After`.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1 << attempt.min(8))
        .min(MAX_BACKOFF);
    let jitter: f64 = rand::random::<f64>() * 0.2;
    base.mul_f64(1.0 + jitter)
}

/// Acting for one user: every call goes through this mailbox's budget.
#[derive(Clone)]
pub struct Mailbox {
    graph: Graph,
    user: String,
    budget: Arc<Budget>,
}

impl Mailbox {
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The (mailbox, application) budget this mailbox's calls share.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// `{graph}/users/{user}{rest}`.
    pub(crate) fn url(&self, rest: &str) -> String {
        format!("{}/users/{}{rest}", self.graph.inner.base, self.user)
    }

    /// The path within Graph for `$batch` parts: `/users/{user}{rest}`.
    pub(crate) fn rel(&self, rest: &str) -> String {
        format!("/users/{}{rest}", self.user)
    }

    pub(crate) fn op(&self, what: &str) -> String {
        format!("{what} for {}", self.user)
    }

    /// A link Graph gave (next page, delta) must lead back to Graph.
    pub(crate) fn check_link(&self, op: &str, link: &str) -> Result<()> {
        let base = &self.graph.inner.base;
        let origin_end = base
            .find("://")
            .map(|i| i + 3)
            .and_then(|i| base[i..].find('/').map(|j| i + j));
        let origin = &base[..origin_end.unwrap_or(base.len())];
        if link.starts_with(origin) && link[origin.len()..].starts_with('/') {
            Ok(())
        } else {
            Err(Error::Protocol {
                op: op.to_string(),
                reason: "a link that leads away from Graph".into(),
            })
        }
    }

    /// Sends `req`, retried as the service asks; an answer of 2xx or the
    /// statuses in `accept` comes back, anything else is an error.
    pub(crate) async fn send(&self, req: &Req, accept: &[u16]) -> Result<Answer> {
        let inner = &self.graph.inner;
        let upload = req.upload_size();
        let mut throttled = 0;
        let mut refreshed = false;
        loop {
            let token = if req.bearer {
                Some(inner.auth.token(GRAPH_SCOPE).await?)
            } else {
                None
            };
            let sent = async {
                let _permit = self.budget.acquire(req.weight, upload).await;
                let mut rb = inner.http.request(req.method.clone(), &req.url);
                if let Some(t) = &token {
                    rb = rb.bearer_auth(t.secret());
                }
                for (k, v) in &req.headers {
                    rb = rb.header(*k, v);
                }
                rb = match &req.body {
                    Body::None => rb,
                    Body::Json(v) => rb.json(v),
                    Body::Bytes {
                        bytes,
                        content_type,
                    } => rb.header("content-type", *content_type).body(bytes.clone()),
                };
                let resp = rb.send().await.map_err(|e| Error::transport(&req.op, e))?;
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| Error::transport(&req.op, e))?;
                Ok::<_, Error>(Answer {
                    status,
                    headers,
                    body,
                })
            }
            .await;
            let answer = match sent {
                Ok(a) => a,
                // A read is sent again after a lost connection; a write is
                // not: it may have been done, and its caller settles that by
                // the item's origin.
                Err(e @ Error::Transport { .. })
                    if req.method == Method::GET && throttled < inner.retries =>
                {
                    tracing::info!(error = %e, "connection lost; reading again");
                    tokio::time::sleep(backoff(throttled)).await;
                    throttled += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match answer.status {
                s if (200..300).contains(&s) || accept.contains(&s) => return Ok(answer),
                429 | 503 | 504 if throttled < inner.retries => {
                    let pause = retry_after(&answer.headers);
                    match (answer.status, pause) {
                        (429, p) => self.budget.pause(p.unwrap_or(Duration::from_secs(1))),
                        (_, Some(p)) => self.budget.pause(p),
                        (_, None) => tokio::time::sleep(backoff(throttled)).await,
                    }
                    throttled += 1;
                }
                401 if !refreshed && token.is_some() => {
                    refreshed = true;
                    inner
                        .auth
                        .invalidate(GRAPH_SCOPE, token.as_ref().expect("bearer"))
                        .await;
                }
                s => return Err(http_error(&req.op, s, &answer.body)),
            }
        }
    }

    /// A GET or a JSON call whose answer is read as `T`.
    pub(crate) async fn call<T: DeserializeOwned>(&self, req: Req) -> Result<T> {
        let answer = self.send(&req, &[]).await?;
        answer.json(&req.op)
    }

    /// Every page of a collection, following `@odata.nextLink`.
    pub(crate) async fn collect<T: DeserializeOwned>(
        &self,
        op: &str,
        first: String,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut url = first;
        loop {
            let page: Value = self
                .call(Req::new(op.to_string(), Method::GET, url))
                .await?;
            let items = page["value"].as_array().cloned().unwrap_or_default();
            for it in items {
                out.push(serde_json::from_value(it).map_err(|e| Error::Protocol {
                    op: op.to_string(),
                    reason: e.to_string(),
                })?);
            }
            match page["@odata.nextLink"].as_str() {
                Some(next) => {
                    self.check_link(op, next)?;
                    url = next.to_string();
                }
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) >= FIRST_BACKOFF && backoff(0) < FIRST_BACKOFF * 2);
        assert!(backoff(3) >= FIRST_BACKOFF * 8);
        assert!(backoff(30) <= MAX_BACKOFF.mul_f64(1.2));
    }
}
