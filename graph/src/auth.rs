//! App-only sign-in: the OAuth 2.0 client-credentials grant against the
//! Microsoft identity platform's v2.0 token endpoint, with a client secret
//! or a certificate (a signed JWT client assertion), and a token cache
//! shared by every user of one application.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Microsoft Graph, every permission granted to the application.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Exchange Online's IMAP and POP with an app-only token.
pub const EXCHANGE_IMAP_SCOPE: &str = "https://outlook.office365.com/.default";
/// The global cloud; national clouds and the test simulator have their own.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// How long a client assertion is valid: Microsoft accepts up to ten minutes.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);
/// A token is renewed this long before it expires (or at half its life).
const RENEW_MARGIN: Duration = Duration::from_secs(300);

/// How the application proves who it is.
pub enum Credential {
    /// A client secret, as the portal shows it once.
    Secret(String),
    /// A certificate registered on the application, with its RSA key.
    Certificate(Box<Certificate>),
}

/// An RSA key and the thumbprints of the certificate it belongs to.
pub struct Certificate {
    key: RsaKeyPair,
    /// base64url SHA-1 of the certificate's DER (the `x5t` header).
    x5t: String,
    /// base64url SHA-256 of the certificate's DER (the `x5t#S256` header).
    x5t_s256: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("Credential::Secret(…)"),
            Credential::Certificate(c) => {
                write!(f, "Credential::Certificate(x5t#S256={})", c.x5t_s256)
            }
        }
    }
}

impl Credential {
    /// A client secret from a file (one line; surrounding blanks dropped).
    pub fn secret_file(path: &Path) -> Result<Credential> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Credential {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let secret = text.trim();
        if secret.is_empty() {
            return Err(Error::Credential {
                path: path.display().to_string(),
                reason: "the file is empty".into(),
            });
        }
        Ok(Credential::Secret(secret.to_string()))
    }

    /// A certificate credential from PEM files: the private key (PKCS#8 or
    /// PKCS#1 RSA) and the certificate; both may be the same file.
    pub fn certificate_files(key: &Path, cert: &Path) -> Result<Credential> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| Error::Credential {
                path: p.display().to_string(),
                reason: e.to_string(),
            })
        };
        let (k, c) = (read(key)?, read(cert)?);
        Credential::certificate_pem(&k, &c).map_err(|reason| Error::Credential {
            path: format!("{} / {}", key.display(), cert.display()),
            reason,
        })
    }

    /// A certificate credential from PEM text.
    pub fn certificate_pem(
        key_pem: &[u8],
        cert_pem: &[u8],
    ) -> std::result::Result<Credential, String> {
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| "no private key in PEM form".to_string())?;
        let key = match key {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => {
                return Err(
                    "the private key is not RSA: Microsoft accepts RSA certificates only".into(),
                );
            }
        }
        .map_err(|e| format!("the RSA key is not usable: {e}"))?;
        let cert = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .ok_or("no certificate in PEM form")?
            .map_err(|_| "the certificate's PEM is damaged".to_string())?;
        Ok(Credential::Certificate(Box::new(Certificate {
            key,
            x5t: URL_SAFE_NO_PAD.encode(ring::digest::digest(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                &cert,
            )),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(&cert)),
        })))
    }
}

/// A bearer token. It prints as `AccessToken(…)`; `secret` is the only
/// way to its text.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(…)")
    }
}

struct Cached {
    token: AccessToken,
    renew_at: Instant,
}

/// One Entra ID application signing in to one tenant. Share it (`Arc`)
/// between every mailbox and connection of that application: the tokens
/// are cached per scope and fetched by one caller at a time.
pub struct AppAuth {
    http: reqwest::Client,
    authority: String,
    tenant: String,
    client_id: String,
    credential: Credential,
    cache: tokio::sync::Mutex<HashMap<String, Cached>>,
    fetches: AtomicU64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize, Default)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl AppAuth {
    /// `authority` is the sign-in host with its scheme (for example
    /// `https://login.microsoftonline.com`); `tenant` a tenant id or domain.
    pub fn new(
        http: reqwest::Client,
        authority: &str,
        tenant: &str,
        client_id: &str,
        credential: Credential,
    ) -> AppAuth {
        AppAuth {
            http,
            authority: authority.trim_end_matches('/').to_string(),
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            credential,
            cache: tokio::sync::Mutex::new(HashMap::new()),
            fetches: AtomicU64::new(0),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`, also the assertion's audience.
    pub fn token_endpoint(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.authority, self.tenant)
    }

    /// How many tokens this application has fetched (renewals included).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// A token for `scope`, from the cache while it has time left.
    pub async fn token(&self, scope: &str) -> Result<AccessToken> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.get(scope)
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = self.fetch(scope).await?;
        let margin = RENEW_MARGIN.min(lifetime / 2);
        cache.insert(
            scope.to_string(),
            Cached {
                token: token.clone(),
                renew_at: Instant::now() + lifetime - margin,
            },
        );
        Ok(token)
    }

    /// Drops `stale` from the cache after the service refused it, so the
    /// next `token` fetches a new one (unless another caller already has).
    pub async fn invalidate(&self, scope: &str, stale: &AccessToken) {
        let mut cache = self.cache.lock().await;
        if cache.get(scope).is_some_and(|c| &c.token == stale) {
            cache.remove(scope);
        }
    }

    async fn fetch(&self, scope: &str) -> Result<(AccessToken, Duration)> {
        let endpoint = self.token_endpoint();
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", self.client_id.clone()),
            ("scope", scope.into()),
        ];
        match &self.credential {
            Credential::Secret(s) => form.push(("client_secret", s.clone())),
            Credential::Certificate(c) => {
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", self.assertion(c, &endpoint)?));
            }
        }
        let op = "sign-in";
        let resp = self
            .http
            .post(&endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|e| Error::transport(op, e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| Error::transport(op, e))?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        if !status.is_success() {
            let e: TokenError = serde_json::from_slice(&body).unwrap_or_default();
            return Err(Error::SignIn {
                authority: self.authority.clone(),
                status: status.as_u16(),
                code: e.error,
                description: e.error_description,
            });
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| Error::Protocol {
            op: op.into(),
            reason: e.to_string(),
        })?;
        tracing::debug!(client_id = %self.client_id, scope, expires_in = answer.expires_in, "token fetched");
        Ok((
            AccessToken(answer.access_token),
            Duration::from_secs(answer.expires_in),
        ))
    }

    /// The client assertion Microsoft documents for certificate credentials:
    /// an RS256 JWT with the certificate's thumbprints in its header,
    /// `aud` the token endpoint, `iss` = `sub` = the client id.
    fn assertion(&self, cert: &Certificate, audience: &str) -> Result<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": cert.x5t,
            "x5t#S256": cert.x5t_s256,
        });
        let jti: [u8; 16] = rand::random();
        let claims = serde_json::json!({
            "aud": audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": hex::encode(jti),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME.as_secs(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; cert.key.public().modulus_len()];
        cert.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| {
                Error::Invalid("the certificate's key could not sign the client assertion".into())
            })?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// SASL XOAUTH2 for Exchange Online's IMAP, acting for `user` with an
    /// app-only token (scope `https://outlook.office365.com/.default`).
    pub async fn imap_xoauth2(&self, user: &str) -> Result<Xoauth2> {
        let token = self.token(EXCHANGE_IMAP_SCOPE).await?;
        Ok(Xoauth2::new(user, &token))
    }
}

/// The XOAUTH2 initial client response: `user=U^Aauth=Bearer T^A^A`.
/// Prints as `Xoauth2(user)`.
pub struct Xoauth2 {
    user: String,
    raw: String,
}

impl Xoauth2 {
    pub fn new(user: &str, token: &AccessToken) -> Xoauth2 {
        Xoauth2 {
            user: user.to_string(),
            raw: format!("user={user}\x01auth=Bearer {}\x01\x01", token.secret()),
        }
    }

    /// The response as is (an IMAP library's authenticator base64-encodes it).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The response base64-encoded, as `AUTHENTICATE XOAUTH2 <this>` sends it.
    pub fn base64(&self) -> String {
        STANDARD.encode(&self.raw)
    }
}

impl std::fmt::Debug for Xoauth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Xoauth2({})", self.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_has_microsofts_shape_and_hides_the_token() {
        let x = Xoauth2::new("ann@contoso.com", &AccessToken("tok".into()));
        assert_eq!(x.raw(), "user=ann@contoso.com\x01auth=Bearer tok\x01\x01");
        assert_eq!(STANDARD.decode(x.base64()).unwrap(), x.raw().as_bytes());
        assert!(!format!("{x:?}").contains("tok"));
        assert!(!format!("{:?}", AccessToken("tok".into())).contains("tok"));
        assert!(!format!("{:?}", Credential::Secret("s3cret".into())).contains("s3cret"));
    }

    #[test]
    fn a_non_rsa_or_missing_key_is_refused_with_a_reason() {
        let e = Credential::certificate_pem(b"nothing", b"nothing")
            .err()
            .unwrap();
        assert!(e.contains("no private key"), "{e}");
    }
}
