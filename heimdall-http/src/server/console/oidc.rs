//! The console's side of OpenID Connect: the authorization code flow with PKCE (RFC 7636, `S256`) against the
//! configured issuer, whose endpoints come from its discovery document.
//!
//! The console asks for an access token and signs the user in with it exactly as the REST API would accept it
//! (the server's token verifier, then JIT provisioning): the same issuer, audience and claims rules, no second
//! way in.

use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use heimdall_core::{Error, ErrorKind, Result};
use serde::Deserialize;
use tokio::sync::OnceCell;

/// How the console reaches the identity provider.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer's URL; its discovery document is at `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// The console's client id at the identity provider (a public client: PKCE, no secret).
    pub client_id: String,
    /// The console's own base URL as the browser reaches it (`https://heimdall.example.com`); the redirect
    /// URI is `{public_url}/console/callback`.
    pub public_url: String,
    /// Accept plain `http://` to an issuer that is not on loopback.
    pub allow_plain_http: bool,
}

/// The endpoints the discovery document names.
#[derive(Debug, Clone, Deserialize)]
struct Endpoints {
    authorization_endpoint: String,
    token_endpoint: String,
}

/// The identity provider, as the console uses it.
#[derive(Debug)]
pub(super) struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    endpoints: OnceCell<Endpoints>,
}

/// What the console keeps between sending the browser to the provider and its coming back.
#[derive(Debug, Clone)]
pub(super) struct PendingSignIn {
    /// The PKCE verifier (its S256 challenge went to the provider).
    pub(super) verifier: String,
}

/// `n` random bytes, base64url without padding.
pub(crate) fn random_token(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::new(ErrorKind::Unexpected, "no randomness available"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The PKCE `S256` challenge of `verifier`.
pub(crate) fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()).as_ref())
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
}

impl Oidc {
    /// The provider of `config` (nothing is fetched until the first sign-in).
    ///
    /// # Errors
    ///
    /// A configuration error for an issuer or public URL that is not `http(s)://`, or plain `http://` to an
    /// issuer off loopback unless allowed.
    pub(super) fn new(config: OidcConfig) -> Result<Oidc> {
        heimdall_core::config::check_transport(&config.issuer, config.allow_plain_http, "CONSOLE_OIDC_ISSUER")?;
        if !(config.public_url.starts_with("https://") || config.public_url.starts_with("http://")) {
            return Err(Error::new(
                ErrorKind::Config,
                "CONSOLE_URL: the console's base URL must start with http:// or https://",
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::new(ErrorKind::Config, "cannot build an HTTP client").with_source(e))?;
        Ok(Oidc {
            config,
            http,
            endpoints: OnceCell::new(),
        })
    }

    /// Where the provider sends the browser back.
    pub(super) fn redirect_uri(&self) -> String {
        format!("{}/console/callback", self.config.public_url.trim_end_matches('/'))
    }

    /// Whether the console's cookies may go over plain HTTP: only when the browser reaches it on loopback.
    pub(super) fn loopback(&self) -> bool {
        let rest = self.config.public_url.strip_prefix("http://").unwrap_or("");
        ["127.0.0.1", "localhost", "[::1]"]
            .iter()
            .any(|host| rest == *host || rest.starts_with(&format!("{host}:")) || rest.starts_with(&format!("{host}/")))
    }

    async fn endpoints(&self) -> Result<&Endpoints> {
        self.endpoints
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let unreachable = |e: reqwest::Error| {
                    Error::new(
                        ErrorKind::Unavailable,
                        "the identity provider's discovery document is unreachable",
                    )
                    .with_source(e.without_url())
                };
                let answer = self.http.get(&url).send().await.map_err(unreachable)?;
                if !answer.status().is_success() {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "the identity provider's discovery document answered {}",
                            answer.status()
                        ),
                    ));
                }
                let endpoints: Endpoints = answer.json().await.map_err(unreachable)?;
                for endpoint in [&endpoints.authorization_endpoint, &endpoints.token_endpoint] {
                    heimdall_core::config::check_transport(endpoint, self.config.allow_plain_http, "an OIDC endpoint")?;
                }
                Ok(endpoints)
            })
            .await
    }

    /// Where to send the browser to sign in, and what to keep until it comes back with `state`.
    pub(super) async fn start(&self, state: &str) -> Result<(String, PendingSignIn)> {
        let endpoints = self.endpoints().await?;
        let verifier = random_token(32)?;
        let mut url = reqwest::Url::parse(&endpoints.authorization_endpoint).map_err(|e| {
            Error::new(ErrorKind::Config, "the provider's authorization endpoint is not a URL").with_source(e)
        })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.redirect_uri())
            .append_pair("scope", "openid profile")
            .append_pair("state", state)
            .append_pair("code_challenge", &challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        Ok((url.into(), PendingSignIn { verifier }))
    }

    /// Exchanges the code the provider sent back for an access token.
    pub(super) async fn exchange(&self, code: &str, pending: &PendingSignIn) -> Result<String> {
        let endpoints = self.endpoints().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri()),
            ("client_id", &self.config.client_id),
            ("code_verifier", &pending.verifier),
        ];
        let body = serde_urlencoded::to_string(form)
            .map_err(|e| Error::new(ErrorKind::Unexpected, "cannot encode the token request").with_source(e))?;
        let answer = self
            .http
            .post(&endpoints.token_endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    "the identity provider's token endpoint is unreachable",
                )
                .with_source(e.without_url())
            })?;
        if !answer.status().is_success() {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                format!("the identity provider refused the sign-in ({})", answer.status()),
            ));
        }
        let token: TokenAnswer = answer.json().await.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                "the identity provider's token answer is unreadable",
            )
            .with_source(e.without_url())
        })?;
        Ok(token.access_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s256_challenge_is_rfc_7636s() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn cookies_go_over_plain_http_only_on_loopback() {
        let oidc = |public_url: &str| {
            Oidc::new(OidcConfig {
                issuer: "https://idp.example".into(),
                client_id: "c".into(),
                public_url: public_url.into(),
                allow_plain_http: false,
            })
            .unwrap()
        };
        assert!(oidc("http://127.0.0.1:8080").loopback());
        assert!(oidc("http://localhost").loopback());
        assert!(!oidc("http://127.0.0.1.example.com").loopback());
        assert!(!oidc("https://heimdall.example").loopback());
    }
}
