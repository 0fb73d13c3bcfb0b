//! NTLMv2 ([MS-NLMP]) as HTTP authentication uses it: the three messages
//! (NEGOTIATE, CHALLENGE, AUTHENTICATE) and the NTLMv2 response. No signing
//! or sealing: over HTTPS the handshake only proves the password, and the
//! connection stays authenticated for its lifetime.
//!
//! Both sides live here: the client builds NEGOTIATE and AUTHENTICATE, and a
//! server (the test suite's simulator) builds CHALLENGE and verifies
//! AUTHENTICATE. The computations are checked against the specification's
//! own test vectors (section 4.2.4).

use hmac::{Hmac, Mac};
use md4::{Digest, Md4};
use md5::Md5;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// Negotiate flags ([MS-NLMP] 2.2.2.5).
pub mod flags {
    pub const UNICODE: u32 = 0x0000_0001;
    pub const REQUEST_TARGET: u32 = 0x0000_0004;
    pub const NTLM: u32 = 0x0000_0200;
    pub const ALWAYS_SIGN: u32 = 0x0000_8000;
    pub const TARGET_TYPE_DOMAIN: u32 = 0x0001_0000;
    pub const EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
    pub const TARGET_INFO: u32 = 0x0080_0000;
    pub const VERSION: u32 = 0x0200_0000;
    pub const N128: u32 = 0x2000_0000;
    pub const N56: u32 = 0x8000_0000;
}

/// What the client asks for: Unicode, NTLM with extended session security,
/// target info (needed for NTLMv2).
pub const CLIENT_FLAGS: u32 = flags::UNICODE
    | flags::REQUEST_TARGET
    | flags::NTLM
    | flags::ALWAYS_SIGN
    | flags::EXTENDED_SESSIONSECURITY
    | flags::TARGET_INFO
    | flags::N128
    | flags::N56;

/// A malformed NTLM message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed NTLM {message} message: {reason}")]
pub struct NtlmError {
    pub message: &'static str,
    pub reason: &'static str,
}

fn bad(message: &'static str, reason: &'static str) -> NtlmError {
    NtlmError { message, reason }
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

fn from_utf16le(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// NTOWFv1: MD4 of the UTF-16LE password (the "NT hash").
pub fn nt_hash(password: &str) -> [u8; 16] {
    Md4::digest(utf16le(password)).into()
}

/// NTOWFv2 ([MS-NLMP] 3.3.2): HMAC-MD5 keyed with the NT hash over the
/// upper-cased user name followed by the domain, both UTF-16LE.
pub fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let mut ud = utf16le(&user.to_uppercase());
    ud.extend(utf16le(domain));
    hmac_md5(&nt_hash(password), &[&ud])
}

/// Splits `DOMAIN\user` (or `user@domain`, kept whole as the user name, as
/// Windows does for UPNs) into (domain, user).
pub fn split_login(login: &str) -> (&str, &str) {
    match login.split_once('\\') {
        Some((d, u)) => (d, u),
        None => ("", login),
    }
}

/// The pieces of an NTLMv2 response ([MS-NLMP] 3.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Response {
    /// NTProofStr followed by `temp` (the blob).
    pub nt: Vec<u8>,
    /// HMAC over both challenges, then the client challenge.
    pub lm: Vec<u8>,
    pub session_base_key: [u8; 16],
}

/// The NTLMv2 response for `response_key` (NTOWFv2), the server's
/// challenge, the client's challenge, a FILETIME and the target info the
/// server sent.
pub fn v2_response(
    response_key: &[u8; 16],
    server_challenge: &[u8; 8],
    client_challenge: &[u8; 8],
    time: u64,
    target_info: &[u8],
) -> V2Response {
    let mut temp = vec![1u8, 1, 0, 0, 0, 0, 0, 0];
    temp.extend_from_slice(&time.to_le_bytes());
    temp.extend_from_slice(client_challenge);
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(target_info);
    temp.extend_from_slice(&[0; 4]);
    let proof = hmac_md5(response_key, &[server_challenge, &temp]);
    let mut nt = proof.to_vec();
    nt.extend_from_slice(&temp);
    let mut lm = hmac_md5(response_key, &[server_challenge, client_challenge]).to_vec();
    lm.extend_from_slice(client_challenge);
    V2Response {
        nt,
        lm,
        session_base_key: hmac_md5(response_key, &[&proof]),
    }
}

/// The NEGOTIATE message (type 1), with no domain or workstation supplied.
pub fn negotiate() -> Vec<u8> {
    let mut m = SIGNATURE.to_vec();
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&CLIENT_FLAGS.to_le_bytes());
    // DomainNameFields and WorkstationFields: empty, offset past the header.
    for _ in 0..2 {
        m.extend_from_slice(&0u16.to_le_bytes());
        m.extend_from_slice(&0u16.to_le_bytes());
        m.extend_from_slice(&32u32.to_le_bytes());
    }
    m
}

/// What a client needs of a CHALLENGE message (type 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub flags: u32,
    pub server_challenge: [u8; 8],
    pub target_name: String,
    pub target_info: Vec<u8>,
}

/// An AV pair's id ([MS-NLMP] 2.2.2.1).
const AV_EOL: u16 = 0;
const AV_NB_COMPUTER: u16 = 1;
const AV_NB_DOMAIN: u16 = 2;
const AV_TIMESTAMP: u16 = 7;

/// Reads a (len, maxlen, offset) field and returns its payload.
fn field<'a>(m: &'a [u8], at: usize, what: &'static str) -> Result<&'a [u8], NtlmError> {
    let hdr = m.get(at..at + 8).ok_or(bad(what, "truncated header"))?;
    let len = u16::from_le_bytes([hdr[0], hdr[1]]) as usize;
    let off = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
    if len == 0 {
        return Ok(&[]);
    }
    m.get(off..off.checked_add(len).ok_or(bad(what, "field overflows"))?)
        .ok_or(bad(what, "field points past the end"))
}

fn check_header(m: &[u8], kind: u32, what: &'static str) -> Result<(), NtlmError> {
    if m.len() < 12 || &m[..8] != SIGNATURE {
        return Err(bad(what, "no NTLMSSP signature"));
    }
    if u32::from_le_bytes([m[8], m[9], m[10], m[11]]) != kind {
        return Err(bad(what, "wrong message type"));
    }
    Ok(())
}

impl Challenge {
    pub fn parse(m: &[u8]) -> Result<Challenge, NtlmError> {
        const W: &str = "CHALLENGE";
        check_header(m, 2, W)?;
        if m.len() < 48 {
            return Err(bad(W, "shorter than its fixed part"));
        }
        let flags = u32::from_le_bytes([m[20], m[21], m[22], m[23]]);
        let server_challenge: [u8; 8] = m[24..32].try_into().expect("8 bytes");
        let target_name = from_utf16le(field(m, 12, W)?);
        let target_info = field(m, 40, W)?.to_vec();
        if flags & flags::TARGET_INFO == 0 || target_info.is_empty() {
            return Err(bad(W, "no target info (NTLMv2 needs it)"));
        }
        Ok(Challenge {
            flags,
            server_challenge,
            target_name,
            target_info,
        })
    }

    /// The server's FILETIME from the target info, if it sent one.
    fn timestamp(&self) -> Option<u64> {
        av_pairs(&self.target_info)
            .ok()?
            .into_iter()
            .find(|(id, _)| *id == AV_TIMESTAMP)
            .and_then(|(_, v)| Some(u64::from_le_bytes(v.try_into().ok()?)))
    }
}

/// The AV pairs of a target info, up to MsvAvEOL.
fn av_pairs(info: &[u8]) -> Result<Vec<(u16, &[u8])>, NtlmError> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let hdr = info
            .get(at..at + 4)
            .ok_or(bad("target info", "no end-of-list pair"))?;
        let id = u16::from_le_bytes([hdr[0], hdr[1]]);
        let len = u16::from_le_bytes([hdr[2], hdr[3]]) as usize;
        if id == AV_EOL {
            return Ok(out);
        }
        let value = info
            .get(at + 4..at + 4 + len)
            .ok_or(bad("target info", "pair runs past the end"))?;
        out.push((id, value));
        at += 4 + len;
    }
}

/// The current time as a Windows FILETIME (100 ns since 1601).
pub fn filetime_now() -> u64 {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (unix.as_nanos() / 100) as u64 + 116_444_736_000_000_000
}

fn push_field(header: &mut Vec<u8>, payload: &mut Vec<u8>, base: usize, data: &[u8]) {
    let len = data.len() as u16;
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&((base + payload.len()) as u32).to_le_bytes());
    payload.extend_from_slice(data);
}

/// The AUTHENTICATE message (type 3) answering `challenge` for `login`
/// (`DOMAIN\user` or a UPN) and `password`.
pub fn authenticate(
    challenge: &Challenge,
    login: &str,
    password: &str,
    workstation: &str,
    client_challenge: [u8; 8],
) -> Vec<u8> {
    let (domain, user) = split_login(login);
    let key = ntowf_v2(password, user, domain);
    // With a server timestamp the client uses it, and sends an empty LM
    // response ([MS-NLMP] 3.1.5.1.2).
    let (time, zero_lm) = match challenge.timestamp() {
        Some(t) => (t, true),
        None => (filetime_now(), false),
    };
    let r = v2_response(
        &key,
        &challenge.server_challenge,
        &client_challenge,
        time,
        &challenge.target_info,
    );
    let lm = if zero_lm { vec![0u8; 24] } else { r.lm };
    let flags = CLIENT_FLAGS & challenge.flags | flags::UNICODE;
    // Fixed part: signature, type, six fields, flags (no version, no MIC).
    const BASE: usize = 64;
    let mut m = SIGNATURE.to_vec();
    m.extend_from_slice(&3u32.to_le_bytes());
    let mut payload = Vec::new();
    push_field(&mut m, &mut payload, BASE, &lm);
    push_field(&mut m, &mut payload, BASE, &r.nt);
    push_field(&mut m, &mut payload, BASE, &utf16le(domain));
    push_field(&mut m, &mut payload, BASE, &utf16le(user));
    push_field(&mut m, &mut payload, BASE, &utf16le(workstation));
    push_field(&mut m, &mut payload, BASE, &[]);
    m.extend_from_slice(&flags.to_le_bytes());
    debug_assert_eq!(m.len(), BASE);
    m.extend_from_slice(&payload);
    m
}

/// A server's side: the CHALLENGE it sends for NetBIOS `domain` and
/// `computer`, with its random `server_challenge`.
pub fn challenge(server_challenge: [u8; 8], domain: &str, computer: &str) -> Vec<u8> {
    let mut info = Vec::new();
    for (id, v) in [(AV_NB_DOMAIN, domain), (AV_NB_COMPUTER, computer)] {
        let v = utf16le(v);
        info.extend_from_slice(&id.to_le_bytes());
        info.extend_from_slice(&(v.len() as u16).to_le_bytes());
        info.extend_from_slice(&v);
    }
    info.extend_from_slice(&[0; 4]);
    let flags = CLIENT_FLAGS | flags::TARGET_TYPE_DOMAIN;
    const BASE: usize = 48;
    let mut m = SIGNATURE.to_vec();
    m.extend_from_slice(&2u32.to_le_bytes());
    let mut payload = Vec::new();
    push_field(&mut m, &mut payload, BASE, &utf16le(domain));
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&server_challenge);
    m.extend_from_slice(&[0; 8]);
    push_field(&mut m, &mut payload, BASE, &info);
    debug_assert_eq!(m.len(), BASE);
    m.extend_from_slice(&payload);
    m
}

/// What a server reads from an AUTHENTICATE message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticate {
    pub domain: String,
    pub user: String,
    pub workstation: String,
    nt: Vec<u8>,
}

impl Authenticate {
    pub fn parse(m: &[u8]) -> Result<Authenticate, NtlmError> {
        const W: &str = "AUTHENTICATE";
        check_header(m, 3, W)?;
        if m.len() < 64 {
            return Err(bad(W, "shorter than its fixed part"));
        }
        let nt = field(m, 20, W)?.to_vec();
        if nt.len() < 16 + 28 {
            return Err(bad(W, "no NTLMv2 response"));
        }
        Ok(Authenticate {
            domain: from_utf16le(field(m, 28, W)?),
            user: from_utf16le(field(m, 36, W)?),
            workstation: from_utf16le(field(m, 44, W)?),
            nt,
        })
    }

    /// The login as `DOMAIN\user`, or the bare user name without a domain.
    pub fn login(&self) -> String {
        if self.domain.is_empty() {
            self.user.clone()
        } else {
            format!("{}\\{}", self.domain, self.user)
        }
    }

    /// Whether the NTLMv2 proof matches `password` for the server's
    /// challenge.
    pub fn verify(&self, password: &str, server_challenge: &[u8; 8]) -> bool {
        let key = ntowf_v2(password, &self.user, &self.domain);
        let (proof, temp) = self.nt.split_at(16);
        let expected = hmac_md5(&key, &[server_challenge, temp]);
        // Constant time is not needed for a test server, but costs nothing.
        proof
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // [MS-NLMP] 4.2.1: the common values.
    const USER: &str = "User";
    const DOMAIN: &str = "Domain";
    const PASSWORD: &str = "Password";
    const SERVER_CHALLENGE: [u8; 8] = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
    const CLIENT_CHALLENGE: [u8; 8] = [0xaa; 8];

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// [MS-NLMP] 4.2.4.3: the CHALLENGE message of the NTLMv2 example.
    fn spec_challenge() -> Vec<u8> {
        unhex(
            "4e544c4d53535000 02000000 0c000c00 38000000 33828ae2
             0123456789abcdef 0000000000000000 24002400 44000000
             060070170000000f 530065007200760065007200
             02000c00 44006f006d00610069006e00
             01000c00 530065007200760065007200 00000000",
        )
    }

    #[test]
    fn ntowf_v2_matches_the_specification() {
        // 4.2.4.1.1
        assert_eq!(
            ntowf_v2(PASSWORD, USER, DOMAIN).to_vec(),
            unhex("0c868a403bfd7a93a3001ef22ef02e3f")
        );
    }

    #[test]
    fn v2_response_matches_the_specification() {
        let ch = Challenge::parse(&spec_challenge()).unwrap();
        assert_eq!(ch.server_challenge, SERVER_CHALLENGE);
        assert_eq!(ch.target_name, "Server");
        let r = v2_response(
            &ntowf_v2(PASSWORD, USER, DOMAIN),
            &ch.server_challenge,
            &CLIENT_CHALLENGE,
            0,
            &ch.target_info,
        );
        // 4.2.4.2.1: LMv2 response.
        assert_eq!(
            r.lm,
            unhex("86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa")
        );
        // 4.2.4.2.2: NTProofStr, the first 16 bytes of the NTLMv2 response.
        assert_eq!(r.nt[..16], unhex("68cd0ab851e51c96aabc927bebef6a1c")[..]);
        // 4.2.4.1.2: the session base key.
        assert_eq!(
            r.session_base_key.to_vec(),
            unhex("8de40ccadbc14a82f15cb0ad0de95ca3")
        );
        // The blob (`temp`) of 4.2.4.1.3: version, time 0, the client
        // challenge, then the server's AV pairs.
        assert_eq!(&r.nt[16..18], &[1, 1]);
        assert_eq!(&r.nt[32..40], &CLIENT_CHALLENGE);
        assert_eq!(&r.nt[44..44 + ch.target_info.len()], &ch.target_info[..]);
    }

    #[test]
    fn a_server_verifies_what_a_client_computes() {
        let ch_bytes = challenge(SERVER_CHALLENGE, "SIM", "EXCH01");
        let ch = Challenge::parse(&ch_bytes).unwrap();
        assert_eq!(ch.target_name, "SIM");
        let msg = authenticate(&ch, "SIM\\alice", "s3cret", "WS", [7; 8]);
        let a = Authenticate::parse(&msg).unwrap();
        assert_eq!(a.login(), "SIM\\alice");
        assert_eq!(a.workstation, "WS");
        assert!(a.verify("s3cret", &SERVER_CHALLENGE));
        assert!(!a.verify("wrong", &SERVER_CHALLENGE));
        assert!(!a.verify("s3cret", &[0; 8]));
    }

    #[test]
    fn negotiate_is_well_formed() {
        let m = negotiate();
        assert_eq!(&m[..8], SIGNATURE);
        assert_eq!(u32::from_le_bytes(m[8..12].try_into().unwrap()), 1);
        let f = u32::from_le_bytes(m[12..16].try_into().unwrap());
        assert_ne!(f & flags::UNICODE, 0);
        assert_ne!(f & flags::TARGET_INFO, 0);
    }

    #[test]
    fn malformed_messages_are_refused_not_panicked_on() {
        assert!(Challenge::parse(b"NTLMSSP\0").is_err());
        assert!(Challenge::parse(&negotiate()).is_err());
        let mut m = spec_challenge();
        m[44] = 0xff; // target info offset past the end
        assert!(Challenge::parse(&m).is_err());
        assert!(Authenticate::parse(&[0u8; 100]).is_err());
        for len in 0..120 {
            let mut msg = authenticate(
                &Challenge::parse(&spec_challenge()).unwrap(),
                "D\\u",
                "p",
                "",
                [1; 8],
            );
            msg.truncate(len);
            let _ = Authenticate::parse(&msg);
        }
    }

    #[test]
    fn a_server_timestamp_is_used_and_the_lm_response_emptied() {
        let mut ch = Challenge::parse(&challenge(SERVER_CHALLENGE, "D", "S")).unwrap();
        // Insert MsvAvTimestamp before the end of the list.
        let eol = ch.target_info.len() - 4;
        let mut info = ch.target_info[..eol].to_vec();
        info.extend_from_slice(&AV_TIMESTAMP.to_le_bytes());
        info.extend_from_slice(&8u16.to_le_bytes());
        info.extend_from_slice(&42u64.to_le_bytes());
        info.extend_from_slice(&[0; 4]);
        ch.target_info = info;
        let msg = authenticate(&ch, "D\\u", "p", "", [1; 8]);
        let lm = field(&msg, 12, "t").unwrap();
        assert_eq!(lm, &[0u8; 24]);
        let a = Authenticate::parse(&msg).unwrap();
        assert_eq!(&a.nt[24..32], &42u64.to_le_bytes());
        assert!(a.verify("p", &SERVER_CHALLENGE));
    }
}
