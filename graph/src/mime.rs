//! A MIME message (from an IMAP, Maildir or EWS source) read into the JSON
//! create of a received message: what Graph's JSON path keeps of it. The
//! headers are rebuilt by Exchange from these fields; the bytes are not
//! kept (the import API is the path that keeps an item whole).

use mail_parser::{MessageParser, MimeHeaders, PartType};

use crate::model::{Address, NewAttachment, NewMessage};
use crate::{Error, Result};

fn addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<Address> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| {
                Some(Address {
                    name: x.name.as_deref().unwrap_or("").to_string(),
                    address: x.address.as_deref()?.to_string(),
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

impl NewMessage {
    /// The subject, addresses, Message-ID, sent time, body (the HTML part
    /// where there is one, else the text) and attachments (inline ones with
    /// their content id) of `mime`; `received` is the source's delivery
    /// time (an IMAP INTERNALDATE). Read state, flag, categories and the
    /// origin are the caller's to set.
    pub fn from_mime(mime: &[u8], received: chrono::DateTime<chrono::Utc>) -> Result<NewMessage> {
        let m = MessageParser::default()
            .parse(mime)
            .ok_or_else(|| Error::Invalid("the message is not MIME".into()))?;
        let has_html = m.parts.iter().any(|p| matches!(p.body, PartType::Html(_)));
        let body = if has_html {
            m.body_html(0)
        } else {
            m.body_text(0)
        };
        let attachments = m
            .attachments()
            .map(|p| NewAttachment {
                name: p.attachment_name().unwrap_or("attachment").to_string(),
                content_type: p
                    .content_type()
                    .map(|c| match c.subtype() {
                        Some(s) => format!("{}/{s}", c.ctype()),
                        None => c.ctype().to_string(),
                    })
                    .unwrap_or_else(|| "application/octet-stream".into()),
                content: p.contents().to_vec(),
                content_id: p
                    .content_id()
                    .filter(|_| {
                        p.content_disposition()
                            .is_none_or(|d| d.ctype() == "inline")
                    })
                    .map(|c| c.trim_matches(['<', '>']).to_string()),
            })
            .collect();
        let sent = m
            .date()
            .and_then(|d| chrono::DateTime::from_timestamp(d.to_timestamp(), 0));
        Ok(NewMessage {
            subject: m.subject().unwrap_or("").to_string(),
            body: body.map(|b| b.into_owned()).unwrap_or_default(),
            body_is_html: has_html,
            from: addresses(m.from()).into_iter().next(),
            to: addresses(m.to()),
            cc: addresses(m.cc()),
            bcc: addresses(m.bcc()),
            reply_to: addresses(m.reply_to()),
            internet_message_id: m.message_id().map(|id| format!("<{id}>")),
            received,
            sent,
            attachments,
            ..Default::default()
        })
    }

    /// Read state, flag and categories from IMAP flags and keywords:
    /// `\Seen`, `\Flagged`, and each keyword that is not a system flag.
    pub fn with_imap_flags<S: AsRef<str>>(mut self, flags: &[S]) -> NewMessage {
        for f in flags {
            let f = f.as_ref();
            if f.eq_ignore_ascii_case("\\Seen") {
                self.is_read = true;
            } else if f.eq_ignore_ascii_case("\\Flagged") {
                self.flagged = true;
            } else if !f.starts_with('\\') && !f.starts_with('$') {
                self.categories.push(f.to_string());
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIME: &[u8] = b"From: \"Bob B\" <bob@fabrikam.example>\r\n\
To: ann@contoso.example, \"Cy\" <cy@contoso.example>\r\n\
Cc: dee@contoso.example\r\n\
Subject: =?utf-8?q?caf=C3=A9?=\r\n\
Message-ID: <m1@fabrikam.example>\r\n\
Date: Sat, 4 Mar 2023 05:06:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b1\r\n\
\r\n\
--b1\r\n\
Content-Type: multipart/alternative; boundary=b2\r\n\
\r\n\
--b2\r\n\
Content-Type: text/plain\r\n\
\r\n\
plain\r\n\
--b2\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>rich</p>\r\n\
--b2--\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"r.pdf\"\r\n\
Content-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0=\r\n\
--b1--\r\n";

    #[test]
    fn a_mime_message_becomes_a_json_create() {
        let received = chrono::DateTime::parse_from_rfc3339("2023-03-04T05:07:00Z")
            .unwrap()
            .into();
        let m = NewMessage::from_mime(MIME, received)
            .unwrap()
            .with_imap_flags(&["\\Seen", "\\Answered", "Project X", "$Junk"]);
        assert_eq!(m.subject, "café");
        assert_eq!(m.from.as_ref().unwrap().address, "bob@fabrikam.example");
        assert_eq!(m.from.as_ref().unwrap().name, "Bob B");
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.cc[0].address, "dee@contoso.example");
        assert_eq!(
            m.internet_message_id.as_deref(),
            Some("<m1@fabrikam.example>")
        );
        assert!(m.body_is_html && m.body.contains("<p>rich</p>"));
        assert_eq!(m.sent.unwrap().to_rfc3339(), "2023-03-04T05:06:00+00:00");
        assert_eq!(m.received, received);
        assert_eq!(m.attachments.len(), 1);
        assert_eq!(m.attachments[0].name, "r.pdf");
        assert_eq!(m.attachments[0].content_type, "application/pdf");
        assert_eq!(m.attachments[0].content, b"%PDF-");
        assert!(m.is_read && !m.flagged);
        assert_eq!(m.categories, vec!["Project X".to_string()]);
    }

    #[test]
    fn bytes_that_are_not_mime_are_refused() {
        assert!(NewMessage::from_mime(b"", chrono::Utc::now()).is_err());
    }
}
