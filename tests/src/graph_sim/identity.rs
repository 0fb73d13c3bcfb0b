//! The Microsoft identity platform's part: the tenant's OpenID metadata,
//! the v2.0 token endpoint's client-credentials grant with a client secret
//! or a certificate assertion (RS256 or PS256, found by `x5t#S256` or
//! `x5t`, verified against the registered certificate), and the bearer
//! check every Graph request passes.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Answer, Key, Req, State, Token};

const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
const OUTLOOK_AUDIENCE: &str = "https://outlook.office365.com";

fn oauth_error(status: u16, error: &str, description: &str) -> Answer {
    Answer::json(
        status,
        json!({ "error": error, "error_description": description, "error_codes": [], "timestamp": chrono::Utc::now().to_rfc3339() }),
    )
}

impl State {
    fn known_tenant(&self, t: &str) -> bool {
        t.eq_ignore_ascii_case(&self.cfg.tenant_id)
            || t.eq_ignore_ascii_case(&self.cfg.tenant_domain)
    }

    /// Sign-in endpoints: `/{tenant}/v2.0/.well-known/openid-configuration`
    /// and `/{tenant}/oauth2/v2.0/token`.
    pub(crate) fn identity(&mut self, req: &Req) -> Answer {
        let segs: Vec<&str> = req.segs.iter().map(String::as_str).collect();
        match (req.method.as_str(), segs.as_slice()) {
            ("GET", [tenant, "v2.0", ".well-known", "openid-configuration"]) => {
                if !self.known_tenant(tenant) {
                    return oauth_error(400, "invalid_tenant", "AADSTS90002: Tenant not found.");
                }
                let (b, t) = (&self.base, &self.cfg.tenant_id);
                Answer::json(
                    200,
                    json!({
                        "token_endpoint": format!("{b}/{t}/oauth2/v2.0/token"),
                        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                        "jwks_uri": format!("{b}/{t}/discovery/v2.0/keys"),
                        "response_modes_supported": ["query", "fragment", "form_post"],
                        "subject_types_supported": ["pairwise"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                        "scopes_supported": ["openid", "profile", "email", "offline_access"],
                        "issuer": format!("{b}/{t}/v2.0"),
                        "request_uri_parameter_supported": false,
                        "authorization_endpoint": format!("{b}/{t}/oauth2/v2.0/authorize"),
                        "device_authorization_endpoint": format!("{b}/{t}/oauth2/v2.0/devicecode"),
                        "end_session_endpoint": format!("{b}/{t}/oauth2/v2.0/logout"),
                        "tenant_region_scope": "EU",
                        "cloud_instance_name": "microsoftonline.com",
                    }),
                )
            }
            ("POST", [tenant, "oauth2", "v2.0", "token"]) => {
                if !self.known_tenant(tenant) {
                    return oauth_error(400, "invalid_request", "AADSTS90002: Tenant not found.");
                }
                let endpoint = format!("{}/{}/oauth2/v2.0/token", self.base, tenant);
                self.grant(req, &endpoint)
            }
            // Not Microsoft's: Exchange Online checks its tokens itself. A
            // mail server standing in for it (Dovecot's oauth2 passdb) asks
            // here, as RFC 7662 says, what a token is.
            ("POST", [tenant, "oauth2", "v2.0", "introspect"]) if self.known_tenant(tenant) => {
                let form: HashMap<String, String> =
                    form_urlencoded::parse(&req.body).into_owned().collect();
                let token = form.get("token").map(String::as_str).unwrap_or("");
                match self.tokens.get(token) {
                    Some(t) if t.expires > Instant::now() => Answer::json(
                        200,
                        json!({ "active": true, "aud": t.audience, "appid": t.app, "tid": self.cfg.tenant_id }),
                    ),
                    _ => Answer::json(200, json!({ "active": false })),
                }
            }
            _ => Answer::error(404, "NotFound", "no such endpoint"),
        }
    }

    fn grant(&mut self, req: &Req, endpoint: &str) -> Answer {
        let form: HashMap<String, String> =
            form_urlencoded::parse(&req.body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return oauth_error(
                400,
                "unsupported_grant_type",
                "AADSTS70003: only client_credentials is offered here.",
            );
        }
        let client_id = form.get("client_id").cloned().unwrap_or_default();
        let scope = form.get("scope").cloned().unwrap_or_default();
        let audience = match scope.trim() {
            "https://graph.microsoft.com/.default" => GRAPH_AUDIENCE,
            "https://outlook.office365.com/.default" => OUTLOOK_AUDIENCE,
            _ => {
                return oauth_error(
                    400,
                    "invalid_scope",
                    "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
                );
            }
        };
        let Some(app) = self.apps.get(&client_id) else {
            return oauth_error(
                400,
                "unauthorized_client",
                "AADSTS700016: Application not found in the directory.",
            );
        };
        let proved = if let Some(given) = form.get("client_secret") {
            if app.secret.as_deref() == Some(given.as_str()) {
                Ok(())
            } else {
                Err(oauth_error(
                    401,
                    "invalid_client",
                    "AADSTS7000215: Invalid client secret provided.",
                ))
            }
        } else if let Some(assertion) = form.get("client_assertion") {
            if form.get("client_assertion_type").map(String::as_str)
                != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            {
                Err(oauth_error(
                    400,
                    "invalid_request",
                    "AADSTS50027: client_assertion_type is not jwt-bearer.",
                ))
            } else {
                let alt = format!("{}/{}/oauth2/v2.0/token", self.base, self.cfg.tenant_id);
                verify_assertion(assertion, &app.certs, &client_id, &[endpoint, &alt])
                    .map_err(|why| oauth_error(401, "invalid_client", &why))
            }
        } else {
            Err(oauth_error(
                401,
                "invalid_client",
                "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            ))
        };
        if let Err(a) = proved {
            return a;
        }
        let token = format!("eyJ0eXAiOiJKV1QifQ.{}", self.new_id("sim"));
        let lifetime = self.cfg.token_lifetime;
        self.tokens.insert(
            token.clone(),
            Token {
                app: client_id,
                audience: audience.into(),
                expires: Instant::now() + lifetime,
            },
        );
        self.grants += 1;
        Answer::json(
            200,
            json!({
                "token_type": "Bearer",
                "expires_in": lifetime.as_secs(),
                "ext_expires_in": lifetime.as_secs(),
                "access_token": token,
            }),
        )
    }

    /// The application a Graph request acts as, and the mailbox it acts
    /// for; pre-authenticated session URLs carry both.
    pub(crate) fn authorize(&mut self, req: &Req) -> Result<Key, Answer> {
        let first = req.segs[0].as_str();
        if first == "upload" || first == "import" {
            let tok = req.segs.get(1).cloned().unwrap_or_default();
            let found = if first == "upload" {
                self.uploads
                    .get(&tok)
                    .map(|u| (u.app.clone(), u.user.clone(), u.expires))
            } else {
                self.imports
                    .get(&tok)
                    .map(|u| (u.app.clone(), u.user.clone(), u.expires))
            };
            return match found {
                Some((app, mailbox, expires)) if Instant::now() < expires => {
                    Ok(Key { app, mailbox })
                }
                Some(_) => Err(Answer::error(
                    401,
                    "InvalidAuthenticationToken",
                    "The session's token has expired.",
                )),
                None => Err(Answer::error(404, "ErrorItemNotFound", "No such session.")),
            };
        }
        let Some(bearer) = req
            .headers
            .get("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
        else {
            return Err(Answer::error(
                401,
                "InvalidAuthenticationToken",
                "Access token is empty.",
            ));
        };
        let app = match self.tokens.get(bearer) {
            Some(t) if t.expires <= Instant::now() => {
                return Err(Answer::error(
                    401,
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired.",
                ));
            }
            Some(t) if t.audience != GRAPH_AUDIENCE => {
                return Err(Answer::error(
                    401,
                    "InvalidAuthenticationToken",
                    "Invalid audience.",
                ));
            }
            Some(t) => t.app.clone(),
            None => {
                return Err(Answer::error(
                    401,
                    "InvalidAuthenticationToken",
                    "IDX14100: JWT is not well formed.",
                ));
            }
        };
        let mailbox = match req.segs.get(1).map(String::as_str) {
            Some("users") => {
                let u = req.segs.get(2).cloned().unwrap_or_default();
                self.user_key(&u).unwrap_or(u.to_ascii_lowercase())
            }
            Some("admin") => {
                let m = req.segs.get(4).cloned().unwrap_or_default();
                self.users
                    .iter()
                    .find(|(_, u)| u.mailbox_id == m)
                    .map(|(k, _)| k.clone())
                    .unwrap_or(m)
            }
            _ => String::new(),
        };
        Ok(Key { app, mailbox })
    }
}

/// Checks a client assertion as the token endpoint does: the header names
/// a registered certificate by thumbprint, the signature verifies with its
/// key, `aud` is the token endpoint, `iss` and `sub` the client, and the
/// time is within `nbf`..`exp`.
fn verify_assertion(
    jwt: &str,
    certs: &[Vec<u8>],
    client_id: &str,
    audiences: &[&str],
) -> Result<(), String> {
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() != 3 {
        return Err("AADSTS50027: JWT token is invalid or malformed.".into());
    }
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "AADSTS50027: JWT token is invalid or malformed.".to_string())
    };
    let header: Value =
        serde_json::from_slice(&decode(parts[0])?).map_err(|e| format!("AADSTS50027: {e}"))?;
    let claims: Value =
        serde_json::from_slice(&decode(parts[1])?).map_err(|e| format!("AADSTS50027: {e}"))?;
    let signature = decode(parts[2])?;
    // MSAL pads its base64url thumbprints; Microsoft takes both forms.
    let thumb = |name: &str| {
        header[name]
            .as_str()
            .map(|t| t.trim_end_matches('=').to_string())
    };
    let cert = certs
        .iter()
        .find(|c| {
            thumb("x5t#S256") == Some(URL_SAFE_NO_PAD.encode(Sha256::digest(c)))
                || thumb("x5t")
                    == Some(URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, c)))
        })
        .ok_or("AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application.")?;
    let alg: &dyn rustls::pki_types::SignatureVerificationAlgorithm = match header["alg"].as_str() {
        Some("RS256") => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
        Some("PS256") => webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        other => {
            return Err(format!(
                "AADSTS5002730: Invalid JWT header: unsupported alg {other:?}"
            ));
        }
    };
    let der = rustls::pki_types::CertificateDer::from(cert.as_slice());
    let ee = webpki::EndEntityCert::try_from(&der).map_err(|e| format!("AADSTS700027: {e}"))?;
    let signed = format!("{}.{}", parts[0], parts[1]);
    ee.verify_signature(alg, signed.as_bytes(), &signature)
        .map_err(|_| "AADSTS700027: Client assertion contains an invalid signature.".to_string())?;
    let aud = claims["aud"].as_str().unwrap_or_default();
    if !audiences.iter().any(|a| a.eq_ignore_ascii_case(aud)) {
        return Err(format!(
            "AADSTS700021: Client assertion audience claim does not match Realm issuer. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials . Provided value: '{aud}'"
        ));
    }
    if claims["iss"].as_str() != Some(client_id) || claims["sub"].as_str() != Some(client_id) {
        return Err(
            "AADSTS700023: Client assertion issuer and subject must be the client id.".into(),
        );
    }
    if claims["jti"].as_str().is_none_or(str::is_empty) {
        return Err("AADSTS700025: Client assertion has no jti.".into());
    }
    // NumericDate may be fractional (MSAL sends floats).
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    let exp = claims["exp"].as_f64().unwrap_or(0.0);
    let nbf = claims["nbf"].as_f64().unwrap_or(now);
    if exp <= now || nbf > now + 300.0 {
        return Err("AADSTS700024: Client assertion is not within its valid time range.".into());
    }
    Ok(())
}
