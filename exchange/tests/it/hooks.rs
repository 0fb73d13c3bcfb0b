//! Cutover hooks against a real shell and a real HTTP server on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_exchange::hooks::{self, Hook, Payload};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

fn payload() -> Payload {
    Payload::cutover(
        "sean.o'brien@source.example",
        "sales-q1",
        "sean.o'brien@source.example",
        "zoë@target.example",
        false,
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s:?}"))
}

#[tokio::test]
async fn command_gets_payload_on_stdin_and_env() {
    let tmp = tempfile::tempdir().unwrap();
    let stdin_copy = tmp.path().join("stdin.json");
    let cmd = format!(
        "cat > '{}'; printf '%s' \"$FERRY_HOOK_PAYLOAD\"; echo warn >&2",
        stdin_copy.display()
    );
    let out = hooks::run(&Hook::Command(cmd), &payload(), Duration::from_secs(10)).await;
    assert!(out.ok, "{}", out.detail);
    let (head, rest) = out.detail.split_once("; stdout: ").unwrap();
    assert_eq!(head, "exit status 0");
    let (env, err) = rest.split_once("; stderr: ").unwrap();
    assert_eq!(err, "warn");
    let want = serde_json::json!({
        "event": "cutover", "user": "sean.o'brien@source.example", "batch": "sales-q1",
        "source_address": "sean.o'brien@source.example",
        "destination_address": "zoë@target.example", "forced": false,
    });
    assert_eq!(json(env), want);
    assert_eq!(json(&std::fs::read_to_string(&stdin_copy).unwrap()), want);
}

#[tokio::test]
async fn failing_command_reports_status_and_output() {
    let out = hooks::run(
        &Hook::Command("echo 'no such group' >&2; exit 3".into()),
        &payload(),
        Duration::from_secs(10),
    )
    .await;
    assert!(!out.ok);
    assert_eq!(out.detail, "exit status 3; stderr: no such group");
}

#[tokio::test]
async fn long_output_is_truncated() {
    let out = hooks::run(
        &Hook::Command("head -c 100000 /dev/zero | tr '\\0' x".into()),
        &payload(),
        Duration::from_secs(10),
    )
    .await;
    assert!(out.ok, "{}", out.detail);
    assert!(
        out.detail.ends_with(" … (100000 bytes)"),
        "{}",
        &out.detail[out.detail.len() - 40..]
    );
    assert!(out.detail.len() < hooks::OUTPUT_LIMIT + 100);
}

#[tokio::test]
async fn slow_command_is_killed_with_its_children() {
    let start = Instant::now();
    // The background sleep holds stdout open: only killing the group ends it.
    let out = hooks::run(
        &Hook::Command("echo started; sleep 30 & sleep 30".into()),
        &payload(),
        Duration::from_secs(2),
    )
    .await;
    assert!(!out.ok);
    assert_eq!(out.detail, "timed out after 2 s, killed; stdout: started");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
}

/// A one-route HTTP server on 127.0.0.1 that records what it receives.
async fn server(
    status: u16,
    delay: Duration,
) -> (String, Arc<Mutex<Vec<(String, String, Bytes)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move {
                        let ct = req
                            .headers()
                            .get("content-type")
                            .map(|v| v.to_str().unwrap().to_string())
                            .unwrap_or_default();
                        let path = req.uri().to_string();
                        let body = req.into_body().collect().await?.to_bytes();
                        log.lock().unwrap().push((path, ct, body));
                        tokio::time::sleep(delay).await;
                        Ok::<_, hyper::Error>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"recorded")))
                                .unwrap(),
                        )
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn webhook_receives_payload() {
    let (base, seen) = server(200, Duration::ZERO).await;
    let url = format!("{base}/hook?token=s3cret");
    let out = hooks::run(&Hook::Webhook(url), &payload(), Duration::from_secs(10)).await;
    assert!(out.ok, "{}", out.detail);
    assert_eq!(out.detail, "HTTP 200: recorded");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "/hook?token=s3cret");
    assert_eq!(seen[0].1, "application/json");
    let body = json(std::str::from_utf8(&seen[0].2).unwrap());
    assert_eq!(body["event"], "cutover");
    assert_eq!(body["destination_address"], "zoë@target.example");
}

#[tokio::test]
async fn webhook_errors_never_show_the_url() {
    let (base, _) = server(503, Duration::ZERO).await;
    let out = hooks::run(
        &Hook::Webhook(format!("{base}/hook?token=s3cret")),
        &payload(),
        Duration::from_secs(10),
    )
    .await;
    assert!(!out.ok);
    assert_eq!(out.detail, "HTTP 503: recorded");

    let (slow, _) = server(200, Duration::from_secs(30)).await;
    let out = hooks::run(
        &Hook::Webhook(format!("{slow}/hook?token=s3cret")),
        &payload(),
        Duration::from_millis(300),
    )
    .await;
    assert!(!out.ok);
    assert_eq!(out.detail, "webhook failed: timed out after 0.3 s");

    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = hooks::run(
        &Hook::Webhook(format!("http://127.0.0.1:{port}/hook?token=s3cret")),
        &payload(),
        Duration::from_secs(5),
    )
    .await;
    assert!(!out.ok);
    assert!(out.detail.starts_with("webhook failed: "), "{}", out.detail);
    assert!(!out.detail.contains("s3cret"), "{}", out.detail);
}

#[test]
fn hook_from_config_and_debug_hides_the_url() {
    #[derive(serde::Deserialize)]
    struct Conf {
        hook: Hook,
    }
    let c: Conf =
        toml::from_str("hook = { webhook = \"https://hooks.example/t/s3cret\" }").unwrap();
    assert_eq!(
        c.hook,
        Hook::Webhook("https://hooks.example/t/s3cret".into())
    );
    assert_eq!(format!("{:?}", c.hook), "Webhook(<hooks.example>)");
    let c: Conf = toml::from_str("hook = { command = \"/usr/local/bin/notify\" }").unwrap();
    assert_eq!(c.hook, Hook::Command("/usr/local/bin/notify".into()));
    assert!(toml::from_str::<Conf>("hook = { script = \"x\" }").is_err());
}
