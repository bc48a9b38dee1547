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
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Registry;
use tracing_subscriber::layer::{Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

mod json_lines;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// What [`init_logging`] set up; [`Telemetry::shutdown`] sends the traces still buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the trace exporter (call before the process exits).
    pub fn shutdown(self) {
        if let Some(provider) = self.traces
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "could not send the last traces");
        }
    }
}

/// Where traces go: an OTLP/HTTP (protobuf) collector, such as `http://otel-collector:4318`.
#[derive(Debug, Clone, Default)]
pub struct TraceExport {
    /// The collector's base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`); spans go to `<endpoint>/v1/traces`.
    pub endpoint: Option<String>,
    /// The service name on every span (`OTEL_SERVICE_NAME`).
    pub service_name: String,
}

/// Installs the global log subscriber (filter from `RUST_LOG`, default `info`), writing to stderr, and the
/// OpenTelemetry trace exporter when `traces.endpoint` is set.
pub fn init_logging(format: LogFormat, traces: &TraceExport) -> Result<Telemetry, String> {
    init_logging_to(format, traces, std::io::stderr)
}

/// [`init_logging`] with another writer (the benchmarks log to a sink, to pay what a server pays).
pub fn init_logging_to<W>(format: LogFormat, traces: &TraceExport, writer: W) -> Result<Telemetry, String>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match format {
        // The spec's field `target` (what an operation acted on) takes the key tracing uses for the module.
        // tracing-subscriber's own JSON format (flattened, with the current span, no target), written
        // faster (see `json_lines`).
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(json_lines::JsonLines)
            .event_format(json_lines::JsonLines)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
    };
    let (otel, provider) = match &traces.endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .build()
                .map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(traces.service_name.clone())
                        .build(),
                )
                .build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("heimdall"));
            (Some(layer), Some(provider))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .with(filter)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(Telemetry { traces: provider })
}

/// The trace and span ids the exporter gives `span`, when traces are exported.
pub(crate) fn exported_ids(span: &tracing::Span) -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// Makes `span` (a request's) continue the trace `trace_id` under the caller's span `parent_span_id`, so the
/// exported trace and the request's log line name the same trace. No-op without an exporter or with ids
/// that are not hex.
pub(crate) fn continue_trace(span: &tracing::Span, trace_id: &str, parent_span_id: &str) {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let (Ok(trace), Ok(parent)) = (TraceId::from_hex(trace_id), SpanId::from_hex(parent_span_id)) else {
        return;
    };
    let remote = SpanContext::new(trace, parent, TraceFlags::SAMPLED, true, TraceState::default());
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
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
