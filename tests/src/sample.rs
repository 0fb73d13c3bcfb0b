//! Generated mailboxes for demos, tests and benchmarks.
//!
//! Deterministic from a seed: the same seed gives the same bytes. The mix
//! follows what real mailboxes hold: most messages small, about one in ten
//! with an attachment of 0.1–2 MB, and (when asked) a few of 10 MB; nested
//! and non-ASCII folder names, keywords, messages without a Message-ID,
//! repeated Message-IDs and raw 8-bit headers.

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use rand::{Rng as _, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use ferry_connectors::{FolderName, MailSession, Result};

/// What to generate for one mailbox.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    pub seed: u64,
    pub messages: usize,
    /// Share of messages with a 0.1–2 MB attachment, in percent.
    pub attachment_percent: u32,
    /// How many 10 MB messages to include.
    pub huge: usize,
}

impl Default for SampleSpec {
    fn default() -> Self {
        SampleSpec {
            seed: 1,
            messages: 200,
            attachment_percent: 10,
            huge: 0,
        }
    }
}

/// Folders every generated mailbox has, as path segments.
pub fn folders() -> Vec<Vec<String>> {
    [
        vec!["INBOX"],
        vec!["Sent"],
        vec!["Archive"],
        vec!["Archive", "2024"],
        vec!["Archive", "2024", "Février"],
        vec!["Projets été"],
        vec!["日本語"],
        vec!["Empty"],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect()
}

/// Seeded so the same spec always gives the same bytes.
struct Rng(ChaCha8Rng);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n.max(1))
    }
}

/// One generated message.
pub struct Sample {
    pub folder: usize,
    pub flags: Vec<String>,
    pub date: DateTime<FixedOffset>,
    pub body: Bytes,
}

const WORDS: &[&str] = &[
    "migration",
    "mailbox",
    "réunion",
    "budget",
    "planning",
    "straße",
    "quarterly",
    "report",
    "invoice",
    "delta",
    "cutover",
    "schedule",
    "naïve",
    "café",
    "team",
    "project",
    "review",
];

fn text(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 16);
    let mut line = 0;
    while s.len() < bytes {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        s.push_str(w);
        line += w.len() + 1;
        if line > 70 {
            s.push_str("\r\n");
            line = 0;
        } else {
            s.push(' ');
        }
    }
    s.push_str("\r\n");
    s
}

fn base64_block(rng: &mut Rng, bytes: usize) -> String {
    const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes + bytes / 76 * 2 + 2);
    let mut n = 0;
    while n < bytes {
        let mut v = rng.next();
        for _ in 0..10 {
            out.push(ALPHA[(v & 63) as usize] as char);
            v >>= 6;
        }
        n += 10;
        if n % 76 < 10 {
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out
}

/// The messages of one mailbox, generated one at a time (memory stays flat).
pub fn messages(spec: &SampleSpec) -> impl Iterator<Item = Sample> + '_ {
    let mut rng = Rng::new(spec.seed);
    let nfolders = folders().len() - 1; // "Empty" stays empty
    let base = Utc.with_ymd_and_hms(2023, 1, 1, 8, 0, 0).unwrap();
    (0..spec.messages).map(move |i| {
        let folder = if i < nfolders {
            i
        } else {
            match rng.below(10) {
                0..=4 => 0,
                n => n as usize % nfolders,
            }
        };
        let days = rng.below(3 * 365) as i64;
        let date = (base + chrono::Duration::days(days) + chrono::Duration::seconds(i as i64))
            .with_timezone(&FixedOffset::east_opt(3600).unwrap());
        let every = (spec.messages / spec.huge.max(1)).max(1);
        let huge = spec.huge > 0 && i % every == every / 2;
        let attachment = if huge {
            10 << 20
        } else if rng.below(100) < spec.attachment_percent as u64 {
            100_000 + rng.below(1_900_000) as usize
        } else {
            0
        };
        let body_len = 500 + rng.below(20_000) as usize;
        let mut m = String::new();
        m.push_str(&format!("Date: {}\r\n", date.to_rfc2822()));
        m.push_str(&format!(
            "From: Sender {} <sender{}@old.example>\r\n",
            i % 17,
            i % 17
        ));
        m.push_str("To: user@old.example\r\n");
        match i % 9 {
            // No Message-ID at all.
            3 => {}
            // A repeated Message-ID (mailing-list duplicates do this).
            5 => m.push_str("Message-ID: <repeated@old.example>\r\n"),
            _ => m.push_str(&format!(
                "Message-ID: <{}.{}@old.example>\r\n",
                spec.seed, i
            )),
        }
        let subject = text(&mut rng, 30);
        if i % 4 == 1 {
            // Raw 8-bit UTF-8 in a header, as some clients still send.
            m.push_str(&format!("Subject: Résumé {i}: {}", subject));
        } else {
            m.push_str(&format!("Subject: Message {i}: {}", subject));
        }
        m.push_str("MIME-Version: 1.0\r\n");
        if attachment > 0 {
            m.push_str("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n");
            m.push_str("--b1\r\nContent-Type: text/plain; charset=utf-8\r\n");
            m.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
            m.push_str(&text(&mut rng, body_len));
            m.push_str("--b1\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n");
            m.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
            m.push_str(&base64_block(&mut rng, attachment));
            m.push_str("--b1--\r\n");
        } else {
            m.push_str("Content-Type: text/plain; charset=utf-8\r\n");
            m.push_str("Content-Transfer-Encoding: 8bit\r\n\r\n");
            m.push_str(&text(&mut rng, body_len));
        }
        let mut flags = Vec::new();
        if rng.below(10) < 7 {
            flags.push("\\Seen".to_string());
        }
        if rng.below(10) == 0 {
            flags.push("\\Flagged".to_string());
        }
        if rng.below(10) == 0 {
            flags.push("\\Answered".to_string());
        }
        if rng.below(12) == 0 {
            flags.push("$Forwarded".to_string());
        }
        if rng.below(15) == 0 {
            flags.push("Project-X".to_string());
        }
        Sample {
            folder,
            flags,
            date,
            body: Bytes::from(m),
        }
    })
}

/// The folder `segments` as a name for `session` (raw left for it to spell).
pub fn folder_name(segments: &[String], delimiter: Option<char>) -> FolderName {
    let d = delimiter.unwrap_or('/');
    let joined: Vec<String> = segments.to_vec();
    FolderName {
        raw: if segments == ["INBOX"] {
            "INBOX".into()
        } else {
            ferry_connectors::utf7::encode(&joined.join(&d.to_string()))
        },
        delimiter,
        segments: joined,
    }
}

/// Creates the sample folders in `session` and appends `spec`'s messages.
/// Returns (messages, bytes) written.
pub async fn fill(session: &mut dyn MailSession, spec: &SampleSpec) -> Result<(usize, u64)> {
    let delimiter = session
        .list_folders()
        .await?
        .iter()
        .find_map(|f| f.name.delimiter)
        .or(Some('/'));
    let names: Vec<FolderName> = folders()
        .iter()
        .map(|s| folder_name(s, delimiter))
        .collect();
    for n in names.iter().skip(1) {
        session.create_folder(n).await?;
        session.subscribe(n).await?;
    }
    let (mut count, mut bytes) = (0, 0);
    for m in messages(spec) {
        bytes += m.body.len() as u64;
        session
            .append(&names[m.folder], &m.flags, Some(m.date), m.body)
            .await?;
        count += 1;
    }
    Ok((count, bytes))
}
