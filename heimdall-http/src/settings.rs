//! Settings from flags and environment variables, turned into heimdall-core's typed configuration.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use heimdall_core::config::{DEFAULT_DATABASE_URL, redact_dsn};
use heimdall_core::pdp::{CerbosClient, CerbosConfig, Pdp};
use heimdall_core::{Config, Heimdall};

/// Settings shared by every `heimdall` command. Each flag can also be given by the environment variable
/// named after it.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Database DSN: postgres://… (production) or sqlite:… (the embedded default).
    #[arg(long, env = "DB_DSN", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub db_dsn: String,
    /// Largest number of database connections.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// Cerbos Check API (`http://cerbos:3592/api/check/resources` or a base URL). Unset: the built-in PDP.
    #[arg(long, env = "CERBOS_CHECK_URL")]
    pub cerbos_check_url: Option<String>,
    /// Cerbos Admin API (`http://cerbos:3592/admin/policy` or a base URL). Unset: no principal-policy push.
    #[arg(long, env = "CERBOS_ADMIN_URL")]
    pub cerbos_admin_url: Option<String>,
    /// Cerbos Admin API user.
    #[arg(long, env = "CERBOS_ADMIN_USER", default_value = "cerbos")]
    pub cerbos_admin_user: String,
    /// Cerbos Admin API password.
    #[arg(
        long,
        env = "CERBOS_ADMIN_PASSWORD",
        default_value = "",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub cerbos_admin_password: String,
    /// Subjects made superadmin on start (comma-separated), idempotently.
    #[arg(long, env = "HEIMDALL_BOOTSTRAP_SUPERADMINS", value_delimiter = ',')]
    pub bootstrap_superadmins: Vec<String>,
    /// The role whose holders may do every admin operation.
    #[arg(long, env = "HEIMDALL_SUPERADMIN_ROLE", default_value = "superadmin")]
    pub superadmin_role: String,
    /// Seconds between reconciliations (the worker's).
    #[arg(long, env = "RECONCILE_INTERVAL_SECONDS", default_value_t = 300)]
    pub reconcile_interval_seconds: u64,
    /// Longest delay, in seconds, between retries of a failed push.
    #[arg(long, env = "SYNC_RETRY_INTERVAL_SECONDS", default_value_t = 60)]
    pub sync_retry_interval_seconds: u64,
}

impl Settings {
    /// heimdall-core's configuration.
    pub fn core_config(&self) -> Config {
        Config {
            database_url: self.db_dsn.clone(),
            max_connections: self.db_max_connections,
            superadmin_role: self.superadmin_role.clone(),
            bootstrap_superadmins: self
                .bootstrap_superadmins
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            ..Config::default()
        }
    }

    fn cerbos_config(&self, check_url: &str) -> CerbosConfig {
        CerbosConfig {
            admin_url: self.cerbos_admin_url.clone(),
            admin_user: self.cerbos_admin_user.clone(),
            admin_password: self.cerbos_admin_password.clone(),
            ..CerbosConfig::new(check_url)
        }
    }

    /// The Cerbos client for the Admin API, when one is configured.
    pub fn cerbos_admin(&self) -> heimdall_core::Result<Option<CerbosClient>> {
        let Some(admin) = &self.cerbos_admin_url else {
            return Ok(None);
        };
        let check = self.cerbos_check_url.as_deref().unwrap_or(admin);
        Ok(Some(CerbosClient::new(self.cerbos_config(check))?))
    }

    /// Connects Heimdall as configured, and says which database and which PDP it runs on, so that nobody runs
    /// the embedded defaults by accident.
    pub async fn heimdall(&self) -> heimdall_core::Result<Heimdall> {
        let mut builder = Heimdall::builder(self.core_config());
        match &self.cerbos_check_url {
            Some(url) => {
                let client: Arc<dyn Pdp> = Arc::new(CerbosClient::new(self.cerbos_config(url))?);
                tracing::info!(check_url = %url, "admin operations are decided by Cerbos");
                builder = builder.pdp(client);
            }
            None => tracing::warn!("CERBOS_CHECK_URL is not set: admin operations are decided by the built-in PDP"),
        }
        if self.db_dsn == DEFAULT_DATABASE_URL {
            tracing::warn!(dsn = %self.db_dsn, "DB_DSN is not set: using the embedded SQLite default");
        } else {
            tracing::info!(dsn = %redact_dsn(&self.db_dsn), "database");
        }
        builder.build().await
    }

    /// The longest push retry delay.
    pub fn max_backoff(&self) -> Duration {
        Duration::from_secs(self.sync_retry_interval_seconds.max(1))
    }
}
