//! Typed configuration. Core reads no environment variables and no files: frontends do, and hand core this.

use std::fmt;

/// How Heimdall stores its data and whom it treats as all-powerful.
#[derive(Clone)]
pub struct Config {
    /// Where the data lives: `postgres://…`/`postgresql://…` (production) or `sqlite:…` (the embedded
    /// default, `sqlite://heimdall.db`).
    pub database_url: String,
    /// Largest number of database connections.
    pub max_connections: u32,
    /// Apply pending migrations when connecting.
    pub run_migrations: bool,
    /// The role whose holders may do every admin operation.
    pub superadmin_role: String,
    /// Merge the roles carried by a caller's token into the roles Heimdall computes from the database
    /// (the spec's option A on top of option B). Off by default: the database is the source of truth. Turn it
    /// on only when the identity provider is trusted to grant Heimdall roles, the superadmin role included.
    pub merge_token_roles: bool,
    /// Subjects made superadmin when Heimdall starts (idempotent, audited): how the first administrator of an
    /// empty installation comes to be. There are no default credentials.
    pub bootstrap_superadmins: Vec<String>,
    /// How stale the mapping snapshot may get before a lookup compares it with the database (changes made
    /// through this process are seen at once; this bounds how long other replicas' changes take).
    pub mapping_refresh_interval: std::time::Duration,
}

/// The embedded default's database.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://heimdall.db";

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            max_connections: 10,
            run_migrations: true,
            superadmin_role: "superadmin".to_owned(),
            merge_token_roles: false,
            bootstrap_superadmins: Vec::new(),
            mapping_refresh_interval: std::time::Duration::from_secs(1),
        }
    }
}

impl fmt::Debug for Config {
    // A DSN may carry a password: show only its scheme and host part.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_dsn(&self.database_url))
            .field("max_connections", &self.max_connections)
            .field("run_migrations", &self.run_migrations)
            .field("superadmin_role", &self.superadmin_role)
            .field("merge_token_roles", &self.merge_token_roles)
            .field("bootstrap_superadmins", &self.bootstrap_superadmins)
            .field("mapping_refresh_interval", &self.mapping_refresh_interval)
            .finish()
    }
}

/// A DSN (or any URL) with every credential it can hold replaced by `***`, safe to log: the password of
/// `user:password@` (also when it holds a raw or percent-encoded `@`), and the value of any query or
/// key-value parameter whose name contains `password` (`?password=`, `sslpassword=`, libpq's
/// `host=... password=...`).
///
/// ```
/// use heimdall_core::config::redact_dsn;
/// assert_eq!(redact_dsn("postgres://app:p@ss@db/h"), "postgres://app:***@db/h");
/// assert_eq!(redact_dsn("postgres://db/h?user=app&password=pw"), "postgres://db/h?user=app&password=***");
/// ```
pub fn redact_dsn(dsn: &str) -> String {
    let mut out = match dsn.split_once("://") {
        Some((scheme, rest)) => {
            // The userinfo is what the authority (up to the first '/', '?' or '#') holds before its last '@':
            // a mistyped password may hold a raw '@'.
            let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
            match authority.rfind('@') {
                Some(at) => {
                    let user = authority[..at].split(':').next().unwrap_or_default();
                    format!("{scheme}://{user}:***@{}", &rest[at + 1..])
                }
                None => dsn.to_owned(),
            }
        }
        None => dsn.to_owned(),
    };
    redact_password_params(&mut out);
    out
}

/// Replaces the value of every `key=value` parameter (separated by `?`, `&`, `;` or white space) whose key
/// contains `password`, case-insensitively.
fn redact_password_params(s: &mut String) {
    let mut result = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq].rfind(['?', '&', ';', ' ', '\t']).map_or(0, |i| i + 1);
        let key = &rest[key_start..eq];
        let value_end = rest[eq + 1..]
            .find(['&', ';', ' ', '\t', '#'])
            .map_or(rest.len(), |i| eq + 1 + i);
        result.push_str(&rest[..=eq]);
        if key.to_ascii_lowercase().contains("password") {
            result.push_str("***");
        } else {
            result.push_str(&rest[eq + 1..value_end]);
        }
        rest = &rest[value_end..];
    }
    result.push_str(rest);
    *s = result;
}

/// Refuses a URL that would carry credentials or trust over plain `http://` to another machine: `https://`
/// is fine anywhere, `http://` only to a loopback host (`localhost`, `127.0.0.0/8`, `[::1]`) unless
/// `allow_plain_http` says otherwise. `what` names the setting in the error.
///
/// ```
/// use heimdall_core::config::check_transport;
/// assert!(check_transport("https://idp.example/certs", false, "JWKS").is_ok());
/// assert!(check_transport("http://127.0.0.1:8080/certs", false, "JWKS").is_ok());
/// assert!(check_transport("http://idp.example/certs", false, "JWKS").is_err());
/// assert!(check_transport("http://idp.example/certs", true, "JWKS").is_ok());
/// ```
pub fn check_transport(url: &str, allow_plain_http: bool, what: &str) -> crate::Result<()> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| crate::Error::config(format!("{what}: {url:?} is not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let host = parsed.host_str().unwrap_or_default();
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback || allow_plain_http {
                Ok(())
            } else {
                Err(crate::Error::config(format!(
                    "{what}: {url:?} is plain http:// to another machine (use https://, or allow plain HTTP \
                     explicitly)"
                )))
            }
        }
        other => Err(crate::Error::config(format!(
            "{what}: {url:?} must be http:// or https:// (not {other}:)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_passwords_are_redacted() {
        assert_eq!(
            redact_dsn("postgres://app:s3cret@db:5432/h"),
            "postgres://app:***@db:5432/h"
        );
        assert_eq!(redact_dsn("sqlite://heimdall.db"), "sqlite://heimdall.db");
        // The three forms a credential takes in a DSN, and their mixes.
        for (dsn, want) in [
            ("postgres://app:s3cret@db:5432/h", "postgres://app:***@db:5432/h"),
            ("postgres://app:s3c@ret@db/h", "postgres://app:***@db/h"),
            ("postgres://app:s3c%40ret@db/h", "postgres://app:***@db/h"),
            (
                "postgres://db/h?user=app&password=s3cret",
                "postgres://db/h?user=app&password=***",
            ),
            (
                "postgres://db/h?sslpassword=s3cret&sslmode=require",
                "postgres://db/h?sslpassword=***&sslmode=require",
            ),
            (
                "postgres://app:s3cret@db/h?PASSWORD=s3cret",
                "postgres://app:***@db/h?PASSWORD=***",
            ),
            (
                "host=db user=app password=s3cret dbname=h",
                "host=db user=app password=*** dbname=h",
            ),
            ("postgres://app@db/h", "postgres://app:***@db/h"),
        ] {
            let got = redact_dsn(dsn);
            assert_eq!(got, want, "{dsn}");
            assert!(!got.contains("s3c"), "{got}");
        }
        let shown = format!(
            "{:?}",
            Config {
                database_url: "postgres://u:pw@h/d".into(),
                ..Config::default()
            }
        );
        assert!(!shown.contains("pw"), "{shown}");
    }
}
