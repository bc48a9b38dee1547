//! API keys: scoped, hashed, revocable credentials for automation (adapters).
//!
//! A key's secret is `hk_` followed by 43 characters of base64url: 32 bytes from the system's secure random
//! generator. Heimdall keeps only its SHA-256 (hex): the secret is random and long, so a fast hash is as good
//! as a slow one, and a lookup by hash through the unique index compares nothing secret-dependent in Rust.
//! The secret is shown once, by [`Heimdall::create_api_key`], and never logged or audited.
//!
//! Verified keys are cached for [`API_KEY_CACHE_TTL`]: a key revoked by another process stops
//! authenticating here within that time, and one revoked through this process at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Heimdall, bounded_str, raw_target};
use crate::authz::Operation;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{ApiKey, ApiKeyName, ApiKeyPrincipal, ApiKeyScope, Caller, NewApiKey};
use crate::pdp::pack::{self, action};
use crate::store::{Audit, Write};

/// How long a verified key is trusted without asking the database again: the longest a revocation made by
/// another process takes to be felt here.
pub const API_KEY_CACHE_TTL: Duration = Duration::from_secs(5);
/// How often at most one key's uses for one operation are audited (see [`Heimdall::record_api_key_use`]).
pub const API_KEY_USE_AUDIT_INTERVAL: Duration = Duration::from_secs(60);
/// What every API key secret starts with.
pub const API_KEY_PREFIX: &str = "hk_";

/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;
/// Length of a secret: the prefix and the base64url of [`SECRET_BYTES`] without padding.
const SECRET_LEN: usize = API_KEY_PREFIX.len() + 43;
/// Most verified keys and recorded uses kept in memory.
const CACHE_CAPACITY: u64 = 10_000;

/// This process's memory of API keys: verified keys by the SHA-256 of their secret, and the uses recorded
/// lately.
pub(crate) struct ApiKeyCache {
    verified: moka::sync::Cache<[u8; 32], ApiKeyPrincipal>,
    /// Grows with every revocation through this process: a verification that read the database before a
    /// revocation must not put the key back into `verified` after it.
    revocations: AtomicU64,
    uses: moka::sync::Cache<(i64, String), ()>,
}

impl Default for ApiKeyCache {
    fn default() -> Self {
        ApiKeyCache {
            verified: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(API_KEY_CACHE_TTL)
                .build(),
            revocations: AtomicU64::new(0),
            uses: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(API_KEY_USE_AUDIT_INTERVAL)
                .build(),
        }
    }
}

impl std::fmt::Debug for ApiKeyCache {
    // Counts only: no hashes in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCache")
            .field("verified", &self.verified.entry_count())
            .field("uses", &self.uses.entry_count())
            .finish()
    }
}

/// A new secret: the prefix and 32 random bytes in base64url.
fn new_secret() -> Result<String> {
    let mut bytes = [0u8; SECRET_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::unexpected("the system's random number generator failed"))?;
    Ok(format!(
        "{API_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The SHA-256 of a secret.
fn hash(secret: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref());
    out
}

/// A hash as stored: lower-case hex.
fn hex(hash: &[u8; 32]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(64);
    for b in hash {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whether `secret` has the shape of a Heimdall API key (a cheap check before any hashing or lookup).
fn well_formed(secret: &str) -> bool {
    secret.len() == SECRET_LEN
        && secret.starts_with(API_KEY_PREFIX)
        && secret[API_KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn unauthenticated(message: &'static str) -> Error {
    // The message never holds the secret.
    Error::new(ErrorKind::Unauthenticated, message)
}

impl Heimdall {
    /// Creates an API key named `name` with `scopes` (such as `mappings:read`, see [`ApiKeyScope`]; at least
    /// one) and returns it with its secret, which is shown this once and never again. Superadmins only (the
    /// pack's `api_key:create` on Heimdall itself). Audited (the name and scopes, never the secret); a taken
    /// name is a conflict. Creating a key changes nothing versioned: no change-version bump.
    pub async fn create_api_key(&self, caller: &Caller, name: &str, scopes: &[&str]) -> Result<NewApiKey> {
        self.create_expiring_api_key(caller, name, scopes, None).await
    }

    /// [`Heimdall::create_api_key`], for a key that stops authenticating at `expires_at` (`None`: never). An
    /// expiry that is not in the future is invalid input.
    pub async fn create_expiring_api_key(
        &self,
        caller: &Caller,
        name: &str,
        scopes: &[&str],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<NewApiKey> {
        let request = json!({"name": name, "scopes": scopes, "expires_at": expires_at});
        self.mutate(
            caller,
            "create_api_key",
            request,
            &raw_target("api_key", name),
            move |attempt| async move {
                let name = ApiKeyName::parse(name)?;
                let scopes = ApiKeyScope::parse_all(scopes)?;
                if let Some(at) = expires_at
                    && at <= self.inner.clock.now()
                {
                    return Err(Error::invalid(format!("expires_at {at} is not in the future")));
                }
                let w = attempt
                    .authorize(vec![Operation::new(action::API_KEY_CREATE, pack::system())], None)
                    .await?;
                let secret = new_secret()?;
                let key = self
                    .store()
                    .create_api_key(&w, &name, &hex(&hash(&secret)), &scopes, expires_at)
                    .await?;
                Ok(NewApiKey { key, secret })
            },
        )
        .await
    }

    /// Every API key, revoked ones too, by id; never a secret or its hash. Superadmins only (the pack's
    /// `api_key:read`); a refusal is audited, a listing is not (reads are not).
    pub async fn list_api_keys(&self, caller: &Caller) -> Result<Vec<ApiKey>> {
        self.audited_read(caller, "list_api_keys", json!({}), &pack::system(), || async {
            self.authorize_caller(caller, Operation::new(action::API_KEY_READ, pack::system()))
                .await?;
            self.store().list_api_keys().await
        })
        .await
    }

    /// Revokes API key `id`: from now on it authenticates nothing, at once in this process and within
    /// [`API_KEY_CACHE_TTL`] in others. Revoking a revoked key succeeds and changes nothing (idempotent; the
    /// first revocation's time stays); an unknown id is [`ErrorKind::NotFound`]. Superadmins only (the
    /// pack's `api_key:revoke`); audited.
    pub async fn revoke_api_key(&self, caller: &Caller, id: i64) -> Result<()> {
        self.mutate(
            caller,
            "revoke_api_key",
            json!({"id": id}),
            &raw_target("api_key", id),
            move |attempt| async move {
                let w = attempt
                    .authorize(vec![Operation::new(action::API_KEY_REVOKE, pack::system())], None)
                    .await?;
                self.store().revoke_api_key(&w, id).await
            },
        )
        .await?;
        // Revocations are rare: forget every verified key rather than look for this one's hash.
        let cache = &self.inner.api_keys;
        cache.revocations.fetch_add(1, Ordering::AcqRel);
        cache.verified.invalidate_all();
        Ok(())
    }

    /// The key whose secret `secret` is. A malformed, unknown, revoked or expired secret is
    /// [`ErrorKind::Unauthenticated`] (the message never repeats it); a database failure is
    /// [`ErrorKind::Unavailable`]. Verified keys are cached for [`API_KEY_CACHE_TTL`], so most calls read
    /// no database; check [`ApiKeyPrincipal::has_scope`] before serving the request.
    pub async fn authenticate_api_key(&self, secret: &str) -> Result<ApiKeyPrincipal> {
        if !well_formed(secret) {
            return Err(unauthenticated("malformed API key"));
        }
        let hash = hash(secret);
        let cache = &self.inner.api_keys;
        let expired = |key: &ApiKeyPrincipal| key.expires_at.is_some_and(|at| at <= self.inner.clock.now());
        if let Some(key) = cache.verified.get(&hash) {
            if expired(&key) {
                return Err(unauthenticated("expired API key"));
            }
            return Ok(key);
        }
        let revocations = cache.revocations.load(Ordering::Acquire);
        let Some(key) = self.store().active_api_key(&hex(&hash)).await? else {
            return Err(unauthenticated("unknown or revoked API key"));
        };
        if expired(&key) {
            return Err(unauthenticated("expired API key"));
        }
        if cache.revocations.load(Ordering::Acquire) == revocations {
            cache.verified.insert(hash, key.clone());
        }
        Ok(key)
    }

    /// Makes a use of `key` attributable without an audit row per request: writes an audit row (actor
    /// `api_key:<name>`, operation `api_key_use`, target `target` — what was used, such as `mappings` —
    /// and request `{"operation": operation}`) and sets the key's `last_used_at`, at most once per key and
    /// operation per [`API_KEY_USE_AUDIT_INTERVAL`] in this process; other calls return at once. The row
    /// names the first target of its interval, and `last_used_at` is accurate to that interval.
    ///
    /// A failure is logged here and returned; a frontend should not fail the request it serves because of
    /// it (the next call tries again).
    pub async fn record_api_key_use(&self, key: &ApiKeyPrincipal, operation: &str, target: &str) -> Result<()> {
        let operation = bounded_str(operation);
        let seen = (key.id, operation.clone());
        let uses = &self.inner.api_keys.uses;
        if !uses.entry(seen.clone()).or_insert(()).is_fresh() {
            return Ok(());
        }
        let w = Write {
            now: self.now(),
            audit: Audit {
                actor: None,
                actor_name: Some(key.actor()),
                operation: "api_key_use",
                target_type: "api".to_owned(),
                target_id: bounded_str(target),
                request: json!({"operation": operation}),
            },
            guard: Vec::new(),
            notes: serde_json::Map::new(),
        };
        let recorded = self.store().record_api_key_use(&w, key.id).await;
        if let Err(e) = &recorded {
            uses.invalidate(&seen);
            tracing::warn!(key = %key.name, error = %e, "could not record a use of an API key");
        }
        recorded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_well_formed_random_and_hashed() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), SECRET_LEN);
        assert!(well_formed(&a) && well_formed(&b), "{a}");
        assert!(!well_formed(&a[..SECRET_LEN - 1]));
        assert!(!well_formed(&format!("hx_{}", &a[3..])));
        assert!(!well_formed(&format!("{}=", &a[..SECRET_LEN - 1])));
        assert!(!well_formed(&format!("{}é", &a[..SECRET_LEN - 2])));
        // SHA-256 of "abc" (FIPS 180-2).
        assert_eq!(
            hex(&hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
