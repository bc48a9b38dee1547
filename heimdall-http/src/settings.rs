//! Settings from flags and environment variables, turned into heimdall-core's typed configuration.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use heimdall_core::config::{DEFAULT_DATABASE_URL, redact_dsn};
use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::pdp::{BuiltinPdp, CerbosClient, CerbosConfig, Pdp};
use heimdall_core::{Config, Heimdall};

use crate::server::ServerOptions;
use crate::server::console::{ConsoleOptions, OidcConfig};
use crate::telemetry::{LogFormat, MeteredPdp, TraceExport};

/// A secret from the command line or the environment: `Debug` never shows it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "<empty>" } else { "<redacted>" })
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A DSN from the command line or the environment: `Debug` shows it with every credential redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn(String);

impl Dsn {
    /// The DSN itself, for the one place that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_dsn(&self.0))
    }
}

impl std::str::FromStr for Dsn {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Dsn(s.to_owned()))
    }
}

/// Settings shared by every `heimdall` command. Each flag can also be given by the environment variable
/// named after it.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Database DSN: postgres://… (production) or sqlite:… (the embedded default).
    #[arg(long, env = "DB_DSN", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub db_dsn: Dsn,
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
    pub cerbos_admin_password: Secret,
    /// Other Cerbos PDPs sharing the policy store of CERBOS_ADMIN_URL (comma-separated base or Admin API URLs,
    /// same credentials): the worker makes each reload its store after a push, so they see changes at once.
    #[arg(long, env = "CERBOS_RELOAD_URLS", value_delimiter = ',')]
    pub cerbos_reload_urls: Vec<String>,
    /// The identity provider's JWKS (`https://keycloak/realms/R/protocol/openid-connect/certs`): bearer tokens
    /// are verified against its keys. Unset: no token is accepted.
    #[arg(long, env = "KEYCLOAK_JWKS_URL")]
    pub keycloak_jwks_url: Option<String>,
    /// The `iss` every token must carry.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` every token must carry. Required with KEYCLOAK_JWKS_URL, unless HEIMDALL_ALLOW_ANY_AUDIENCE.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Accept tokens whatever their audience when JWT_AUDIENCE is unset (tokens minted for any application of
    /// the identity provider then pass; a warning says so at every start).
    #[arg(long, env = "HEIMDALL_ALLOW_ANY_AUDIENCE", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_any_audience: bool,
    /// Accept KEYCLOAK_JWKS_URL over plain http:// to a host other than loopback (keys fetched so can be
    /// swapped on the way).
    #[arg(long, env = "HEIMDALL_ALLOW_PLAIN_HTTP", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_plain_http: bool,
    /// Shortest time, in seconds, between two JWKS fetches caused by tokens with an unknown `kid`.
    #[arg(long, env = "JWKS_REFETCH_INTERVAL_SECONDS", default_value_t = 30)]
    pub jwks_refetch_interval_seconds: u64,
    /// Age, in seconds, after which the JWKS is fetched again while tokens come in (at most 300): keys the
    /// provider removed stop being trusted then.
    #[arg(long, env = "JWKS_REFRESH_INTERVAL_SECONDS", default_value_t = 300)]
    pub jwks_refresh_interval_seconds: u64,
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

/// Settings of the REST server (`heimdall serve`).
#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    /// Address to listen on. The container image sets 0.0.0.0.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Shared secret that adapters may present instead of an API key (compared in constant time).
    #[arg(long, env = "STATIC_API_TOKEN", hide_env_values = true)]
    pub static_api_token: Option<Secret>,
    /// Mutations each caller may make per minute (429 with Retry-After beyond); 0 turns the limit off.
    #[arg(long, env = "HEIMDALL_MUTATIONS_PER_MINUTE", default_value_t = 600)]
    pub mutations_per_minute: u32,
    /// Requests of any kind each caller may make per minute (429 with Retry-After beyond); requests without a
    /// verified caller count per client address. 0 turns the limit off.
    #[arg(long, env = "HEIMDALL_REQUESTS_PER_MINUTE", default_value_t = 6000)]
    pub requests_per_minute: u32,
    /// Most connections served at once; the next ones wait in the accept queue until one closes.
    #[arg(long, env = "HEIMDALL_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Seconds a connection has to send a whole request header, from its opening or from its previous
    /// response: a slower one, or an idle keep-alive connection, is closed.
    #[arg(long, env = "HEIMDALL_HEADER_READ_TIMEOUT_SECONDS", default_value_t = 10)]
    pub header_read_timeout_seconds: u64,
    /// Change-feed streams each caller may hold open (429 beyond).
    #[arg(long, env = "HEIMDALL_MAX_STREAMS_PER_CALLER", default_value_t = 64)]
    pub max_streams_per_caller: usize,
    /// Largest request body, in bytes (413 beyond).
    #[arg(long, env = "HEIMDALL_BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,
    /// Longest time a request may take, in seconds (503 beyond).
    #[arg(long, env = "HEIMDALL_REQUEST_TIMEOUT_SECONDS", default_value_t = 30)]
    pub request_timeout_seconds: u64,
    /// The admin console's identity provider (an OpenID Connect issuer URL; its discovery document is at
    /// `/.well-known/openid-configuration`). Unset: no console.
    #[arg(long, env = "CONSOLE_OIDC_ISSUER")]
    pub console_oidc_issuer: Option<String>,
    /// The console's client id at the identity provider (a public client: authorization code with PKCE).
    #[arg(long, env = "CONSOLE_OIDC_CLIENT_ID", default_value = "heimdall-console")]
    pub console_oidc_client_id: String,
    /// The console's base URL as browsers reach it (`https://heimdall.example.com`): the redirect URI is
    /// `<CONSOLE_URL>/console/callback`. Required with CONSOLE_OIDC_ISSUER.
    #[arg(long, env = "CONSOLE_URL")]
    pub console_url: Option<String>,
    /// How long a console session lasts, in seconds.
    #[arg(long, env = "CONSOLE_SESSION_TTL_SECONDS", default_value_t = 8 * 3600)]
    pub console_session_ttl_seconds: u64,
}

/// The shortest static API token `serve` accepts, in bytes.
pub const MIN_STATIC_TOKEN_LEN: usize = 32;

impl ServeSettings {
    /// The server's options; a static API token shorter than [`MIN_STATIC_TOKEN_LEN`] bytes is a
    /// configuration error (it could be guessed).
    pub fn options(&self) -> heimdall_core::Result<ServerOptions> {
        if let Some(token) = &self.static_api_token
            && token.expose().len() < MIN_STATIC_TOKEN_LEN
        {
            return Err(heimdall_core::Error::new(
                heimdall_core::ErrorKind::Config,
                format!(
                    "STATIC_API_TOKEN must be at least {MIN_STATIC_TOKEN_LEN} bytes long (it is {}); \
                     generate one with `openssl rand -hex 32`",
                    token.expose().len()
                ),
            ));
        }
        Ok(ServerOptions {
            static_api_token: self.static_api_token.as_ref().map(|t| t.expose().to_owned()),
            mutations_per_minute: std::num::NonZeroU32::new(self.mutations_per_minute),
            requests_per_minute: std::num::NonZeroU32::new(self.requests_per_minute),
            max_connections: self.max_connections.max(1),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds.max(1)),
            max_streams_per_caller: self.max_streams_per_caller.max(1),
            body_limit: self.body_limit_bytes,
            request_timeout: Duration::from_secs(self.request_timeout_seconds.max(1)),
            ..ServerOptions::default()
        })
    }

    /// The console's settings, when CONSOLE_OIDC_ISSUER is set; `allow_plain_http` is the deployment's
    /// HEIMDALL_ALLOW_PLAIN_HTTP.
    pub fn console(&self, allow_plain_http: bool) -> heimdall_core::Result<Option<ConsoleOptions>> {
        let Some(issuer) = self.console_oidc_issuer.clone().filter(|i| !i.is_empty()) else {
            return Ok(None);
        };
        let public_url = self.console_url.clone().filter(|u| !u.is_empty()).ok_or_else(|| {
            heimdall_core::Error::new(
                heimdall_core::ErrorKind::Config,
                "CONSOLE_URL: the console's base URL is required with CONSOLE_OIDC_ISSUER",
            )
        })?;
        Ok(Some(ConsoleOptions {
            oidc: OidcConfig {
                issuer,
                client_id: self.console_oidc_client_id.clone(),
                public_url,
                allow_plain_http,
            },
            session_ttl: Duration::from_secs(self.console_session_ttl_seconds.max(60)),
        }))
    }
}

/// How the command logs.
#[derive(Debug, Clone, Args)]
pub struct LogSettings {
    /// `json` (one object per line) or `text`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json", global = true)]
    pub log_format: LogFormat,
    /// An OTLP/HTTP collector (`http://otel-collector:4318`): traces of every request go to
    /// `<endpoint>/v1/traces`. Unset: no traces are exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// The service name on exported spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "heimdall", global = true)]
    pub otel_service_name: String,
}

impl LogSettings {
    /// Where traces go.
    pub fn trace_export(&self) -> TraceExport {
        TraceExport {
            endpoint: self
                .otel_exporter_otlp_endpoint
                .clone()
                .filter(|e| !e.trim().is_empty()),
            service_name: self.otel_service_name.clone(),
        }
    }
}

impl Settings {
    /// heimdall-core's configuration.
    pub fn core_config(&self) -> Config {
        Config {
            database_url: self.db_dsn.expose().to_owned(),
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
            admin_password: self.cerbos_admin_password.expose().to_owned(),
            ..CerbosConfig::new(check_url)
        }
    }

    /// The Cerbos client for the Admin API, when one is configured.
    pub fn cerbos_admin(&self) -> heimdall_core::Result<Option<CerbosClient>> {
        let Some(admin) = &self.cerbos_admin_url else {
            return Ok(None);
        };
        if self.cerbos_admin_password.expose().is_empty() {
            return Err(heimdall_core::Error::new(
                heimdall_core::ErrorKind::Config,
                "CERBOS_ADMIN_URL is set but CERBOS_ADMIN_PASSWORD is empty",
            ));
        }
        let check = self.cerbos_check_url.as_deref().unwrap_or(admin);
        Ok(Some(CerbosClient::new(self.cerbos_config(check))?))
    }

    /// Clients for the PDPs to reload after each push (see `cerbos_reload_urls`).
    pub fn cerbos_reload(&self) -> heimdall_core::Result<Vec<CerbosClient>> {
        self.cerbos_reload_urls
            .iter()
            .map(|u| u.trim())
            .filter(|u| !u.is_empty())
            .map(|u| {
                let mut config = self.cerbos_config(u);
                config.admin_url = Some(u.to_owned());
                CerbosClient::new(config)
            })
            .collect()
    }

    /// The client of the Cerbos that decides admin operations, when `CERBOS_CHECK_URL` is set.
    pub fn cerbos_check(&self) -> heimdall_core::Result<Option<CerbosClient>> {
        self.cerbos_check_url
            .as_deref()
            .map(|url| CerbosClient::new(self.cerbos_config(url)))
            .transpose()
    }

    /// Connects Heimdall as configured, and says which database and which PDP it runs on, so that nobody runs
    /// the embedded defaults by accident. The PDP's decisions are timed for `/metrics`.
    pub async fn heimdall(&self) -> heimdall_core::Result<Heimdall> {
        let builder = Heimdall::builder(self.core_config());
        let pdp: Arc<dyn Pdp> = match self.cerbos_check()? {
            Some(client) => {
                tracing::info!(check_url = %redact_dsn(client.check_endpoint()), "admin operations are decided by Cerbos");
                Arc::new(MeteredPdp::new(Arc::new(client), "cerbos"))
            }
            None => {
                tracing::warn!("CERBOS_CHECK_URL is not set: admin operations are decided by the built-in PDP");
                Arc::new(MeteredPdp::new(Arc::new(BuiltinPdp), "builtin"))
            }
        };
        let builder = builder.pdp(pdp);
        if self.db_dsn.expose() == DEFAULT_DATABASE_URL {
            tracing::warn!(
                dsn = DEFAULT_DATABASE_URL,
                "DB_DSN is not set: using the embedded SQLite default"
            );
        } else {
            tracing::info!(dsn = %redact_dsn(self.db_dsn.expose()), "database");
        }
        builder.build().await
    }

    /// The bearer-token verifier, when a JWKS is configured (`KEYCLOAK_JWKS_URL`). Without `JWT_AUDIENCE` a
    /// token minted for any application of the identity provider would pass: that is a configuration error
    /// unless `HEIMDALL_ALLOW_ANY_AUDIENCE` opts out, and then a warning at every start.
    pub fn token_verifier(&self) -> heimdall_core::Result<Option<TokenVerifier>> {
        let Some(jwks) = &self.keycloak_jwks_url else {
            return Ok(None);
        };
        let audience = self.jwt_audience.clone().filter(|a| !a.trim().is_empty());
        if audience.is_none() {
            if !self.allow_any_audience {
                return Err(heimdall_core::Error::new(
                    heimdall_core::ErrorKind::Config,
                    "JWT_AUDIENCE is not set: tokens minted for other applications would be accepted; set it to \
                     the audience your identity provider puts in Heimdall's tokens (or HEIMDALL_ALLOW_ANY_AUDIENCE=true \
                     to accept any audience)",
                ));
            }
            tracing::warn!(
                "JWT_AUDIENCE is not set and HEIMDALL_ALLOW_ANY_AUDIENCE=true: tokens minted for any application of \
                 the identity provider are accepted"
            );
        }
        let config = IdentityConfig {
            issuer: self.jwt_issuer.clone().filter(|i| !i.trim().is_empty()),
            audience,
            refetch_interval: Duration::from_secs(self.jwks_refetch_interval_seconds.max(1)),
            refresh_interval: Duration::from_secs(self.jwks_refresh_interval_seconds.clamp(1, 300)),
            allow_plain_http: self.allow_plain_http,
            ..IdentityConfig::new(jwks.clone())
        };
        TokenVerifier::new(config)
            .map(Some)
            .map_err(|e| heimdall_core::Error::new(e.kind(), format!("KEYCLOAK_JWKS_URL: {}", e.message())))
    }

    /// The longest push retry delay.
    pub fn max_backoff(&self) -> Duration {
        Duration::from_secs(self.sync_retry_interval_seconds.max(1))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn parse(args: &[&str]) -> Settings {
        let mut argv = vec!["heimdall"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().settings
    }

    #[test]
    fn defaults_are_the_embedded_ones() {
        let s = parse(&[]);
        let c = s.core_config();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert!(c.bootstrap_superadmins.is_empty());
        assert_eq!(s.cerbos_check_url, None);
        assert!(s.cerbos_admin().unwrap().is_none(), "no Admin API unless configured");
    }

    #[test]
    fn bootstrap_subjects_are_a_comma_separated_list() {
        let s = parse(&["--bootstrap-superadmins", "alice, bob,,carol"]);
        assert_eq!(s.core_config().bootstrap_superadmins, ["alice", "bob", "carol"]);
    }

    #[test]
    fn the_admin_api_needs_a_password_and_never_shows_it() {
        let s = parse(&["--cerbos-admin-url", "http://127.0.0.1:3592/admin/policy"]);
        let e = s.cerbos_admin().unwrap_err();
        assert_eq!(e.kind(), heimdall_core::ErrorKind::Config);
        let s = parse(&[
            "--cerbos-admin-url",
            "http://127.0.0.1:3592/admin/policy",
            "--cerbos-admin-password",
            "hunter2",
        ]);
        let client = s.cerbos_admin().unwrap().expect("an Admin API client");
        assert_eq!(client.admin_endpoint(), "http://127.0.0.1:3592/admin/policy");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn dsn_credentials_never_show() {
        for dsn in [
            "postgres://app:s3cret@db:5432/h",
            "postgres://app:s3c%40ret@db/h",
            "postgres://db/h?user=app&password=s3cret",
        ] {
            let s = parse(&["--db-dsn", dsn]);
            let shown = format!("{s:?}");
            assert!(!shown.contains("s3c"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
            assert_eq!(s.core_config().database_url, dsn, "the real DSN still reaches core");
            assert!(!format!("{:?}", s.core_config()).contains("s3c"));
        }
    }

    #[test]
    fn the_token_verifier_follows_the_spec_variables() {
        assert!(parse(&[]).token_verifier().unwrap().is_none(), "no JWKS, no verifier");
        let s = parse(&[
            "--keycloak-jwks-url",
            "http://127.0.0.1:8080/realms/r/protocol/openid-connect/certs",
            "--jwt-issuer",
            "http://127.0.0.1:8080/realms/r",
            "--jwt-audience",
            "heimdall",
        ]);
        let verifier = s.token_verifier().unwrap().expect("a verifier");
        assert_eq!(
            verifier.config().issuer.as_deref(),
            Some("http://127.0.0.1:8080/realms/r")
        );
        assert_eq!(verifier.config().audience.as_deref(), Some("heimdall"));
        let e = parse(&[
            "--keycloak-jwks-url",
            "keycloak:8080/certs",
            "--jwt-audience",
            "heimdall",
        ])
        .token_verifier()
        .unwrap_err();
        assert_eq!(e.kind(), heimdall_core::ErrorKind::Config);
        assert!(e.message().contains("KEYCLOAK_JWKS_URL"), "{}", e.message());
    }

    #[test]
    fn serve_refuses_to_start_without_an_audience_unless_opted_out() {
        let jwks = "http://127.0.0.1:8080/certs";
        let e = parse(&["--keycloak-jwks-url", jwks]).token_verifier().unwrap_err();
        assert_eq!(e.kind(), heimdall_core::ErrorKind::Config);
        assert!(e.message().contains("JWT_AUDIENCE"), "{}", e.message());
        let e = parse(&["--keycloak-jwks-url", jwks, "--jwt-audience", " "])
            .token_verifier()
            .unwrap_err();
        assert!(
            e.message().contains("JWT_AUDIENCE"),
            "a blank audience is none: {}",
            e.message()
        );
        let verifier = parse(&["--keycloak-jwks-url", jwks, "--allow-any-audience", "true"])
            .token_verifier()
            .unwrap()
            .expect("a verifier");
        assert_eq!(verifier.config().audience, None);
    }

    #[test]
    fn a_plain_http_jwks_to_another_host_needs_an_explicit_setting() {
        let remote = "http://keycloak.internal:8080/certs";
        let e = parse(&["--keycloak-jwks-url", remote, "--jwt-audience", "h"])
            .token_verifier()
            .unwrap_err();
        assert_eq!(e.kind(), heimdall_core::ErrorKind::Config);
        assert!(e.message().contains("plain http"), "{}", e.message());
        for ok in [
            vec![
                "--keycloak-jwks-url",
                remote,
                "--jwt-audience",
                "h",
                "--allow-plain-http",
                "true",
            ],
            vec![
                "--keycloak-jwks-url",
                "https://keycloak.internal/certs",
                "--jwt-audience",
                "h",
            ],
            vec![
                "--keycloak-jwks-url",
                "http://localhost:8080/certs",
                "--jwt-audience",
                "h",
            ],
            vec!["--keycloak-jwks-url", "http://[::1]:8080/certs", "--jwt-audience", "h"],
        ] {
            assert!(parse(&ok).token_verifier().unwrap().is_some(), "{ok:?}");
        }
    }

    #[test]
    fn the_jwks_is_refreshed_at_least_every_five_minutes() {
        let base = ["--keycloak-jwks-url", "http://127.0.0.1:1/certs", "--jwt-audience", "h"];
        let v = parse(&base).token_verifier().unwrap().unwrap();
        assert_eq!(v.config().refresh_interval, Duration::from_secs(300));
        let mut longer = base.to_vec();
        longer.extend(["--jwks-refresh-interval-seconds", "86400"]);
        let v = parse(&longer).token_verifier().unwrap().unwrap();
        assert_eq!(
            v.config().refresh_interval,
            Duration::from_secs(300),
            "capped at five minutes"
        );
    }

    #[derive(Debug, Parser)]
    struct ServeCli {
        #[command(flatten)]
        serve: ServeSettings,
    }

    #[test]
    fn serve_refuses_a_short_static_token() {
        let serve = |token: &str| {
            ServeCli::try_parse_from(["heimdall", "--static-api-token", token])
                .unwrap()
                .serve
                .options()
        };
        let e = serve("short-token").unwrap_err();
        assert_eq!(e.kind(), heimdall_core::ErrorKind::Config);
        assert!(e.message().contains("STATIC_API_TOKEN"), "{}", e.message());
        assert!(!e.message().contains("short-token"), "the token itself is never shown");
        assert!(serve(&"x".repeat(31)).is_err());
        assert!(serve(&"x".repeat(32)).is_ok());
    }
}
