//! Serves the lookup benchmark's requests (`GET /api/v1/mappings?method=&path=` with the static API token) through
//! heimdall-http's whole router in process, without sockets, for a profiler: what the server's own code costs
//! per request (the layers, the access log line, the metrics, the extractors, the resolver, the JSON answer),
//! apart from hyper and the kernel. callgrind counts instructions, which stay stable on a noisy machine:
//!
//! ```sh
//! cargo build --release -p heimdall-benches --example lookup_profile
//! valgrind --tool=callgrind target/release/examples/lookup_profile 0      # the setup alone
//! valgrind --tool=callgrind target/release/examples/lookup_profile 20000  # the difference / 20000 = per request
//! ```
//!
//! Arguments: the number of requests (20,000) and of mappings (100).

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use heimdall_benches::{REQUESTS, heimdall_with_mappings, requests, routes, url_query};
use heimdall_http::server::{self, AppState, ServerOptions};
use heimdall_http::telemetry::{LogFormat, TraceExport, init_logging_to};
use tower::ServiceExt as _;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const TOKEN: &str = "lookup-profile-static-token";

async fn run(count: usize, mappings: usize) -> Result<(), BoxError> {
    let set = routes(mappings);
    let (_db, h) = heimdall_with_mappings(&set).await?;
    init_logging_to(LogFormat::Json, &TraceExport::default(), std::io::sink)?;
    let options = ServerOptions {
        static_api_token: Some(TOKEN.to_owned()),
        requests_per_minute: None,
        ..ServerOptions::default()
    };
    let router = server::router(AppState::builder(h).options(options).build().await?);
    let uris: Vec<String> = requests(&set)
        .iter()
        .map(|(method, path)| url_query(&format!("/api/v1/mappings?method={method}&path="), path))
        .collect();
    let client: SocketAddr = "127.0.0.1:40000".parse()?;
    let (mut found, mut missed) = (0usize, 0usize);
    for i in 0..count {
        let mut request = http::Request::get(&uris[i % REQUESTS])
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(axum::body::Body::empty())?;
        request.extensions_mut().insert(ConnectInfo(client));
        let response = router.clone().oneshot(request).await?;
        match response.status().as_u16() {
            200 => found += 1,
            404 => missed += 1,
            other => return Err(format!("the lookup answered {other}").into()),
        }
        axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    }
    println!("lookup_profile: requests={count} found={found} missed={missed}");
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let mappings: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(count, mappings))
}
