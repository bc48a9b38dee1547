//! Identity: verifying bearer tokens (JWTs) against the identity provider's published keys (JWKS).
//!
//! A [`TokenVerifier`] fetches the JWKS at [`IdentityConfig::jwks_url`] and trusts exactly the keys of its
//! last successful fetch. While tokens keep coming, the JWKS is fetched again once that fetch is older than
//! [`IdentityConfig::refresh_interval`] (5 minutes by default): a key the provider removed stops being
//! trusted then. A failed refresh keeps the known keys serving (the provider is down, not compromised) and is
//! retried at most once a second. A token whose `kid` it does not know makes it fetch the JWKS again, at most
//! once per [`IdentityConfig::refetch_interval`], so that garbage `kid`s cannot turn into a flood of requests
//! to the identity provider. The rules:
//!
//! - The algorithm is the key's (its JWK `alg`, or RS256 for an RSA key and ES256/ES384 for a P-256/P-384 EC
//!   key without one), never the token's: a token whose header names another algorithm is refused (so `none`,
//!   or HS256 signed with the public key, never pass). Symmetric (`oct`) keys in a JWKS are ignored.
//! - `exp` is required; `exp` and `nbf` are checked with [`IdentityConfig::leeway`]. When an issuer or an
//!   audience is configured, the token must carry that `iss` / `aud`: a token without the claim is refused
//!   like one with a wrong value.
//! - Only access tokens: a header `typ` other than absent, `JWT`, `at+jwt` or `application/at+jwt` (RFC 9068)
//!   is refused, and so is a payload `typ` other than `Bearer` when present (Keycloak's ID and refresh tokens
//!   say `ID` and `Refresh`).
//! - The subject comes from [`IdentityConfig::subject_claim`] (default `preferred_username`) and from no
//!   other claim: a token without it is refused, so two tokens can never name one user through two claims.
//! - Groups and roles come from the claims [`IdentityConfig::groups_claim`] and
//!   [`IdentityConfig::roles_claim`] (dotted paths such as `realm_access.roles`), for option A.
//!
//! A token that fails any check is [`ErrorKind::Unauthenticated`](crate::ErrorKind::Unauthenticated) (401 at
//! the HTTP frontend); keys that cannot be fetched for a token Heimdall has no key for are
//! [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) (503) — known keys keep working meanwhile. Tokens
//! are never logged.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Claims, Subject};

/// Longest token accepted, in bytes: anything longer is refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The token of an `Authorization` header value, `Bearer <token>` (the scheme in any case, the token trimmed of
/// spaces and tabs), or `None` for another scheme or an empty token. What every frontend reads a request's
/// token with.
///
/// ```
/// use heimdall_core::identity::bearer_token;
/// assert_eq!(bearer_token("Bearer abc"), Some("abc"));
/// assert_eq!(bearer_token("bearer  abc "), Some("abc"));
/// assert_eq!(bearer_token("Basic abc"), None);
/// assert_eq!(bearer_token("Bearer "), None);
/// assert_eq!(bearer_token("Bearer"), None);
/// ```
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_matches([' ', '\t']))
        .filter(|t| !t.is_empty())
}

/// How tokens are verified.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// The identity provider's JWKS (the spec's `KEYCLOAK_JWKS_URL`).
    pub jwks_url: String,
    /// The required `iss`, when set (`JWT_ISSUER`).
    pub issuer: Option<String>,
    /// The required `aud`, when set (`JWT_AUDIENCE`).
    pub audience: Option<String>,
    /// The claim that names the user. A token without it is refused (no fallback to another claim).
    pub subject_claim: String,
    /// The claim (dotted path) holding the user's identity-provider groups.
    pub groups_claim: String,
    /// The claim (dotted path) holding roles, merged when [`crate::Config::merge_token_roles`] is on.
    pub roles_claim: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// How old the last JWKS fetch may get before a token makes Heimdall fetch it again (keys the provider
    /// removed are trusted until then, no longer).
    pub refresh_interval: Duration,
    /// The shortest time between two fetches caused by unknown `kid`s.
    pub refetch_interval: Duration,
    /// Time limit of one JWKS fetch.
    pub fetch_timeout: Duration,
    /// Accept a JWKS URL over plain `http://` to a host other than loopback (keys fetched so could be
    /// swapped on the way). Off by default.
    pub allow_plain_http: bool,
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
            refresh_interval: Duration::from_secs(300),
            refetch_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
            allow_plain_http: false,
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

/// The header `typ` values of access tokens (compared ignoring case, as media types are): plain JWTs and
/// RFC 9068's JWT access tokens. A token without a `typ` is accepted too.
const ACCESS_TOKEN_TYPES: [&str; 3] = ["JWT", "at+jwt", "application/at+jwt"];

/// A key of the JWKS, with the one algorithm it verifies.
struct VerifyKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Most keys taken from one JWKS (an identity provider publishes a handful).
const MAX_KEYS: usize = 64;

/// The keys of the last successful JWKS fetch, and when it was.
struct KeySet {
    keys: HashMap<String, Arc<VerifyKey>>,
    fetched_at: Instant,
}

/// Verifies bearer tokens (see the module docs). Cheap to clone; clones share the keys.
#[derive(Clone)]
pub struct TokenVerifier {
    config: Arc<IdentityConfig>,
    http: reqwest::Client,
    /// The keys of the last successful fetch (none before the first).
    keys: Arc<ArcSwapOption<KeySet>>,
    /// When the JWKS was last fetched, and whether that worked; held during a fetch (one at a time).
    last_fetch: Arc<tokio::sync::Mutex<Option<(Instant, bool)>>>,
    /// JWKS fetches: (succeeded, failed).
    fetches: Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("jwks_url", &self.config.jwks_url)
            .field("keys", &self.keys.load().as_ref().map_or(0, |set| set.keys.len()))
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
        crate::config::check_transport(&config.jwks_url, config.allow_plain_http, "the JWKS URL")?;
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .build()
            .map_err(|e| Error::config("cannot build the JWKS client").with_source(e))?;
        Ok(TokenVerifier {
            config: Arc::new(config),
            http,
            keys: Arc::default(),
            last_fetch: Arc::new(tokio::sync::Mutex::new(None)),
            fetches: Arc::default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// Fetches the JWKS and, when that works, trusts exactly the keys Heimdall accepts from it.
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
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Some(algorithm)) = (jwk.common.key_id.as_ref(), key_algorithm(jwk)) else {
                continue;
            };
            if keys.len() == MAX_KEYS {
                tracing::warn!(
                    max = MAX_KEYS,
                    "the JWKS holds more keys than Heimdall takes; ignoring the rest"
                );
                break;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid.clone(), Arc::new(VerifyKey { algorithm, key }));
                }
                Err(e) => tracing::warn!(kid = %kid, error = %e, "ignoring a JWKS key that cannot verify"),
            }
        }
        tracing::debug!(keys = keys.len(), "fetched the identity provider's keys");
        self.keys.store(Some(Arc::new(KeySet {
            keys,
            fetched_at: Instant::now(),
        })));
        Ok(())
    }

    /// The key for `kid`. The keys of the last successful fetch serve while that fetch is younger than
    /// [`IdentityConfig::refresh_interval`]; after that the JWKS is fetched again first (a request that finds
    /// another one fetching goes on with the known keys), and if the provider can't be reached the known keys
    /// keep serving, with a new attempt at most once a second. An unknown `kid` makes Heimdall fetch the JWKS
    /// when the last fetch is old enough: after a successful one, [`IdentityConfig::refetch_interval`]; after
    /// a failed one, a second (until then the answer is "unavailable", not "unauthenticated": Heimdall cannot
    /// tell).
    async fn key(&self, kid: &str) -> Result<Arc<VerifyKey>> {
        let fresh = |set: &KeySet| set.fetched_at.elapsed() < self.config.refresh_interval;
        let known = self.keys.load_full();
        let stale_key = match known.as_deref() {
            Some(set) => match set.keys.get(kid) {
                Some(key) if fresh(set) => return Ok(Arc::clone(key)),
                Some(key) => Some(Arc::clone(key)),
                None => None,
            },
            None => None,
        };
        let mut last = match (&stale_key, self.last_fetch.try_lock()) {
            (_, Ok(last)) => last,
            // Somebody is refreshing: a known key goes on serving meanwhile.
            (Some(key), Err(_)) => return Ok(Arc::clone(key)),
            (None, Err(_)) => self.last_fetch.lock().await,
        };
        // Another request may have fetched while this one waited.
        let known = self.keys.load_full();
        if let Some(set) = known.as_deref().filter(|set| fresh(set))
            && let Some(key) = set.keys.get(kid)
        {
            return Ok(Arc::clone(key));
        }
        let retry_after_failure = Duration::from_secs(1).min(self.config.refetch_interval);
        let due = match (*last, known.as_deref()) {
            (Some((at, false)), _) if at.elapsed() < retry_after_failure => false,
            // Nothing known yet, or the known keys are due for a refresh.
            (_, None) => true,
            (_, Some(set)) if !fresh(set) => true,
            // Fresh keys without this `kid`.
            (Some((at, true)), Some(_)) => at.elapsed() >= self.config.refetch_interval,
            (_, Some(_)) => true,
        };
        if !due {
            return match (stale_key, *last) {
                (Some(key), _) => Ok(key),
                (None, Some((_, false))) => {
                    Err(Error::unavailable("the identity provider's keys could not be fetched"))
                }
                (None, _) => Err(unauthenticated("unknown key id")),
            };
        }
        let fetched = self.fetch_keys().await;
        *last = Some((Instant::now(), fetched.is_ok()));
        match fetched {
            Ok(()) => self
                .keys
                .load()
                .as_ref()
                .and_then(|set| set.keys.get(kid).cloned())
                .ok_or_else(|| unauthenticated("unknown key id")),
            Err(e) => {
                if let Some(key) = stale_key {
                    tracing::warn!(error = %e, "the identity provider's keys could not be refreshed; the known keys keep serving");
                    Ok(key)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Verifies `token` (the bearer token, without `Bearer `) and returns what it says about its bearer.
    pub async fn verify(&self, token: &str) -> Result<VerifiedIdentity> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(unauthenticated("missing or too long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthenticated("malformed"))?;
        if let Some(typ) = &header.typ
            && !ACCESS_TOKEN_TYPES.iter().any(|t| t.eq_ignore_ascii_case(typ))
        {
            return Err(unauthenticated("not an access token (header typ)"));
        }
        let kid = header.kid.as_deref().ok_or_else(|| unauthenticated("no key id"))?;
        let key = self.key(kid).await?;
        if header.alg != key.algorithm {
            return Err(unauthenticated("its algorithm is not its key's"));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
        // A configured claim is required: a token without it is refused like one with a wrong value.
        match &self.config.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                validation.required_spec_claims.insert("iss".to_owned());
            }
            None => validation.iss = None,
        }
        match &self.config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".to_owned());
            }
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
                J::MissingRequiredClaim(claim) => match claim.as_str() {
                    "aud" => "no audience",
                    "iss" => "no issuer",
                    _ => "a required claim is missing",
                },
                _ => "invalid",
            })
        })?;
        let claims = data.claims;
        // Keycloak marks its tokens: only its access tokens (`Bearer`) are credentials.
        if let Some(typ) = claims.get("typ")
            && typ.as_str() != Some("Bearer")
        {
            return Err(unauthenticated("not an access token (typ)"));
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        // Display data only: a NUL (which PostgreSQL's text cannot hold) is shown as U+FFFD. The subject is
        // never rewritten: one that is not valid (a NUL is not printable) refuses the token.
        let display = |name: &str| text(name).map(|s| s.replace('\0', "\u{FFFD}"));
        let subject = text(&self.config.subject_claim).ok_or_else(|| unauthenticated("no subject"))?;
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
