//! Identity: verifying bearer tokens (JWTs) against the identity provider's published keys (JWKS).
//!
//! A [`TokenVerifier`] fetches the JWKS at [`IdentityConfig::jwks_url`] and keeps its keys in a cache
//! (moka) for [`IdentityConfig::keys_ttl`]. A token whose `kid` it does not know makes it fetch the JWKS
//! again, at most once per [`IdentityConfig::refetch_interval`], so that garbage `kid`s cannot turn into a
//! flood of requests to the identity provider. The rules:
//!
//! - The algorithm is the key's (its JWK `alg`, or RS256 for an RSA key and ES256/ES384 for a P-256/P-384 EC
//!   key without one), never the token's: a token whose header names another algorithm is refused (so `none`,
//!   or HS256 signed with the public key, never pass). Symmetric (`oct`) keys in a JWKS are ignored.
//! - `exp` is required; `exp` and `nbf` are checked with [`IdentityConfig::leeway`]; `iss` and `aud` when
//!   configured.
//! - The subject comes from [`IdentityConfig::subject_claim`] (default `preferred_username`), else `sub`.
//! - Groups and roles come from the claims [`IdentityConfig::groups_claim`] and
//!   [`IdentityConfig::roles_claim`] (dotted paths such as `realm_access.roles`), for option A.
//!
//! A token that fails any check is [`ErrorKind::Unauthenticated`](crate::ErrorKind::Unauthenticated) (401 at
//! the HTTP frontend); keys that cannot be fetched for a token Heimdall has no key for are
//! [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) (503) — known keys keep working meanwhile. Tokens
//! are never logged.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Claims, Subject};

/// Longest token accepted, in bytes: anything longer is refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// How tokens are verified.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The identity provider's JWKS (the spec's `KEYCLOAK_JWKS_URL`).
    pub jwks_url: String,
    /// The required `iss`, when set (`JWT_ISSUER`).
    pub issuer: Option<String>,
    /// The required `aud`, when set (`JWT_AUDIENCE`).
    pub audience: Option<String>,
    /// The claim that names the user; `sub` when the token lacks it.
    pub subject_claim: String,
    /// The claim (dotted path) holding the user's identity-provider groups.
    pub groups_claim: String,
    /// The claim (dotted path) holding roles, merged when [`crate::Config::merge_token_roles`] is on.
    pub roles_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// How long fetched keys are trusted before the JWKS is fetched again.
    pub keys_ttl: Duration,
    /// The shortest time between two fetches caused by unknown `kid`s.
    pub refetch_interval: Duration,
    /// Time limit of one JWKS fetch.
    pub fetch_timeout: Duration,
}

impl IdentityConfig {
    /// A configuration with the defaults for everything but the JWKS URL.
    pub fn new(jwks_url: impl Into<String>) -> Self {
        IdentityConfig {
            jwks_url: jwks_url.into(),
            issuer: None,
            audience: None,
            subject_claim: "preferred_username".to_owned(),
            groups_claim: "groups".to_owned(),
            roles_claim: "realm_access.roles".to_owned(),
            leeway: Duration::from_secs(30),
            keys_ttl: Duration::from_secs(600),
            refetch_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
        }
    }
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    claims: Claims,
    groups: Vec<String>,
    roles: Vec<String>,
    expires_at: i64,
}

impl VerifiedIdentity {
    /// The claims a user is provisioned from.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The identity provider's groups of the bearer (option A).
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The roles the token carries.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// The token's `exp`, in seconds since the Unix epoch (how long a verification may be cached).
    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

/// A key of the JWKS, with the one algorithm it verifies.
struct VerifyKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Verifies bearer tokens (see the module docs). Cheap to clone; clones share the key cache.
#[derive(Clone)]
pub struct TokenVerifier {
    config: Arc<IdentityConfig>,
    http: reqwest::Client,
    keys: moka::sync::Cache<String, Arc<VerifyKey>>,
    /// When the JWKS was last fetched because of an unknown `kid`, and whether that worked; one fetch at a time.
    last_fetch: Arc<tokio::sync::Mutex<Option<(Instant, bool)>>>,
    /// JWKS fetches: (succeeded, failed).
    fetches: Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("jwks_url", &self.config.jwks_url)
            .field("cached_keys", &self.keys.entry_count())
            .finish()
    }
}

fn unauthenticated(why: &str) -> Error {
    Error::new(ErrorKind::Unauthenticated, format!("invalid bearer token: {why}"))
}

/// The one algorithm a JWK verifies, or `None` for keys Heimdall does not accept (symmetric, unknown, or
/// declaring an algorithm its key type cannot have).
fn key_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use KeyAlgorithm as K;
    let declared = jwk.common.key_algorithm;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => match declared {
            None | Some(K::RS256) => Some(Algorithm::RS256),
            Some(K::RS384) => Some(Algorithm::RS384),
            Some(K::RS512) => Some(Algorithm::RS512),
            Some(K::PS256) => Some(Algorithm::PS256),
            Some(K::PS384) => Some(Algorithm::PS384),
            Some(K::PS512) => Some(Algorithm::PS512),
            Some(_) => None,
        },
        AlgorithmParameters::EllipticCurve(ec) => match (&ec.curve, declared) {
            (EllipticCurve::P256, None | Some(K::ES256)) => Some(Algorithm::ES256),
            (EllipticCurve::P384, None | Some(K::ES384)) => Some(Algorithm::ES384),
            _ => None,
        },
        _ => None,
    }
}

/// The value at a dotted path (`realm_access.roles`) of the claims.
fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

/// The strings of a list claim (anything else: none).
fn strings_at(claims: &Map<String, Value>, path: &str) -> Vec<String> {
    match claim_at(claims, path) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

impl TokenVerifier {
    /// A verifier for `config`. Keys are fetched on the first token.
    pub fn new(config: IdentityConfig) -> Result<Self> {
        if !(config.jwks_url.starts_with("http://") || config.jwks_url.starts_with("https://")) {
            return Err(Error::config("the JWKS URL must start with http:// or https://"));
        }
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .build()
            .map_err(|e| Error::config("cannot build the JWKS client").with_source(e))?;
        let keys = moka::sync::Cache::builder()
            .max_capacity(1024)
            .time_to_live(config.keys_ttl)
            .build();
        Ok(TokenVerifier {
            config: Arc::new(config),
            http,
            keys,
            last_fetch: Arc::new(tokio::sync::Mutex::new(None)),
            fetches: Arc::default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// Fetches the JWKS and caches every key Heimdall accepts.
    async fn fetch_keys(&self) -> Result<()> {
        let result = self.fetch_keys_once().await;
        let counter = if result.is_ok() {
            &self.fetches.0
        } else {
            &self.fetches.1
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        result
    }

    /// How many JWKS fetches this verifier made: `(succeeded, failed)` (a frontend's metric).
    pub fn fetch_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.fetches.0.load(Relaxed), self.fetches.1.load(Relaxed))
    }

    async fn fetch_keys_once(&self) -> Result<()> {
        let fail = |what: &str| Error::unavailable(format!("cannot fetch the identity provider's keys: {what}"));
        let response = self
            .http
            .get(&self.config.jwks_url)
            .send()
            .await
            .map_err(|e| fail("unreachable").with_source(e))?;
        if !response.status().is_success() {
            return Err(fail(&format!("HTTP {}", response.status())));
        }
        let set: JwkSet = response.json().await.map_err(|e| fail("not a JWKS").with_source(e))?;
        for jwk in &set.keys {
            let (Some(kid), Some(algorithm)) = (jwk.common.key_id.as_ref(), key_algorithm(jwk)) else {
                continue;
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => self.keys.insert(kid.clone(), Arc::new(VerifyKey { algorithm, key })),
                Err(e) => tracing::warn!(kid = %kid, error = %e, "ignoring a JWKS key that cannot verify"),
            }
        }
        tracing::debug!(keys = set.keys.len(), "fetched the identity provider's keys");
        Ok(())
    }

    /// The key for `kid`, fetching the JWKS when it is unknown and the last such fetch is old enough: after a
    /// successful fetch, [`IdentityConfig::refetch_interval`]; after a failed one, at most a second (until
    /// then the answer is "unavailable", not "unauthenticated": Heimdall cannot tell).
    async fn key(&self, kid: &str) -> Result<Arc<VerifyKey>> {
        if let Some(key) = self.keys.get(kid) {
            return Ok(key);
        }
        let mut last = self.last_fetch.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.keys.get(kid) {
            return Ok(key);
        }
        match *last {
            Some((at, true)) if at.elapsed() < self.config.refetch_interval => {
                return Err(unauthenticated("unknown key id"));
            }
            Some((at, false)) if at.elapsed() < self.config.refetch_interval.min(Duration::from_secs(1)) => {
                return Err(Error::unavailable("the identity provider's keys could not be fetched"));
            }
            _ => {}
        }
        let fetched = self.fetch_keys().await;
        *last = Some((Instant::now(), fetched.is_ok()));
        fetched?;
        self.keys.get(kid).ok_or_else(|| unauthenticated("unknown key id"))
    }

    /// Verifies `token` (the bearer token, without `Bearer `) and returns what it says about its bearer.
    pub async fn verify(&self, token: &str) -> Result<VerifiedIdentity> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(unauthenticated("missing or too long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthenticated("malformed"))?;
        let kid = header.kid.as_deref().ok_or_else(|| unauthenticated("no key id"))?;
        let key = self.key(kid).await?;
        if header.alg != key.algorithm {
            return Err(unauthenticated("its algorithm is not its key's"));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
        match &self.config.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match &self.config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as J;
            unauthenticated(match e.kind() {
                J::ExpiredSignature => "expired",
                J::ImmatureSignature => "not valid yet",
                J::InvalidAudience => "wrong audience",
                J::InvalidIssuer => "wrong issuer",
                J::InvalidSignature => "bad signature",
                J::MissingRequiredClaim(_) => "a required claim is missing",
                _ => "invalid",
            })
        })?;
        let claims = data.claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        // Display data only: a NUL (which PostgreSQL's text cannot hold) is shown as U+FFFD. The subject is
        // never rewritten: one that is not valid (a NUL is not printable) refuses the token.
        let display = |name: &str| text(name).map(|s| s.replace('\0', "\u{FFFD}"));
        let subject = text(&self.config.subject_claim)
            .or_else(|| text("sub"))
            .ok_or_else(|| unauthenticated("no subject"))?;
        let subject = Subject::parse(subject).map_err(|_| unauthenticated("the subject is not valid"))?;
        Ok(VerifiedIdentity {
            claims: Claims {
                subject,
                display_name: display("name"),
                email: display("email"),
            },
            groups: strings_at(&claims, &self.config.groups_claim),
            roles: strings_at(&claims, &self.config.roles_claim),
            expires_at: claims.get("exp").and_then(Value::as_i64).unwrap_or_default(),
        })
    }
}
