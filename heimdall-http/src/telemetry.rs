//! Logs, metrics and the PDP's timing.
//!
//! Logs are one JSON object per line on stderr (`LOG_FORMAT=json`, the default of `serve` and `worker`) or
//! human-readable text (`LOG_FORMAT=text`). A request's line carries its span's fields: request_id, trace_id,
//! span_id, route, actor_subject, result. No credential is ever a field: the Authorization header is marked
//! sensitive, and the extractors record only who the caller turned out to be.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use heimdall_core::pdp::{Decision, Pdp, Principal, Resource};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Installs the global log subscriber (filter from `RUST_LOG`, default `info`), writing to stderr.
pub fn init_logging(format: LogFormat) {
    init_logging_to(format, std::io::stderr);
}

/// [`init_logging`] with another writer (the benchmarks log to a sink, to pay what a server pays).
pub fn init_logging_to<W>(format: LogFormat, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        // The spec's field `target` (what an operation acted on) takes the key tracing uses for the module.
        LogFormat::Json => builder
            .with_target(false)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

/// Installs the global Prometheus recorder; its handle renders `/metrics`.
pub fn install_metrics() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

/// A PDP that records how long each decision took and whether it failed
/// (`heimdall_pdp_request_duration_seconds`, `heimdall_pdp_errors_total`).
#[derive(Debug)]
pub struct MeteredPdp {
    inner: Arc<dyn Pdp>,
    name: &'static str,
}

impl MeteredPdp {
    /// Wraps `inner`, labelled `name` (`cerbos`, `builtin`).
    pub fn new(inner: Arc<dyn Pdp>, name: &'static str) -> Self {
        MeteredPdp { inner, name }
    }

    fn record<T>(&self, started: Instant, result: &heimdall_core::Result<T>) {
        metrics::histogram!("heimdall_pdp_request_duration_seconds", "pdp" => self.name)
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = result {
            metrics::counter!("heimdall_pdp_errors_total", "pdp" => self.name, "kind" => e.kind().as_str())
                .increment(1);
        }
    }
}

#[async_trait]
impl Pdp for MeteredPdp {
    async fn check(
        &self,
        principal: &Principal,
        resource: &Resource,
        actions: &[&str],
    ) -> heimdall_core::Result<Vec<Decision>> {
        let started = Instant::now();
        let result = self.inner.check(principal, resource, actions).await;
        self.record(started, &result);
        result
    }

    async fn check_batch(
        &self,
        principal: &Principal,
        items: &[(&Resource, &[&str])],
    ) -> heimdall_core::Result<Vec<Vec<Decision>>> {
        let started = Instant::now();
        let result = self.inner.check_batch(principal, items).await;
        self.record(started, &result);
        result
    }

    fn holds_principal_policies(&self) -> bool {
        self.inner.holds_principal_policies()
    }
}
