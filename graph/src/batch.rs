//! JSON batching: up to 20 requests in one round trip, ordered by
//! `dependsOn` where one needs another. Each part counts against the
//! budget; parts the service throttled (429) are sent again after their
//! `Retry-After`, with the parts that failed only because they depended on
//! them (424).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Mailbox, Req};
use crate::{Error, Result};

/// Graph's limit on the parts of one `$batch`.
pub const MAX_BATCH: usize = 20;

/// One part: a path relative to Graph's root (`/users/…`).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPart {
    pub id: String,
    pub method: Method,
    pub url: String,
    pub body: Option<Value>,
    pub depends_on: Vec<String>,
}

impl BatchPart {
    pub fn get(id: &str, url: String) -> BatchPart {
        BatchPart {
            id: id.to_string(),
            method: Method::GET,
            url,
            body: None,
            depends_on: Vec::new(),
        }
    }

    pub fn with_body(id: &str, method: Method, url: String, body: Value) -> BatchPart {
        BatchPart {
            id: id.to_string(),
            method,
            url,
            body: Some(body),
            depends_on: Vec::new(),
        }
    }

    pub fn after(mut self, id: &str) -> BatchPart {
        self.depends_on.push(id.to_string());
        self
    }
}

/// One part's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchAnswer {
    pub id: String,
    pub status: u16,
    pub body: Value,
}

impl Mailbox {
    /// Sends `parts` as one `$batch` (or more, while parts are throttled)
    /// and answers in the parts' order.
    pub async fn batch(&self, parts: Vec<BatchPart>) -> Result<Vec<BatchAnswer>> {
        if parts.len() > MAX_BATCH {
            return Err(Error::Invalid(format!(
                "a $batch takes at most {MAX_BATCH} requests, not {}",
                parts.len()
            )));
        }
        let op = self.op("$batch");
        let order: Vec<String> = parts.iter().map(|p| p.id.clone()).collect();
        let mut done: HashMap<String, BatchAnswer> = HashMap::new();
        let mut pending = parts;
        let mut rounds = 0;
        while !pending.is_empty() {
            let body = json!({ "requests": pending.iter().map(part_json).collect::<Vec<_>>() });
            let mut req = Req::new(
                op.clone(),
                Method::POST,
                format!("{}/$batch", self.graph().base()),
            )
            .json(body);
            req.weight = pending.len() as u32;
            let answer: Value = self.call(req).await?;
            let mut throttled: HashSet<String> = HashSet::new();
            let mut pause = Duration::ZERO;
            for r in answer["responses"].as_array().into_iter().flatten() {
                let id = r["id"].as_str().unwrap_or_default().to_string();
                let status = r["status"].as_u64().unwrap_or(0) as u16;
                if status == 429 {
                    let secs = r["headers"]["Retry-After"]
                        .as_str()
                        .and_then(|s| s.parse::<f64>().ok())
                        .or_else(|| {
                            r["headers"]["retry-after"]
                                .as_str()
                                .and_then(|s| s.parse().ok())
                        })
                        .unwrap_or(1.0);
                    pause = pause.max(Duration::from_secs_f64(secs));
                    throttled.insert(id.clone());
                }
                done.insert(
                    id.clone(),
                    BatchAnswer {
                        id,
                        status,
                        body: r["body"].clone(),
                    },
                );
            }
            // Again: the throttled parts and the parts that failed for them.
            let mut again: Vec<BatchPart> = Vec::new();
            for p in pending {
                let status = done.get(&p.id).map(|a| a.status);
                let waits_on_throttled = p
                    .depends_on
                    .iter()
                    .any(|d| throttled.contains(d) || again.iter().any(|a| &a.id == d));
                if status == Some(429) || (status == Some(424) && waits_on_throttled) {
                    again.push(p);
                }
            }
            let again_ids: HashSet<String> = again.iter().map(|p| p.id.clone()).collect();
            for p in &mut again {
                p.depends_on.retain(|d| again_ids.contains(d));
            }
            if !again.is_empty() {
                rounds += 1;
                if rounds > 10 {
                    return Err(Error::Http {
                        op,
                        status: 429,
                        code: "TooManyRequests".into(),
                        message: "parts of the batch stayed throttled".into(),
                    });
                }
                self.budget().pause(pause);
            }
            pending = again;
        }
        order
            .into_iter()
            .map(|id| {
                done.remove(&id).ok_or_else(|| Error::Protocol {
                    op: op.clone(),
                    reason: format!("no answer for part {id}"),
                })
            })
            .collect()
    }
}

fn part_json(p: &BatchPart) -> Value {
    let mut v = json!({ "id": p.id, "method": p.method.as_str(), "url": p.url });
    if let Some(b) = &p.body {
        v["body"] = b.clone();
        v["headers"] = json!({ "Content-Type": "application/json" });
    }
    if !p.depends_on.is_empty() {
        v["dependsOn"] = json!(p.depends_on);
    }
    v
}
