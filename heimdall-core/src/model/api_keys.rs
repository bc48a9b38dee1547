//! API keys: their scopes, records and the principal a presented key stands for.

use std::fmt;

use chrono::{DateTime, Utc};

use super::{ApiKeyName, Subject};
use crate::error::{Error, Result};

/// What an API key lets its holder do. Keys authenticate automation (adapters); each request an API key
/// makes is checked against one scope by the frontend that serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ApiKeyScope {
    /// `mappings:read`: read the mappings (an adapter's local snapshot).
    MappingsRead,
    /// `grants:read`: read users' grants (reserved for an adapter's local-decision snapshot).
    GrantsRead,
}

impl ApiKeyScope {
    /// Every scope.
    pub const ALL: [ApiKeyScope; 2] = [ApiKeyScope::MappingsRead, ApiKeyScope::GrantsRead];

    /// The scope's name (`mappings:read`).
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyScope::MappingsRead => "mappings:read",
            ApiKeyScope::GrantsRead => "grants:read",
        }
    }

    /// Parses a scope's name; anything else is invalid input naming the scopes there are.
    pub fn parse(s: &str) -> Result<Self> {
        ApiKeyScope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let allowed: Vec<&str> = ApiKeyScope::ALL.iter().map(|s| s.as_str()).collect();
                Error::invalid(format!(
                    "unknown API key scope {:?}: use {}",
                    bounded_for_message(s),
                    allowed.join(", ")
                ))
            })
    }

    /// Parses a key's scopes: at least one, each known; returned sorted, without duplicates.
    pub(crate) fn parse_all(scopes: &[&str]) -> Result<Vec<ApiKeyScope>> {
        if scopes.is_empty() {
            return Err(Error::invalid("an API key needs at least one scope"));
        }
        let mut parsed = scopes
            .iter()
            .map(|s| ApiKeyScope::parse(s))
            .collect::<Result<Vec<_>>>()?;
        parsed.sort_unstable();
        parsed.dedup();
        Ok(parsed)
    }

    /// Scopes as stored: their names separated by spaces.
    pub(crate) fn to_db(scopes: &[ApiKeyScope]) -> String {
        scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
    }

    /// Scopes read back from the database. A name this version does not know (written by a newer one)
    /// grants nothing here, so it is left out.
    pub(crate) fn from_db(text: &str) -> Vec<ApiKeyScope> {
        let mut scopes: Vec<ApiKeyScope> = text
            .split_whitespace()
            .filter_map(|s| ApiKeyScope::parse(s).ok())
            .collect();
        scopes.sort_unstable();
        scopes.dedup();
        scopes
    }
}

impl fmt::Display for ApiKeyScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At most the first 64 bytes of untrusted input, for an error message.
fn bounded_for_message(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// An API key as stored: everything but its secret, which Heimdall never keeps (only its SHA-256).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Database id.
    pub id: i64,
    /// Its name (unique).
    pub name: ApiKeyName,
    /// What it may be used for, sorted.
    pub scopes: Vec<ApiKeyScope>,
    /// Who created it; `None` for the system caller (the audit log names it) or a deleted user.
    pub created_by: Option<Subject>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key authenticates nothing.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When a use of it was last recorded (to the minute: see [`crate::Heimdall::record_api_key_use`]).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it stops authenticating by itself; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key just created, with its secret: the only time the secret is shown. Its `Debug` leaves the secret
/// out.
#[derive(Clone)]
pub struct NewApiKey {
    /// The key.
    pub key: ApiKey,
    /// The secret to hand to the key's holder: `hk_` and 43 characters of base64url (32 random bytes).
    pub secret: String,
}

impl fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Who presented a valid API key (see [`crate::Heimdall::authenticate_api_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyPrincipal {
    /// The key's database id.
    pub id: i64,
    /// The key's name.
    pub name: ApiKeyName,
    /// Its scopes.
    pub scopes: Vec<ApiKeyScope>,
    /// When it stops authenticating; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
}

impl ApiKeyPrincipal {
    /// Whether the key holds `scope`.
    pub fn has_scope(&self, scope: ApiKeyScope) -> bool {
        self.scopes.contains(&scope)
    }

    /// How the audit log names the key as an actor: `api_key:<name>`.
    pub fn actor(&self) -> String {
        format!("api_key:{}", self.name)
    }
}
