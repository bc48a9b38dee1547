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

/// A DSN with any password replaced by `***`, safe to log.
pub fn redact_dsn(dsn: &str) -> String {
    let Some((scheme, rest)) = dsn.split_once("://") else {
        return dsn.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => dsn.to_owned(),
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
