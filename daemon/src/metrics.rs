//! `GET /metrics` in Prometheus text format, on a loopback HTTP port
//! (`[metrics] listen`). Values come from the views and the log head; the
//! page is built per scrape, so there is nothing to keep in step.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::app::App;
use crate::shutdown::Shutdown;

#[derive(Debug, thiserror::Error)]
#[error("metrics listener on {addr}: {source}")]
pub struct MetricsError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError { addr, source })
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// The page for one scrape.
pub fn render(app: &App) -> String {
    let head = app.store.head();
    let views = app.views.read().unwrap();
    let running = views
        .batches
        .values()
        .filter(|b| b.running_pass().is_some())
        .count() as u64;
    let s = &views.stats;
    let mut out = String::new();
    metric(
        &mut out,
        "ferry_passes_running",
        "gauge",
        "Batch passes running now.",
        &[(String::new(), running)],
    );
    metric(
        &mut out,
        "ferry_items_copied_total",
        "counter",
        "Items copied to a destination, over the whole log.",
        &[(String::new(), s.items_copied)],
    );
    metric(
        &mut out,
        "ferry_bytes_copied_total",
        "counter",
        "Bytes of items copied, over the whole log.",
        &[(String::new(), s.bytes_copied)],
    );
    metric(
        &mut out,
        "ferry_items_skipped_total",
        "counter",
        "Items skipped with a recorded reason, over the whole log.",
        &[(String::new(), s.items_skipped)],
    );
    let errors: Vec<(String, u64)> = s
        .errors_by_class
        .iter()
        .map(|(c, n)| (format!("{{class=\"{}\"}}", label(c)), *n))
        .collect();
    metric(
        &mut out,
        "ferry_errors_total",
        "counter",
        "Failed item attempts, by error class.",
        &errors,
    );
    metric(
        &mut out,
        "ferry_event_log_head",
        "gauge",
        "Sequence of the last durable event.",
        &[(String::new(), head)],
    );
    metric(
        &mut out,
        "ferry_event_log_truncated_bytes",
        "gauge",
        "Bytes of a torn, unacknowledged last write cut off the log when it was opened.",
        &[(
            String::new(),
            app.segments
                .as_ref()
                .map_or(0, |s| s.recovery().truncated_bytes),
        )],
    );
    metric(
        &mut out,
        "ferry_projection_lag_events",
        "gauge",
        "Events in the log not yet folded into the views.",
        &[(String::new(), head.saturating_sub(views.head))],
    );
    let budgets = app.graph.budgets().states();
    let sample = |f: &dyn Fn(&ferry_graph::BudgetState) -> u64| -> Vec<(String, u64)> {
        budgets
            .iter()
            .map(|((mailbox, client), st)| {
                let l = format!(
                    "{{mailbox=\"{}\",application=\"{}\"}}",
                    label(mailbox),
                    label(client)
                );
                (l, f(st))
            })
            .collect()
    };
    metric(
        &mut out,
        "ferry_destination_throttled_seconds_last_hour",
        "gauge",
        "Seconds a Graph destination mailbox was throttled by the destination in the last hour.",
        &sample(&|st| st.throttled_last_hour.as_secs()),
    );
    metric(
        &mut out,
        "ferry_destination_requests_in_window",
        "gauge",
        "Requests to a Graph destination mailbox within its budget's window.",
        &sample(&|st| st.requests_in_window),
    );
    let now = ferry_events::time::now_us();
    let fires: Vec<(String, u64)> = views
        .batches
        .values()
        .filter_map(|b| {
            let t = crate::cron::next_fire(b, now)?;
            Some((
                format!("{{batch=\"{}\"}}", label(&b.name)),
                (t / 1_000_000) as u64,
            ))
        })
        .collect();
    metric(
        &mut out,
        "ferry_next_scheduled_fire_timestamp_seconds",
        "gauge",
        "Unix time of each scheduled batch's next delta fire.",
        &fires,
    );
    out
}

fn reply(status: u16, content_type: &str, body: String) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("valid response parts")
}

/// Serves scrapes until `shutdown` turns true.
pub async fn serve(app: Arc<App>, listener: TcpListener, mut shutdown: Shutdown) {
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move {
                    let resp = match (req.method(), req.uri().path()) {
                        (&http::Method::GET, "/metrics") => reply(
                            200,
                            "text/plain; version=0.0.4; charset=utf-8",
                            render(&app),
                        ),
                        (&http::Method::GET, _) => reply(404, "text/plain", "not found\n".into()),
                        _ => reply(405, "text/plain", "only GET is served\n".into()),
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}
