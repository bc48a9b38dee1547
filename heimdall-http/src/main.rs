//! The `heimdall` command.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use heimdall_core::sync::{PolicyAdmin, PushWorker, SyncConfig};
use heimdall_core::{Error, ErrorKind, Heimdall};
use heimdall_http::demo::{self, DevIssuer};
use heimdall_http::server::console::{ConsoleOptions, OidcConfig};
use heimdall_http::server::{self, AppState};
use heimdall_http::settings::{LogSettings, ServeSettings, Settings};
use heimdall_http::telemetry;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(name = "heimdall", version, about = "Heimdall: who may call which endpoint")]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(flatten)]
    log: LogSettings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the REST API (the spec's api container).
    Serve(ServeSettings),
    /// Runs the API on the embedded defaults with a development token issuer, and prints a superadmin token
    /// and example calls. NOT FOR PRODUCTION: loopback only.
    Demo {
        /// Port of the API (on 127.0.0.1); 0 picks a free one.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// How long a console session lasts, in seconds.
        #[arg(long, env = "CONSOLE_SESSION_TTL_SECONDS", default_value_t = 8 * 3600)]
        console_session_ttl_seconds: u64,
    },
    /// Applies the database migrations (idempotent) and bootstraps the configured superadmins.
    Migrate,
    /// Pushes principal policies to Cerbos from the outbox, and reconciles every RECONCILE_INTERVAL_SECONDS.
    Worker,
    /// Reconciles Cerbos with the database once, and prints what it did.
    Reconcile {
        /// Only compare and print the differences; queue and push nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Installs Heimdall's admin policy pack into Cerbos through the Admin API.
    InstallPolicies,
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop` sends).
async fn shutdown() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}

fn config_error(variable: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Config, format!("{variable}: {e}"))
}

/// Binds the API's listener, naming the setting at fault when it can't.
async fn bind(host: &str, port: u16) -> heimdall_core::Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .map_err(|e| config_error("HOST/PORT", format!("cannot listen on {host}:{port}: {e}")))
}

async fn serve(s: &Settings, args: &ServeSettings) -> heimdall_core::Result<()> {
    let metrics = telemetry::install_metrics()
        .map_err(|e| tracing::warn!(error = %e, "metrics are off"))
        .ok();
    let verifier = s.token_verifier()?;
    if verifier.is_none() {
        tracing::warn!("KEYCLOAK_JWKS_URL is not set: no user can sign in; only STATIC_API_TOKEN and API keys work");
    }
    let listener = bind(&args.host, args.port).await?;
    let h = s.heimdall().await?;
    let state = AppState::builder(h)
        .verifier(verifier)
        .cerbos(s.cerbos_check()?)
        .policy_admin(s.cerbos_admin()?.map(|c| Arc::new(c) as Arc<dyn PolicyAdmin>))
        .metrics(metrics)
        .options(args.options()?)
        .console(args.console(s.allow_plain_http)?)
        .build()
        .await?;
    let addr = listener.local_addr().map_err(|e| config_error("HOST/PORT", e))?;
    tracing::info!(%addr, "listening");
    println!("listening on http://{addr}");
    server::serve(listener, state, shutdown())
        .await
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("the server failed: {e}")))
}

async fn demo(s: &Settings, port: u16, session_ttl: Duration) -> heimdall_core::Result<()> {
    let issuer = Arc::new(DevIssuer::new().map_err(|e| Error::new(ErrorKind::Unexpected, e))?);
    let users = vec![
        ("demo-admin".to_owned(), "a superadmin".to_owned()),
        (
            demo::MANAGER.to_owned(),
            "a delegated manager: the go: groups, their mappings under /go/".to_owned(),
        ),
        ("alice".to_owned(), "a plain user".to_owned()),
    ];
    let issuer_url = issuer
        .clone()
        .serve(bind("127.0.0.1", 0).await?, users)
        .map_err(|e| Error::new(ErrorKind::Unexpected, e))?;
    let jwks = format!("{issuer_url}/jwks.json");
    let mut s = s.clone();
    // A fresh SQLite file per run unless DB_DSN names one; the built-in PDP unless CERBOS_CHECK_URL is set.
    let dir = std::env::temp_dir().join(format!("heimdall-demo-{}", std::process::id()));
    if s.db_dsn.expose() == heimdall_core::config::DEFAULT_DATABASE_URL {
        std::fs::create_dir_all(&dir).map_err(|e| config_error("DB_DSN", e))?;
        s.db_dsn = format!("sqlite://{}?mode=rwc", dir.join("heimdall.db").display())
            .parse()
            .map_err(|e| config_error("DB_DSN", e))?;
    }
    s.keycloak_jwks_url = Some(jwks.clone());
    s.jwt_issuer = Some(demo::ISSUER.to_owned());
    s.jwt_audience = Some(demo::AUDIENCE.to_owned());
    s.bootstrap_superadmins = vec!["demo-admin".to_owned()];
    let listener = bind("127.0.0.1", port).await?;
    let addr = listener.local_addr().map_err(|e| config_error("PORT", e))?;
    let console = ConsoleOptions {
        oidc: OidcConfig {
            issuer: issuer_url,
            client_id: "heimdall-console".to_owned(),
            public_url: format!("http://{addr}"),
            allow_plain_http: false,
        },
        session_ttl,
    };
    let h = s.heimdall().await?;
    demo::seed(&h).await?;
    let state = AppState::builder(h)
        .verifier(s.token_verifier()?)
        .metrics(telemetry::install_metrics().ok())
        .console(Some(console))
        .build()
        .await?;
    let ttl = Duration::from_secs(12 * 3600);
    let mint = |sub: &str, name: &str| {
        issuer
            .mint(sub, name, ttl)
            .map_err(|e| Error::new(ErrorKind::Unexpected, e))
    };
    println!(
        "{}",
        demo::banner(
            &format!("http://{addr}"),
            &jwks,
            &mint("demo-admin", "Demo Admin")?,
            &mint("alice", "Alice")?,
            &format!("{:?}", s.db_dsn),
        )
    );
    tracing::warn!(%addr, "heimdall demo is running: NOT FOR PRODUCTION");
    let result = server::serve(listener, state, shutdown()).await;
    if dir.exists() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result.map_err(|e| Error::new(ErrorKind::Unavailable, format!("the server failed: {e}")))
}

/// The push worker as configured: backoff, and the PDPs to reload after each push.
fn worker(h: &Heimdall, s: &Settings, admin: Arc<dyn PolicyAdmin>) -> heimdall_core::Result<PushWorker> {
    let config = SyncConfig {
        max_backoff: s.max_backoff(),
        ..SyncConfig::default()
    };
    let reload: Vec<Arc<dyn PolicyAdmin>> = s
        .cerbos_reload()?
        .into_iter()
        .map(|c| Arc::new(c) as Arc<dyn PolicyAdmin>)
        .collect();
    Ok(PushWorker::new(h.clone(), admin, config).reload_after_push(reload))
}

async fn run(cli: Cli) -> heimdall_core::Result<()> {
    let s = &cli.settings;
    match cli.command {
        Command::Serve(args) => serve(s, &args).await?,
        Command::Demo {
            port,
            console_session_ttl_seconds,
        } => demo(s, port, Duration::from_secs(console_session_ttl_seconds.max(1))).await?,
        Command::Migrate => {
            let h = s.heimdall().await?;
            h.migrate().await?;
            println!("migrated the {} database", h.backend());
        }
        Command::InstallPolicies => {
            let admin = s
                .cerbos_admin()?
                .ok_or_else(|| Error::new(ErrorKind::Config, "CERBOS_ADMIN_URL is not set"))?;
            heimdall_core::pdp::pack::install_admin_pack(&admin).await?;
            println!("installed the admin policy pack into {}", admin.admin_endpoint());
        }
        Command::Reconcile { dry_run } => {
            let h = s.heimdall().await?;
            let admin = s
                .cerbos_admin()?
                .ok_or_else(|| Error::new(ErrorKind::Config, "CERBOS_ADMIN_URL is not set"))?;
            if dry_run {
                let r = h.reconcile_dry_run(&admin).await?;
                println!(
                    "{}",
                    serde_json::json!({
                        "users_checked": r.users_checked, "to_push": r.to_push, "to_delete": r.to_delete,
                        "foreign": r.foreign, "failed": r.failed, "in_sync": r.in_sync(),
                    })
                );
                return Ok(());
            }
            let r = h.reconcile(&admin).await?;
            // Reconciliation only queues what differs; the worker's code pushes it, as the only writer.
            let p = worker(&h, s, Arc::new(admin))?.push_due().await?;
            println!(
                "{}",
                serde_json::json!({
                    "users_checked": r.users_checked, "to_push": r.to_push, "to_delete": r.to_delete,
                    "foreign": r.foreign, "failed": r.failed, "pushed": p.pushed, "deleted": p.deleted,
                    "retrying": p.retrying, "rejected": p.rejected,
                })
            );
        }
        Command::Worker => {
            let h = s.heimdall().await?;
            let admin: Arc<dyn PolicyAdmin> = Arc::new(
                s.cerbos_admin()?
                    .ok_or_else(|| Error::new(ErrorKind::Config, "CERBOS_ADMIN_URL is not set"))?,
            );
            let worker = worker(&h, s, admin.clone())?;
            let interval = Duration::from_secs(s.reconcile_interval_seconds.max(1));
            tracing::info!(?interval, "worker started");
            tokio::join!(
                worker.run(shutdown()),
                h.run_reconciler(admin.as_ref(), interval, shutdown())
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before the runtime: the trace exporter's HTTP client runs on a thread of its own, outside tokio.
    let telemetry = match telemetry::init_logging(cli.log.log_format, &cli.log.trace_export()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("heimdall: config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => {
            let result = runtime.block_on(run(cli));
            drop(runtime);
            result
        }
        Err(e) => Err(Error::new(
            ErrorKind::Unexpected,
            format!("cannot start the runtime: {e}"),
        )),
    };
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heimdall: {e}");
            ExitCode::FAILURE
        }
    }
}
