//! The control API shared by `ferryd` and `ferryctl`.
//!
//! - [`wire`]: [`Request`] and [`Response`], JSON over HTTP/1.1 on a Unix socket;
//! - [`client`]: one request, one answer, with typed errors;
//! - [`audit`]: the export query, record format and writer;
//! - [`report`]: a batch's report data.

pub mod audit;
pub mod client;
pub mod report;
pub mod wire;

pub use client::{Client, ClientError};
pub use wire::{ApiError, ErrorCode, Request, Response};

/// Where ferryd listens when neither `--socket` nor `FERRY_SOCKET` says.
pub fn default_socket() -> std::path::PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => std::path::Path::new(&dir).join("ferryd.sock"),
        None => "/run/ferryd/ferryd.sock".into(),
    }
}

/// `text` safe to print on a terminal: control characters other than line
/// breaks and tabs, and the bidirectional overrides, are shown escaped
/// (`\u{1b}`), so a server's answer or a folder's name cannot move the
/// cursor, recolour or rewrite what an administrator reads.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// An error and its causes on one line, each cause once: our errors often
/// name their cause in their own message already.
pub fn one_line<'a>(chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut out = String::new();
    for cause in chain {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.replace(['\n', '\r'], " ")
}
