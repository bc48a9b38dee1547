//! [`AuthorizerSettings`]: how an [`crate::Authorizer`] is configured — the settings names of heimdall-py's
//! `Authorizer(...)` — and [`settings_from_env`], the same from the environment variables heimdall-http reads
//! where it has one (`KEYCLOAK_JWKS_URL`, `JWT_ISSUER`, `JWT_AUDIENCE`, `CERBOS_CHECK_URL`, `DB_DSN`,
//! `HEIMDALL_ALLOW_PLAIN_HTTP`), and `HEIMDALL_*` for the rest.

use crate::errors::{HeimdallError, config};

/// How an authorizer verifies tokens, where it reads mappings, and who decides (see the README).
#[derive(Debug, Clone, uniffi::Record)]
pub struct AuthorizerSettings {
    /// The identity provider's JWKS URL (required).
    pub jwks_url: String,
    /// heimdall-http's base URL, to follow its mapping export and change feed (with `credential`).
    #[uniffi(default = None)]
    pub heimdall_url: Option<String>,
    /// An API key with `mappings:read` (and `grants:read` to decide locally), or heimdall-http's static token.
    #[uniffi(default = None)]
    pub credential: Option<String>,
    /// Instead of following heimdall-http: read the mappings from Heimdall's database (needs `cerbos_url`).
    #[uniffi(default = None)]
    pub database_url: Option<String>,
    /// Decide with this Cerbos (holding the principal policies Heimdall pushed); unset: decide locally from
    /// heimdall-http's grants export.
    #[uniffi(default = None)]
    pub cerbos_url: Option<String>,
    /// The `iss` every token must carry.
    #[uniffi(default = None)]
    pub issuer: Option<String>,
    /// The `aud` every token must carry.
    #[uniffi(default = None)]
    pub audience: Option<String>,
    /// Requests no mapping covers: `"deny"` (403, the default) or `"allow"` (let through and counted).
    #[uniffi(default = "deny")]
    pub unmapped: String,
    /// Let authenticated requests through, counted, before the first snapshot (for at most
    /// `before_snapshot_deadline` seconds); `false` (the default) refuses them with 503.
    #[uniffi(default = false)]
    pub allow_before_snapshot: bool,
    /// Seconds `allow_before_snapshot` lasts.
    #[uniffi(default = 30.0)]
    pub before_snapshot_deadline: f64,
    /// Seconds between polls of heimdall-http when its change feed is not open.
    #[uniffi(default = 30.0)]
    pub poll_interval: f64,
    /// Seconds a decision is reused (it is also dropped when the grants or mappings change).
    #[uniffi(default = 5.0)]
    pub decision_ttl: f64,
    /// Accept plain `http://` URLs to hosts other than loopback (refused by default).
    #[uniffi(default = false)]
    pub allow_plain_http: bool,
    /// Deciding locally: fetch each subject's grants on first use and hold at most this many subjects, instead
    /// of loading every subject's grants from the export (unset, the default).
    #[uniffi(default = None)]
    pub grants_cache_capacity: Option<u64>,
}

/// The settings from the environment: `KEYCLOAK_JWKS_URL` (required), `JWT_ISSUER`, `JWT_AUDIENCE`,
/// `HEIMDALL_URL` with `HEIMDALL_CREDENTIAL`, or `DB_DSN`; `CERBOS_CHECK_URL`; `HEIMDALL_UNMAPPED`
/// (`deny`/`allow`), `HEIMDALL_ALLOW_BEFORE_SNAPSHOT`, `HEIMDALL_BEFORE_SNAPSHOT_DEADLINE_SECONDS`,
/// `HEIMDALL_POLL_INTERVAL_SECONDS`, `HEIMDALL_DECISION_TTL_SECONDS`, `HEIMDALL_ALLOW_PLAIN_HTTP`,
/// `HEIMDALL_GRANTS_CACHE_CAPACITY`. A set but malformed variable is an error naming it.
#[uniffi::export]
pub fn settings_from_env() -> Result<AuthorizerSettings, HeimdallError> {
    from_lookup(|name| std::env::var(name).ok())
}

fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<AuthorizerSettings, HeimdallError> {
    let text = |name: &str| get(name).filter(|v| !v.trim().is_empty());
    let flag = |name: &str| -> Result<bool, HeimdallError> {
        match text(name).as_deref().map(str::trim) {
            None => Ok(false),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(other) => Err(config(format!("{name} must be true or false, not {other:?}"))),
        }
    };
    let seconds = |name: &str, default: f64| -> Result<f64, HeimdallError> {
        match text(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| config(format!("{name} must be a positive number of seconds, not {v:?}"))),
        }
    };
    Ok(AuthorizerSettings {
        jwks_url: text("KEYCLOAK_JWKS_URL").ok_or_else(|| config("KEYCLOAK_JWKS_URL is not set"))?,
        heimdall_url: text("HEIMDALL_URL"),
        credential: text("HEIMDALL_CREDENTIAL"),
        database_url: text("DB_DSN"),
        cerbos_url: text("CERBOS_CHECK_URL"),
        issuer: text("JWT_ISSUER"),
        audience: text("JWT_AUDIENCE"),
        unmapped: text("HEIMDALL_UNMAPPED").unwrap_or_else(|| "deny".to_owned()),
        allow_before_snapshot: flag("HEIMDALL_ALLOW_BEFORE_SNAPSHOT")?,
        before_snapshot_deadline: seconds("HEIMDALL_BEFORE_SNAPSHOT_DEADLINE_SECONDS", 30.0)?,
        poll_interval: seconds("HEIMDALL_POLL_INTERVAL_SECONDS", 30.0)?,
        decision_ttl: seconds("HEIMDALL_DECISION_TTL_SECONDS", 5.0)?,
        allow_plain_http: flag("HEIMDALL_ALLOW_PLAIN_HTTP")?,
        grants_cache_capacity: match text("HEIMDALL_GRANTS_CACHE_CAPACITY") {
            None => None,
            Some(v) => Some(v.trim().parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                config(format!(
                    "HEIMDALL_GRANTS_CACHE_CAPACITY must be a positive number of subjects, not {v:?}"
                ))
            })?),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<AuthorizerSettings, HeimdallError> {
        from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn the_environment_gives_every_setting_and_defaults_the_rest() {
        let s = settings(&[
            ("KEYCLOAK_JWKS_URL", "https://idp/certs"),
            ("HEIMDALL_URL", "https://heimdall"),
            ("HEIMDALL_CREDENTIAL", "hk_x"),
            ("JWT_AUDIENCE", "orders"),
            ("HEIMDALL_UNMAPPED", "allow"),
            ("HEIMDALL_DECISION_TTL_SECONDS", "2.5"),
            ("HEIMDALL_ALLOW_PLAIN_HTTP", "true"),
            ("HEIMDALL_GRANTS_CACHE_CAPACITY", "5000"),
        ])
        .expect("valid");
        assert_eq!(s.grants_cache_capacity, Some(5000));
        assert_eq!(s.jwks_url, "https://idp/certs");
        assert_eq!(s.heimdall_url.as_deref(), Some("https://heimdall"));
        assert_eq!(s.credential.as_deref(), Some("hk_x"));
        assert_eq!(s.audience.as_deref(), Some("orders"));
        assert_eq!(s.issuer, None);
        assert_eq!(s.unmapped, "allow");
        assert!((s.decision_ttl - 2.5).abs() < f64::EPSILON);
        assert!((s.poll_interval - 30.0).abs() < f64::EPSILON);
        assert!(s.allow_plain_http);
        assert!(!s.allow_before_snapshot);
    }

    #[test]
    fn a_missing_jwks_or_a_malformed_variable_is_named() {
        let missing = settings(&[]).expect_err("no JWKS");
        assert!(missing.to_string().contains("KEYCLOAK_JWKS_URL"), "{missing}");
        let bad = settings(&[("KEYCLOAK_JWKS_URL", "x"), ("HEIMDALL_POLL_INTERVAL_SECONDS", "-1")])
            .expect_err("negative interval");
        assert!(bad.to_string().contains("HEIMDALL_POLL_INTERVAL_SECONDS"), "{bad}");
        let capacity =
            settings(&[("KEYCLOAK_JWKS_URL", "x"), ("HEIMDALL_GRANTS_CACHE_CAPACITY", "0")]).expect_err("no subjects");
        assert!(
            capacity.to_string().contains("HEIMDALL_GRANTS_CACHE_CAPACITY"),
            "{capacity}"
        );
        assert_eq!(
            settings(&[("KEYCLOAK_JWKS_URL", "x")])
                .expect("valid")
                .grants_cache_capacity,
            None
        );
        let flag =
            settings(&[("KEYCLOAK_JWKS_URL", "x"), ("HEIMDALL_ALLOW_PLAIN_HTTP", "maybe")]).expect_err("not a flag");
        assert!(flag.to_string().contains("HEIMDALL_ALLOW_PLAIN_HTTP"), "{flag}");
    }
}
