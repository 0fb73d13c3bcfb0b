//! Pass reports: a webhook received by a local HTTP server and an email
//! received by a real OpenSMTPD, both on 127.0.0.1, after passes between two
//! real Dovecot servers; retries, a hanging webhook, and a restart.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_tests::Ferryd;
use ferry_tests::sample::{self, SampleSpec};
use ferry_testservers::{Dovecot, Smtpd};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;

const PW: &str = "pässword-1";
const TOKEN: &str = "tok-7f3a9c1e55";

/// How the webhook server answers one request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16),
    /// Holds the request open this long, then answers 200.
    Hang(Duration),
}

#[derive(Debug, Clone)]
struct Got {
    uri: String,
    content_type: String,
    body: Value,
}

/// An HTTP/1.1 server on 127.0.0.1 (its own thread and runtime) recording
/// every request as it arrives, answering by plan, then 200.
struct Hook {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hook {
    fn start(plan: Vec<Answer>) -> Hook {
        Hook::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), plan)
    }

    fn start_on(listener: TcpListener, plan: Vec<Answer>) -> Hook {
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let plan = Arc::new(Mutex::new(VecDeque::from(plan)));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let recorded = got.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let stream = tokio::select! {
                        s = listener.accept() => s.unwrap().0,
                        _ = &mut rx => break,
                    };
                    let got = recorded.clone();
                    let plan = plan.clone();
                    let service = hyper::service::service_fn(move |req| {
                        let got = got.clone();
                        let plan = plan.clone();
                        async move { answer(req, got, plan).await }
                    });
                    tokio::spawn(async move {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    });
                }
            });
        });
        Hook {
            port,
            got,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/ferry?token={TOKEN}", self.port)
    }

    fn shown(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn received(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn wait_for(&self, n: usize, limit: Duration) -> Vec<Got> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    got: Arc<Mutex<Vec<Got>>>,
    plan: Arc<Mutex<VecDeque<Answer>>>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let uri = req.uri().to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    got.lock().unwrap().push(Got {
        uri,
        content_type,
        body,
    });
    let next = plan.lock().unwrap().pop_front();
    let status = match next {
        Some(Answer::Status(s)) => s,
        Some(Answer::Hang(d)) => {
            tokio::time::sleep(d).await;
            200
        }
        None => 200,
    };
    Ok(hyper::Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap())
}

struct Setup {
    src: Dovecot,
    _dst: Dovecot,
    ferry: Ferryd,
}

/// Two Dovecot servers with user anna, ferryd (with `config`) and batch wave1.
fn setup(config: &str) -> Setup {
    let src = Dovecot::start().unwrap();
    let dst = Dovecot::start().unwrap();
    src.add_user("anna", PW).unwrap();
    dst.add_user("anna", PW).unwrap();
    let ferry = Ferryd::start_with_config(config);
    ferry.add_imap_endpoint("old", src.port(), src.master_user());
    ferry.add_imap_endpoint("new", dst.port(), dst.master_user());
    ferry.create_batch("wave1", "old", "new", &["anna"], &[]);
    Setup {
        src,
        _dst: dst,
        ferry,
    }
}

async fn fill(d: &Dovecot, messages: usize) {
    let mut s = ferry_tests::imap_login(d.port(), "anna", PW).await;
    sample::fill(
        &mut s,
        &SampleSpec {
            seed: 11,
            messages,
            attachment_percent: 0,
            huge: 0,
        },
    )
    .await
    .unwrap();
}

fn events(f: &Ferryd, kind: &str) -> Vec<Value> {
    f.ctl_ok(&["--json", "events"])
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["event_type"] == kind)
        .map(|e| e["event"][kind].clone())
        .collect()
}

/// Polls the log until `ok` holds for the events of `kind`, or panics.
fn wait_events(
    f: &Ferryd,
    kind: &str,
    limit: Duration,
    ok: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let e = events(f, kind);
        if ok(&e) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "no {kind} as expected within {limit:?}: {e:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run_full(f: &Ferryd) {
    f.ctl_ok(&["batch", "start", "wave1", "--pass", "full"]);
    f.ctl_ok(&["batch", "wait", "wave1", "--timeout", "300"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_is_reported_by_webhook_and_by_email() {
    let smtp = Smtpd::start().unwrap();
    let s = setup(&format!(
        "[notify]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"none\"\n\
         from = \"ferry@ferry.test\"\nbackoff_ms = 100\n",
        smtp.port()
    ));
    fill(&s.src, 25).await;
    let hook = Hook::start(vec![]);
    let f = &s.ferry;

    // Bad targets are refused with one line, and nothing is recorded.
    let head = f.head();
    let err = f.ctl_err(&["batch", "notify", "wave1", "--email", "not-an-address"]);
    assert!(err.contains("not a mail address"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let err = f.ctl_err(&["batch", "notify", "wave1", "--webhook", "ftp://127.0.0.1/x"]);
    assert!(err.contains("http or https"), "{err}");
    let err = f.ctl_err(&["batch", "notify", "nope", "--email", "ops@example.org"]);
    assert!(err.contains("no batch named"), "{err}");
    let err = f.ctl_err(&["batch", "notify", "wave1"]);
    assert!(err.contains("--email"), "{err}");
    assert_eq!(f.head(), head);

    f.ctl_ok(&[
        "batch",
        "notify",
        "wave1",
        "--email",
        "ops@example.org",
        "--email",
        "Lead@Example.org",
        "--webhook",
        &hook.url(),
    ]);
    let b = f.ctl_json(&["batch", "show", "wave1"]);
    assert_eq!(b["data"]["notify"]["webhook_shown"], hook.shown());
    assert_eq!(b["data"]["notify"]["emails"].as_array().unwrap().len(), 2);
    let shown = f.ctl_ok(&["batch", "show", "wave1"]);
    assert!(
        shown.contains(&format!(
            "notify: ops@example.org, Lead@Example.org, {}",
            hook.shown()
        )),
        "{shown}"
    );

    run_full(f);

    let got = hook.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1, "one webhook call");
    // The real URL (with its token) was called; the body is the report.
    assert_eq!(got[0].uri, format!("/hooks/ferry?token={TOKEN}"));
    assert!(got[0].content_type.starts_with("application/json"));
    let r = &got[0].body;
    assert_eq!(r["batch"], "wave1");
    assert_eq!(r["pass"], "full");
    assert_eq!(r["outcome"], "Succeeded");
    assert_eq!(r["mailboxes"], 1);
    assert_eq!(r["copied"], 25);
    assert_eq!(r["failed"], 0);
    assert!(r["bytes"].as_u64().unwrap() > 0);
    assert_eq!(r["mailboxes_with_errors"], Value::Array(vec![]));
    let finished = events(f, "PassFinished");
    assert_eq!(r["pass_id"], finished[0]["pass_id"]);
    assert!(r["started"].as_str().unwrap() <= r["finished"].as_str().unwrap());

    let mails = smtp.wait_for_messages(2, Duration::from_secs(30)).unwrap();
    assert_eq!(
        mails.len(),
        2,
        "one email per address; smtpd log:\n{}",
        smtp.log()
    );
    // Sent concurrently: delivered in either order.
    let mut to: Vec<String> = Vec::new();
    for m in &mails {
        let m = m.replace("\r\n", "\n");
        assert!(
            m.contains("Subject: [mailferry] batch wave1: full pass Succeeded"),
            "{m}"
        );
        assert!(m.contains("From: ferry@ferry.test"), "{m}");
        assert!(m.contains("Copied:      25 items"), "{m}");
        assert!(m.contains("Outcome:     Succeeded"), "{m}");
        let line = m
            .lines()
            .find(|l| l.starts_with("To: "))
            .expect("a To header");
        to.push(line["To: ".len()..].trim().to_string());
    }
    to.sort();
    assert_eq!(to, ["Lead@Example.org", "ops@example.org"]);

    let sent = wait_events(f, "NotificationSent", Duration::from_secs(10), |e| {
        e.len() == 3
    });
    let mut targets: Vec<&str> = sent.iter().map(|e| e["target"].as_str().unwrap()).collect();
    targets.sort();
    let shown = hook.shown();
    let mut want = vec!["Lead@Example.org", "ops@example.org", shown.as_str()];
    want.sort();
    assert_eq!(targets, want);
    assert!(sent.iter().all(|e| e["attempt"] == 1));
    assert!(events(f, "NotificationFailed").is_empty());

    // The token is in neither the log nor an export.
    assert!(!f.ctl_ok(&["--json", "events"]).contains(TOKEN));
    let export = f.dir().join("audit.jsonl");
    f.ctl_ok(&["audit", "export", "-o", export.to_str().unwrap()]);
    assert!(!std::fs::read_to_string(&export).unwrap().contains(TOKEN));

    // Targets can be cleared: the next pass is reported to no one.
    f.ctl_ok(&["batch", "notify", "wave1", "--clear"]);
    run_full(f);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(hook.received().len(), 1);
    assert_eq!(events(f, "NotificationSent").len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_retried_and_a_hanging_one_never_holds_the_pass() {
    // First call hangs past the attempt's time limit, second gets a 500.
    let hook = Hook::start(vec![
        Answer::Hang(Duration::from_secs(30)),
        Answer::Status(500),
    ]);
    let s = setup("[notify]\ntimeout_s = 4\nbackoff_ms = 200\nattempts = 5\n");
    fill(&s.src, 10).await;
    let f = &s.ferry;
    f.ctl_ok(&["batch", "notify", "wave1", "--webhook", &hook.url()]);

    run_full(f);
    // The pass is over while its report is still waiting for an answer.
    let finished = events(f, "PassFinished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["outcome"], "Succeeded");
    assert_eq!(hook.wait_for(1, Duration::from_secs(10)).len(), 1);
    assert!(events(f, "NotificationSent").is_empty());
    assert!(events(f, "NotificationFailed").is_empty());

    let sent = wait_events(f, "NotificationSent", Duration::from_secs(60), |e| {
        !e.is_empty()
    });
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["attempt"], 3);
    assert_eq!(sent[0]["channel"], "Webhook");
    assert_eq!(sent[0]["target"], hook.shown());
    let failed = events(f, "NotificationFailed");
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[0]["attempt"], 1);
    assert_eq!(failed[0]["retry"], true);
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no answer within 4s")
            || failed[0]["reason"].as_str().unwrap().contains("timed out"),
        "{failed:?}"
    );
    assert_eq!(failed[1]["attempt"], 2);
    assert_eq!(failed[1]["retry"], true);
    assert!(
        failed[1]["reason"].as_str().unwrap().contains("HTTP 500"),
        "{failed:?}"
    );
    assert!(!failed[0]["reason"].as_str().unwrap().contains(TOKEN));
    assert_eq!(hook.received().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_owed_at_a_crash_is_sent_once_after_the_restart() {
    // Nothing listens on the webhook's port yet: every attempt is refused.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut s =
        setup("[notify]\ntimeout_s = 3\nbackoff_ms = 300\nmax_backoff_ms = 600\nattempts = 100\n");
    fill(&s.src, 5).await;
    let url = format!("http://127.0.0.1:{port}/hooks/ferry?token={TOKEN}");
    s.ferry
        .ctl_ok(&["batch", "notify", "wave1", "--webhook", &url]);
    run_full(&s.ferry);
    let failed = wait_events(
        &s.ferry,
        "NotificationFailed",
        Duration::from_secs(30),
        |e| e.len() >= 2,
    );
    assert!(failed.iter().all(|e| e["retry"] == true), "{failed:?}");

    s.ferry.kill();
    let hook = Hook::start_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), vec![]);
    s.ferry.launch();
    let got = hook.wait_for(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["batch"], "wave1");
    assert_eq!(got[0].body["copied"], 5);
    let sent = wait_events(&s.ferry, "NotificationSent", Duration::from_secs(10), |e| {
        !e.is_empty()
    });
    assert_eq!(sent.len(), 1);
    let failed = events(&s.ferry, "NotificationFailed").len() as u64;
    assert_eq!(
        sent[0]["attempt"].as_u64().unwrap(),
        failed + 1,
        "attempts count on"
    );

    // Another restart sends nothing again.
    s.ferry.restart();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(hook.received().len(), 1);
    assert_eq!(events(&s.ferry, "NotificationSent").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_given_up_after_their_attempts_and_not_tried_again() {
    // Neither the webhook nor the SMTP server answers.
    let closed = || {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (hook_port, smtp_port) = (closed(), closed());
    let s = setup(&format!(
        "[notify]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\ntls = \"none\"\n\
         attempts = 2\nbackoff_ms = 100\ntimeout_s = 3\n"
    ));
    fill(&s.src, 3).await;
    let mut f = s.ferry;
    let url = format!("http://127.0.0.1:{hook_port}/h?token={TOKEN}");
    f.ctl_ok(&[
        "batch",
        "notify",
        "wave1",
        "--webhook",
        &url,
        "--email",
        "ops@example.org",
    ]);
    run_full(&f);
    let failed = wait_events(&f, "NotificationFailed", Duration::from_secs(30), |e| {
        e.len() >= 4
    });
    for channel in ["Webhook", "Email"] {
        let mine: Vec<&Value> = failed.iter().filter(|e| e["channel"] == channel).collect();
        assert_eq!(mine.len(), 2, "{failed:?}");
        assert_eq!(
            (&mine[0]["attempt"], &mine[0]["retry"]),
            (&1.into(), &true.into())
        );
        assert_eq!(
            (&mine[1]["attempt"], &mine[1]["retry"]),
            (&2.into(), &false.into())
        );
    }
    let email = failed.iter().find(|e| e["channel"] == "Email").unwrap();
    assert!(
        email["reason"].as_str().unwrap().starts_with("SMTP"),
        "{email}"
    );
    assert!(!f.ctl_ok(&["--json", "events"]).contains(TOKEN));

    // Given up is final: a restart makes no new attempt.
    f.restart();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(events(&f, "NotificationFailed").len(), 4);
    assert!(events(&f, "NotificationSent").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_adopts_reports_adopted_items_apart_from_copies() {
    let s = setup("");
    fill(&s.src, 12).await;
    let f = &s.ferry;
    run_full(f);
    // The batch recreated over a destination that holds the mail.
    f.ctl_ok(&["batch", "delete", "wave1"]);
    f.create_batch("wave1", "old", "new", &["anna"], &[]);
    let hook = Hook::start(vec![]);
    f.ctl_ok(&["batch", "notify", "wave1", "--webhook", &hook.url()]);
    run_full(f);

    let got = hook.wait_for(1, Duration::from_secs(30));
    let r = &got[0].body;
    assert_eq!(
        (&r["copied"], &r["adopted"]),
        (&Value::from(0), &Value::from(12)),
        "{r}"
    );
    let b = f.ctl_json(&["batch", "show", "wave1"]);
    let counts = &b["data"]["passes"][0]["counts"];
    assert_eq!(
        (&counts["copied"], &counts["adopted"]),
        (&Value::from(0), &Value::from(12)),
        "{b}"
    );
    let shown = f.ctl_ok(&["batch", "show", "wave1"]);
    assert!(shown.contains("adopted"), "{shown}");

    let out = f.dir().join("report.html");
    f.ctl_ok(&["report", "wave1", "-o", out.to_str().unwrap()]);
    let html = std::fs::read_to_string(out).unwrap();
    assert!(html.contains("<th>adopted</th>"), "{html}");
    assert!(
        html.contains("0 were copied, 12 found already at the destination (adopted)"),
        "{html}"
    );
    // The passes table: copied 0, adopted 12.
    assert!(
        html.contains("<td class=\"n\">0</td><td class=\"n\">12</td><td class=\"n\">0</td><td class=\"n\">0</td></tr>"),
        "{html}"
    );
}
