//! Sending a pass summary: a JSON POST to a webhook, or an email over SMTP.

use std::time::Duration;

use ferry_events::NotifyChannel;
use ferry_projections::OwedNotice;

use super::PassSummary;
use crate::app::App;
use crate::config::{NotifyConfig, SmtpTls};

#[derive(Debug)]
pub(super) struct Failure {
    pub(super) reason: String,
    /// Whether another attempt could succeed (not a refused address).
    pub(super) retriable: bool,
}

impl Failure {
    pub(super) fn retry(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            retriable: true,
        }
    }
    fn fatal(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            retriable: false,
        }
    }
}

pub(super) async fn send(
    app: &App,
    cfg: &NotifyConfig,
    n: &OwedNotice,
    summary: &PassSummary,
) -> Result<(), Failure> {
    match n.channel {
        NotifyChannel::Webhook => {
            let Some(secret) = &n.webhook else {
                return Err(Failure::fatal("no webhook URL recorded"));
            };
            let url = app
                .secrets
                .get(secret)
                .map_err(|e| Failure::fatal(format!("webhook URL: {e}")))?;
            post(cfg, &url, summary).await
        }
        NotifyChannel::Email => email(cfg, &n.target, summary).await,
    }
}

async fn post(cfg: &NotifyConfig, url: &str, summary: &PassSummary) -> Result<(), Failure> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(cfg.timeout_s.max(1)))
        .user_agent(concat!("mailferry/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Failure::fatal(format!("HTTP client: {e}")))?;
    let answer = client
        .post(url)
        .json(summary)
        .send()
        .await
        // Without the URL: it may carry a token.
        .map_err(|e| Failure::retry(one_line(&e.without_url())))?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure::retry(format!("HTTP {status}")))
    }
}

async fn email(cfg: &NotifyConfig, to: &str, summary: &PassSummary) -> Result<(), Failure> {
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let Some(host) = &cfg.smtp_host else {
        return Err(Failure::fatal(
            "no SMTP server configured ([notify] smtp_host)",
        ));
    };
    let message = Message::builder()
        .from(
            cfg.from
                .parse()
                .map_err(|e| Failure::fatal(format!("[notify] from {:?}: {e}", cfg.from)))?,
        )
        .to(to
            .parse()
            .map_err(|e| Failure::fatal(format!("address {to:?}: {e}")))?)
        .subject(summary.subject())
        .header(ContentType::TEXT_PLAIN)
        .body(summary.text())
        .map_err(|e| Failure::fatal(format!("message: {e}")))?;
    let builder = match cfg.tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
            .map_err(|e| Failure::fatal(format!("SMTP TLS: {e}")))?,
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
            .map_err(|e| Failure::fatal(format!("SMTP TLS: {e}")))?,
    };
    let mut builder = builder
        .port(cfg.smtp_port)
        .timeout(Some(Duration::from_secs(cfg.timeout_s.max(1))));
    if let Some(user) = &cfg.user {
        let password = match &cfg.password_file {
            Some(f) => std::fs::read_to_string(f)
                .map_err(|e| Failure::fatal(format!("[notify] password_file: {e}")))?
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
            None => String::new(),
        };
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    match builder.build().send(message).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => Err(Failure::fatal(format!("SMTP: {}", one_line(&e)))),
        Err(e) => Err(Failure::retry(format!("SMTP: {}", one_line(&e)))),
    }
}

/// An error and its causes on one line.
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    ferry_api::one_line(std::iter::successors(Some(e), |e| e.source()))
}

/// Checks a webhook URL and returns what may be shown of it: scheme, host
/// and port; never its path (Slack, Teams and Discord put the token there),
/// query or user info.
pub fn webhook_shown(url: &str) -> Result<String, String> {
    let u = reqwest::Url::parse(url.trim()).map_err(|e| format!("--webhook is not a URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "--webhook must be an http or https URL, not {}:",
            u.scheme()
        ));
    }
    let Some(host) = u.host_str() else {
        return Err("--webhook has no host".into());
    };
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!("{}://{host}{port}", u.scheme()))
}

#[cfg(test)]
mod tests {
    use super::webhook_shown;

    #[test]
    fn shown_webhook_drops_tokens() {
        assert_eq!(
            webhook_shown("https://bob:s3cret@hooks.example:8443/t/x?token=abc#f").unwrap(),
            "https://hooks.example:8443"
        );
        assert_eq!(
            webhook_shown("https://hooks.slack.com/services/T0/B0/XyZsecret").unwrap(),
            "https://hooks.slack.com"
        );
        assert_eq!(
            webhook_shown("http://127.0.0.1/").unwrap(),
            "http://127.0.0.1"
        );
        assert!(
            webhook_shown("ftp://x/")
                .unwrap_err()
                .contains("http or https")
        );
        assert!(webhook_shown("not a url").is_err());
    }
}
