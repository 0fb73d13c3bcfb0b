//! Cutover hooks: a command or a webhook run for each user cut over, with a
//! JSON payload describing the cutover. The outcome (exit or HTTP status and
//! the output) is meant to be recorded in a `RoutingAction` event, so it
//! never carries the webhook's URL, which may hold a token.

use std::fmt;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Output kept per stream (stdout, stderr, HTTP body).
pub const OUTPUT_LIMIT: usize = 4096;

/// Environment variable holding the payload for command hooks.
pub const PAYLOAD_ENV: &str = "FERRY_HOOK_PAYLOAD";

/// In a TOML config: `{ command = "…" }` or `{ webhook = "https://…" }`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Hook {
    /// Run with `sh -c`; the payload arrives on stdin and in
    /// `FERRY_HOOK_PAYLOAD`. Exit status 0 is success.
    Command(String),
    /// POSTed the payload as JSON; a 2xx answer is success.
    Webhook(String),
}

// The URL may carry a token: logs and errors show only its host.
impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::Command(c) => f.debug_tuple("Command").field(c).finish(),
            Hook::Webhook(url) => {
                let host = reqwest::Url::parse(url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_default();
                write!(f, "Webhook(<{host}>)")
            }
        }
    }
}

/// What a hook is told about one user's cutover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payload {
    /// Always `"cutover"`.
    pub event: &'static str,
    /// The mailbox as the daemon names it.
    pub user: String,
    pub batch: String,
    pub source_address: String,
    pub destination_address: String,
    /// The cutover was forced past a failed or missing last pass.
    pub forced: bool,
}

impl Payload {
    pub fn cutover(
        user: &str,
        batch: &str,
        source_address: &str,
        destination_address: &str,
        forced: bool,
    ) -> Payload {
        Payload {
            event: "cutover",
            user: user.to_string(),
            batch: batch.to_string(),
            source_address: source_address.to_string(),
            destination_address: destination_address.to_string(),
            forced,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookOutcome {
    pub ok: bool,
    /// Exit status or HTTP status, then the (truncated) output.
    pub detail: String,
}

/// Runs `hook` for `payload`, giving up after `timeout` (a command is then
/// killed with its whole process group).
pub async fn run(hook: &Hook, payload: &Payload, timeout: Duration) -> HookOutcome {
    let body = serde_json::to_string(payload).expect("payload serializes");
    match hook {
        Hook::Command(cmd) => run_command(cmd, &body, timeout).await,
        Hook::Webhook(url) => run_webhook(url, body, timeout).await,
    }
}

/// `bytes` as text, cut at [`OUTPUT_LIMIT`] on a character boundary.
fn excerpt(bytes: &[u8], total: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut cut = text.len().min(OUTPUT_LIMIT);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut s = text[..cut].trim_end().to_string();
    if total > cut {
        s.push_str(&format!(" … ({total} bytes)"));
    }
    s
}

/// Reads a stream to its end, keeping the first [`OUTPUT_LIMIT`] bytes; the
/// rest is drained so the writer never blocks on a full pipe.
async fn capped<R: AsyncRead + Unpin>(mut r: R) -> (Vec<u8>, usize) {
    let mut kept = Vec::new();
    let mut total = 0;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, total)
}

async fn run_command(cmd: &str, body: &str, timeout: Duration) -> HookOutcome {
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(cmd)
        .env(PAYLOAD_ENV, body)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own group, so a timeout also ends what the shell started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return HookOutcome {
                ok: false,
                detail: format!("could not start sh: {e}"),
            };
        }
    };
    let pid = child.id();
    let stdin = child.stdin.take();
    let body = body.as_bytes().to_vec();
    // A command that ignores stdin closes it early; that is not a failure.
    let writer = tokio::spawn(async move {
        if let Some(mut s) = stdin {
            let _ = s.write_all(&body).await;
        }
    });
    let out = tokio::spawn(capped(child.stdout.take().expect("piped")));
    let err = tokio::spawn(capped(child.stderr.take().expect("piped")));

    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(s) => s.map_err(|e| e.to_string()),
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: kill(2) on the group this function created.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            let _ = child.wait().await;
            Err(format!(
                "timed out after {} s, killed",
                timeout.as_secs_f64()
            ))
        }
    };
    writer.abort();
    // A grandchild that left the group could hold the pipes open.
    let grace = Duration::from_secs(1);
    let (o, o_total) = tokio::time::timeout(grace, out)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let (e, e_total) = tokio::time::timeout(grace, err)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();

    let (ok, head) = match status {
        Ok(s) if s.success() => (true, "exit status 0".to_string()),
        Ok(s) => match s.code() {
            Some(c) => (false, format!("exit status {c}")),
            None => (false, format!("killed by {s}")),
        },
        Err(e) => (false, e),
    };
    let mut detail = head;
    if o_total > 0 {
        detail.push_str(&format!("; stdout: {}", excerpt(&o, o_total)));
    }
    if e_total > 0 {
        detail.push_str(&format!("; stderr: {}", excerpt(&e, e_total)));
    }
    HookOutcome { ok, detail }
}

async fn run_webhook(url: &str, body: String, timeout: Duration) -> HookOutcome {
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("mailferry/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return HookOutcome {
                ok: false,
                detail: format!("webhook client: {}", e.without_url()),
            };
        }
    };
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            let why = if e.is_timeout() {
                format!("timed out after {} s", timeout.as_secs_f64())
            } else {
                let mut causes = String::new();
                let mut src = std::error::Error::source(&e);
                while let Some(c) = src {
                    causes.push_str(&format!(": {c}"));
                    src = c.source();
                }
                // The URL may hold a token: never in the detail.
                format!("{}{causes}", e.without_url())
            };
            return HookOutcome {
                ok: false,
                detail: format!("webhook failed: {why}"),
            };
        }
    };
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap_or_default();
    let mut detail = format!("HTTP {}", status.as_u16());
    if !bytes.is_empty() {
        detail.push_str(&format!(": {}", excerpt(&bytes, bytes.len())));
    }
    HookOutcome {
        ok: status.is_success(),
        detail,
    }
}
