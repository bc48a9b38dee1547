//! The `heimdall` command.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use heimdall_core::Heimdall;
use heimdall_core::sync::{PolicyAdmin, PushWorker, SyncConfig};
use heimdall_http::settings::Settings;

#[derive(Debug, Parser)]
#[command(name = "heimdall", version, about = "Heimdall: who may call which endpoint")]
struct Cli {
    #[command(flatten)]
    settings: Settings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Applies the database migrations (idempotent) and bootstraps the configured superadmins.
    Migrate,
    /// Pushes principal policies to Cerbos from the outbox, and reconciles every RECONCILE_INTERVAL_SECONDS.
    Worker,
    /// Reconciles Cerbos with the database once, and prints what it did.
    Reconcile,
    /// Installs Heimdall's admin policy pack into Cerbos through the Admin API.
    InstallPolicies,
}

async fn shutdown() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
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
        Command::Migrate => {
            let h = s.heimdall().await?;
            h.migrate().await?;
            println!("migrated the {} database", h.backend());
        }
        Command::InstallPolicies => {
            let admin = s.cerbos_admin()?.ok_or_else(|| {
                heimdall_core::Error::new(heimdall_core::ErrorKind::Config, "CERBOS_ADMIN_URL is not set")
            })?;
            heimdall_core::pdp::pack::install_admin_pack(&admin).await?;
            println!("installed the admin policy pack into {}", admin.admin_endpoint());
        }
        Command::Reconcile => {
            let h = s.heimdall().await?;
            let admin = s.cerbos_admin()?.ok_or_else(|| {
                heimdall_core::Error::new(heimdall_core::ErrorKind::Config, "CERBOS_ADMIN_URL is not set")
            })?;
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
            let admin: Arc<dyn PolicyAdmin> = Arc::new(s.cerbos_admin()?.ok_or_else(|| {
                heimdall_core::Error::new(heimdall_core::ErrorKind::Config, "CERBOS_ADMIN_URL is not set")
            })?);
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

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("heimdall: {e}");
            ExitCode::FAILURE
        }
    }
}
