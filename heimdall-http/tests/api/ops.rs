//! Operations: health, readiness through a database outage, version, metrics, the OpenAPI document, request
//! ids, JSON log lines, and a 5xx that gives nothing away.

use std::time::Duration;

use heimdall_core::test_utils::cluster::PrivateCluster;
use serde_json::{Value, json};

use crate::support::{Api, Idp, Process, token};

#[tokio::test]
async fn operations_endpoints_and_a_database_outage() {
    let Some(mut cluster) = PrivateCluster::start() else {
        return;
    };
    let idp = Idp::start().await;
    let mut env = idp.env();
    env.push(("DB_DSN", cluster.url()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    let mut server = Process::serve(&env);
    let api = Api::new(&server.base);
    let root = token("root");

    assert_eq!(
        api.call("GET", "/healthz", None, None).await.expect(200).body,
        json!({"status": "ok"})
    );
    let ready = api.call("GET", "/readyz", None, None).await.expect(200);
    assert_eq!(ready.body["database"], "ok");
    assert_eq!(ready.body["cerbos"], "not_configured");
    let version = api.call("GET", "/version", None, None).await.expect(200);
    assert_eq!(version.body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version.body["database"], "postgres");
    assert_eq!(version.body["pdp"], "builtin");

    // Request ids: made when missing, kept when given, and on the request's log line with the trace context.
    let made = api.call("GET", "/healthz", None, None).await;
    assert!(made.header("x-request-id").is_some_and(|id| id.len() >= 32));
    let given = api
        .http
        .get(format!("{}/api/v1/groups", api.base))
        .bearer_auth(&root)
        .header("x-request-id", "req-from-the-test-42")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "req-from-the-test-42");
    api.post("/api/v1/groups", &root, json!({"name": "go:ops"}))
        .await
        .expect(201);

    // Metrics are measured figures: the requests above, the outbox, the snapshot, the JWKS fetch.
    let metrics = api.call("GET", "/metrics", None, None).await.expect(200).text;
    for needle in [
        "heimdall_http_requests_total{route=\"/api/v1/groups\",method=\"POST\",status=\"201\"} 1",
        "heimdall_http_request_duration_seconds_bucket",
        "heimdall_outbox_pending 1",
        "heimdall_outbox_oldest_pending_age_seconds",
        "heimdall_mapping_snapshot_age_seconds",
        "heimdall_jwks_fetches{result=\"ok\"} 1",
        "heimdall_pdp_request_duration_seconds_count{pdp=\"builtin\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} not in:\n{metrics}");
    }

    // The OpenAPI document: 3.x, with the spec's paths.
    let doc = api.call("GET", "/openapi.json", None, None).await.expect(200).body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/groups/{group}/members",
        "/api/v1/mappings",
        "/api/v1/mappings/export",
        "/readyz",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the document");
    }

    // The database goes away: readiness says so, a change is a 503 that names nothing internal, and
    // nothing was half-written when it comes back.
    cluster.stop();
    let ready = api.call("GET", "/readyz", None, None).await.expect(503);
    assert_eq!(ready.body["status"], "not_ready");
    assert!(ready.body["database"].as_str().unwrap().starts_with("unavailable"));
    let failed = api
        .post("/api/v1/groups", &token("root"), json!({"name": "go:during-outage"}))
        .await;
    assert!(failed.status >= 500, "{}", failed.text);
    let message = failed.body["error"]["message"].as_str().unwrap().to_lowercase();
    for internal in ["sqlx", "postgres", "connection", "127.0.0.1", "refused", "pool"] {
        assert!(!message.contains(internal), "a 5xx names {internal}: {message}");
    }
    cluster.restart();
    let mut back = false;
    for _ in 0..100 {
        if api.call("GET", "/readyz", None, None).await.status == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "readiness did not come back after the database did");
    api.get("/api/v1/groups/go:during-outage", &root)
        .await
        .error(404, "not_found");

    // One JSON object per log line, with the request's fields; the given request id and trace id are there.
    assert!(server.stop().success());
    let log = server.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    let line = lines
        .iter()
        .find(|l| l["message"] == "request" && l["request_id"] == "req-from-the-test-42")
        .expect("the request's log line");
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["actor_subject"], "root");
    assert_eq!(line["route"], "/api/v1/groups");
    let created = lines
        .iter()
        .find(|l| l["operation"] == "create_group" && l["status"] == 201)
        .expect("the create's log line");
    assert_eq!(created["target"], "go:ops");
}

/// A loopback receiver of OTLP/HTTP exports: it keeps every body posted to `/v1/traces` (no collector is
/// packaged for this machine; the bodies are decoded with the OTLP protobuf types, as a collector would).
async fn otlp_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let b = bodies.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let b = b.clone();
            async move {
                b.lock().unwrap().push(body.to_vec());
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), bodies)
}

// Multi-threaded: the receiver must keep answering while the test waits for the server to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_go_over_otlp_and_continue_the_callers_trace() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message as _;

    let (endpoint, bodies) = otlp_receiver().await;
    let db = heimdall_core::test_utils::TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut env = idp.env();
    env.push(("DB_DSN", db.url.clone()));
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint));
    env.push(("OTEL_SERVICE_NAME", "heimdall-under-test".to_owned()));
    let mut server = Process::serve(&env);
    let api = Api::new(&server.base);
    let traced = api
        .http
        .get(format!("{}/api/v1/users/me", api.base))
        .bearer_auth(token("alice"))
        .header("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), 200);
    api.call("GET", "/healthz", None, None).await.expect(200);
    assert!(server.stop().success(), "{}", server.log());

    let mut spans = Vec::new();
    for body in bodies.lock().unwrap().iter() {
        let export = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP protobuf export");
        for resource in export.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .map(|a| format!("{:?}", a.value));
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
    }
    assert!(
        spans.len() >= 2,
        "expected the requests' spans, got {}; log:\n{}",
        spans.len(),
        server.log()
    );
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let (service, span) = spans
        .iter()
        .find(|(_, s)| hex(&s.trace_id) == "0af7651916cd43dd8448eb211c80319c")
        .expect("the traced request's span continues the caller's trace");
    assert_eq!(span.name, "request");
    assert_eq!(hex(&span.parent_span_id), "b7ad6b7169203331");
    assert!(
        service.as_deref().is_some_and(|s| s.contains("heimdall-under-test")),
        "{service:?}"
    );
    // The request's log line names the same trace and the exported span.
    let log = server.log();
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "request" && l["route"] == "/api/v1/users/me")
        .expect("the request's log line");
    assert_eq!(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(line["span_id"], hex(&span.span_id));
}
