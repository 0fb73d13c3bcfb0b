//! TSIG keys as BIND writes them (`tsig-keygen`, `ddns-confgen`):
//! `key "NAME" { algorithm hmac-sha256; secret "BASE64"; };`

use std::path::Path;

use base64::Engine;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::rr::TSigner;
use hickory_resolver::proto::rr::rdata::tsig::TsigAlgorithm;

/// Seconds of clock difference the server may accept (RFC 8945 suggests 300).
const FUDGE: u16 = 300;

/// A TSIG key. Its `Debug` shows the name and algorithm, never the secret.
#[derive(Clone)]
pub struct TsigKey {
    name: String,
    algorithm: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading TSIG key {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TSIG key {path}: {reason}")]
    Parse { path: String, reason: String },
}

impl TsigKey {
    /// Reads the first `key` clause of a BIND key file.
    pub fn from_file(path: &Path) -> Result<TsigKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        TsigKey::parse(&text).map_err(|reason| KeyError::Parse {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses `key "NAME" { algorithm ALG; secret "BASE64"; };`.
    pub fn parse(text: &str) -> Result<TsigKey, String> {
        let clean = strip_comments(text);
        let after_key = clean
            .split_once("key")
            .map(|(_, a)| a)
            .ok_or("no `key \"NAME\" { ... };` clause")?;
        let (head, body) = after_key
            .split_once('{')
            .ok_or("the key clause has no `{`")?;
        let name = head.trim().trim_matches('"').trim().to_string();
        if name.is_empty() {
            return Err("the key has no name".into());
        }
        let body = body.split_once('}').map_or(body, |(b, _)| b);
        let mut algorithm = None;
        let mut secret = None;
        for stmt in body.split(';') {
            let mut words = stmt.split_whitespace();
            match words.next() {
                Some("algorithm") => {
                    algorithm = words
                        .next()
                        .map(|a| a.trim_matches('"').to_ascii_lowercase())
                }
                Some("secret") => secret = words.next().map(|s| s.trim_matches('"').to_string()),
                _ => {}
            }
        }
        let algorithm = algorithm.ok_or("no `algorithm` in the key")?;
        algorithm_of(&algorithm)?;
        let secret = secret.ok_or("no `secret` in the key")?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret.as_bytes())
            .map_err(|e| format!("the secret is not base64: {e}"))?;
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        Ok(TsigKey {
            name,
            algorithm,
            secret,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// hickory's signer for this key.
    pub(crate) fn signer(&self) -> Result<TSigner, String> {
        let name = Name::from_ascii(&self.name).map_err(|e| e.to_string())?;
        TSigner::new(
            self.secret.clone(),
            algorithm_of(&self.algorithm)?,
            name,
            FUDGE,
        )
        .map_err(|e| e.to_string())
    }
}

fn algorithm_of(s: &str) -> Result<TsigAlgorithm, String> {
    match s.trim_end_matches('.') {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        other => Err(format!(
            "algorithm {other:?} is not supported (hmac-sha256, hmac-sha384, hmac-sha512)"
        )),
    }
}

/// The text without BIND's comments (`#`, `//`, `/* */`), left alone inside
/// quotes: a base64 secret may hold `//`.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            quoted = c != '"';
            out.push(c);
            continue;
        }
        match (c, chars.peek()) {
            ('"', _) => {
                quoted = true;
                out.push(c);
            }
            ('#', _) | ('/', Some('/')) => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            ('/', Some('*')) => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "# made by tsig-keygen\nkey \"ferry-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0LXNlY3JldC1zZWNyZXQ=\";\n};\n";

    #[test]
    fn bind_key_files_parse() {
        let k = TsigKey::parse(KEY).unwrap();
        assert_eq!(k.name(), "ferry-update");
        assert_eq!(k.algorithm(), "hmac-sha256");
        assert_eq!(k.secret, b"secret-secret-secret");
        assert!(k.signer().is_ok());
    }

    /// `/` is a base64 digit: a secret may hold `//`, which is not a comment
    /// inside quotes (about one tsig-keygen secret in a hundred does).
    #[test]
    fn a_secret_with_slashes_is_not_a_comment() {
        let text = "/* made\n by hand */ key \"k\" { // the update key\n algorithm hmac-sha256; # sha\n secret \"a2V5////c2VjcmV0\"; };\n";
        let k = TsigKey::parse(text).unwrap();
        assert_eq!(k.name(), "k");
        assert_eq!(k.secret, b"key\xff\xff\xffsecret");
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = TsigKey::parse(KEY).unwrap();
        let shown = format!("{k:?}");
        assert!(shown.contains("ferry-update"), "{shown}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(!shown.contains("secret-secret"), "{shown}");
    }

    #[test]
    fn bad_keys_say_why() {
        assert!(TsigKey::parse("").unwrap_err().contains("key"));
        assert!(
            TsigKey::parse("key \"k\" { algorithm hmac-md5; secret \"YQ==\"; };")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            TsigKey::parse("key \"k\" { algorithm hmac-sha256; secret \"!!\"; };")
                .unwrap_err()
                .contains("base64")
        );
        assert!(
            TsigKey::parse("key \"k\" { algorithm hmac-sha256; };")
                .unwrap_err()
                .contains("secret")
        );
    }
}
