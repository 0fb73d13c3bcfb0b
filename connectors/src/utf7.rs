//! Modified UTF-7 (RFC 3501 §5.1.3): how IMAP folder names travel on the
//! wire and how Dovecot names Maildir++ folders on disk.
//!
//! Printable US-ASCII (0x20–0x7e) stands for itself, except `&`, written
//! `&-`. Any other run of characters is UTF-16BE, base64-encoded with `,`
//! in place of `/` and no padding, between `&` and `-`.
//!
//! [`decode`] accepts only the one canonical spelling of each name, so
//! `encode(decode(s)?) == s` for every `s` it accepts: a name read from a
//! server can be decoded for display and mapping without ever changing the
//! bytes we send back.
//!
//! The one crate that does this (`utf7-imap`) decodes malformed input
//! without saying so, so this module uses the `base64` engine directly.

use base64::Engine;
use base64::alphabet::Alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const IMAP_ALPHABET: Alphabet =
    match Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,") {
        Ok(alphabet) => alphabet,
        Err(_) => panic!("modified UTF-7 alphabet"),
    };

/// Base64 with `,` for `/`, never padded; trailing bits must be zero, as
/// RFC 2152 requires and as the canonical form needs.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &IMAP_ALPHABET,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

/// Encodes a Unicode folder name into modified UTF-7.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        let bytes: Vec<u8> = pending.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('&');
        out.push_str(&ENGINE.encode(bytes));
        out.push('-');
        pending.clear();
    };
    for c in s.chars() {
        if is_direct(c) {
            flush(&mut pending, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

/// Decodes a modified UTF-7 name; `None` when it is not the canonical
/// encoding of some string (raw non-ASCII or control characters, an
/// unterminated or empty shift, bad base64, odd UTF-16, unpaired
/// surrogates, printable ASCII or `&` hidden in base64, or two shifts in a
/// row that an encoder would have merged).
pub fn decode(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    // Whether the previous token was a base64 run: a second run straight
    // after it is not canonical.
    let mut after_run = false;
    while let Some(c) = rest.chars().next() {
        if c != '&' {
            if !is_direct(c) {
                return None;
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
            after_run = false;
            continue;
        }
        let end = rest.find('-')?;
        let b64 = &rest[1..end];
        rest = &rest[end + 1..];
        if b64.is_empty() {
            out.push('&');
            after_run = false;
            continue;
        }
        if after_run {
            return None;
        }
        let bytes = ENGINE.decode(b64).ok()?;
        if bytes.len() % 2 != 0 {
            return None;
        }
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
            .collect();
        for c in char::decode_utf16(units) {
            let c = c.ok()?;
            if is_direct(c) {
                return None;
            }
            out.push(c);
        }
        after_run = true;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ampersand_is_escaped() {
        assert_eq!(encode("&"), "&-");
        assert_eq!(decode("&-").as_deref(), Some("&"));
        assert_eq!(encode("A&B"), "A&-B");
        assert_eq!(decode("A&-B").as_deref(), Some("A&B"));
    }

    #[test]
    fn known_names() {
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(decode("Entw&APw-rfe").as_deref(), Some("Entwürfe"));
        assert_eq!(encode("日本語"), "&ZeVnLIqe-");
        assert_eq!(decode("&ZeVnLIqe-").as_deref(), Some("日本語"));
        assert_eq!(encode("Отправленные"), "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-");
        assert_eq!(encode("INBOX"), "INBOX");
        assert_eq!(encode(""), "");
        // Astral plane: a surrogate pair inside one run.
        assert_eq!(decode(&encode("a😀b")).as_deref(), Some("a😀b"));
    }

    #[test]
    fn malformed() {
        for bad in [
            "&",          // unterminated
            "&ZeVn",      // unterminated run
            "&Ze*-",      // not in the alphabet
            "&Ze/-",      // '/' is ',' in this alphabet
            "&AP-",       // 12 bits: one byte, odd UTF-16
            "&APx-",      // trailing bits set
            "&AEE-",      // 'A' hidden in base64
            "&ACY-",      // '&' hidden in base64
            "&2D0-",      // lone high surrogate
            "&APw-&APw-", // two runs in a row
            "Entwürfe",   // raw non-ASCII
            "a\tb",       // control character
            "&APw=-",     // padding
        ] {
            assert_eq!(decode(bad), None, "{bad:?} should be refused");
        }
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(s in any::<String>()) {
            prop_assert_eq!(decode(&encode(&s)), Some(s));
        }

        #[test]
        fn decode_then_encode_is_identity(s in "([ -%'-~]|&-|&[A-Za-z0-9+,]{2,8}-){0,8}") {
            if let Some(decoded) = decode(&s) {
                prop_assert_eq!(encode(&decoded), s);
            }
        }

        #[test]
        fn valid_encodings_decode_back_exactly(s in "\\PC{0,12}") {
            let wire = encode(&s);
            let decoded = decode(&wire).expect("own encoding decodes");
            prop_assert_eq!(encode(&decoded), wire);
        }
    }
}
