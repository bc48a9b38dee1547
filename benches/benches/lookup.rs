//! Throughput of the adapter lookup over HTTP, `GET /api/v1/mappings?path=&method=`, with keep-alive, next to
//! the real Cerbos's `POST /api/check/resources` measured the same way in the same run.
//!
//! The server is heimdall-http's own (on a runtime of two workers, logging its JSON line per request to a
//! sink, as a deployed server formats it) over SQLite with 1,000 mappings; the client is `wrk` (Debian's
//! package; `scripts/test` installs it) with 2 threads and 32 connections, three rounds of 6 s each (the
//! median round is reported, all three are printed: one round on this shared machine can fall into a slow
//! spell that the next does not see), cycling through the
//! resolver benchmark's request mix (about 80 % hits, 20 % misses that answer 404). The Cerbos check is one
//! superadmin decision on the admin pack. Targets on the 2-core machine: at least 40,000 lookups/s (issue 22),
//! and more than Cerbos's checks/s. `--example lookup_profile` serves the same requests in process, for
//! callgrind.
//!
//! Run with `cargo bench -p heimdall-benches --bench lookup`; needs `HEIMDALL_CERBOS_BIN` and `wrk` (under
//! `CI=true` a missing one fails the run; elsewhere the run says what it skipped).

use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use heimdall_benches::{heimdall_with_mappings, requests, routes, url_query};
use heimdall_core::test_utils::cerbos::Cerbos;
use heimdall_core::test_utils::required;
use heimdall_http::server::{self, AppState, ServerOptions};
use heimdall_http::telemetry::{LogFormat, TraceExport, init_logging_to};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Mappings in the server.
const MAPPINGS: usize = 1_000;
/// The target for lookups per second.
const TARGET: f64 = 40_000.0;
const TOKEN: &str = "lookup-benchmark-static-token";

/// Rounds of wrk per target; the median round is the figure.
const ROUNDS: usize = 3;

/// What wrk measured.
#[derive(Clone)]
struct Load {
    per_second: f64,
    p99: String,
    non_2xx: u64,
}

/// Runs wrk with `script` against `url`.
fn wrk(url: &str, script: &str) -> Result<Load, BoxError> {
    let mut file = tempfile::NamedTempFile::new()?;
    file.write_all(script.as_bytes())?;
    let out = Command::new("wrk")
        .args(["-t2", "-c32", "-d6s", "--latency", "-s"])
        .arg(file.path())
        .arg(url)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    let per_second = field("Requests/sec:")
        .ok_or("no Requests/sec in wrk's output")?
        .parse()?;
    let p99 = field("99%").unwrap_or_else(|| "?".to_owned());
    let non_2xx = field("Non-2xx or 3xx responses:").map_or(Ok(0), |v| v.parse())?;
    if text.contains("Socket errors") {
        return Err(format!("wrk saw socket errors: {text}").into());
    }
    Ok(Load {
        per_second,
        p99,
        non_2xx,
    })
}

/// Runs [`wrk`] [`ROUNDS`] times: the median round (by requests per second), every round's rate in the order
/// run, and the non-2xx answers of all rounds.
fn wrk_rounds(url: &str, script: &str) -> Result<(Load, String, u64), BoxError> {
    let mut rounds = (0..ROUNDS).map(|_| wrk(url, script)).collect::<Result<Vec<_>, _>>()?;
    let all = rounds
        .iter()
        .map(|l| format!("{:.0}", l.per_second))
        .collect::<Vec<_>>()
        .join(" / ");
    let non_2xx = rounds.iter().map(|l| l.non_2xx).sum();
    rounds.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    Ok((rounds[ROUNDS / 2].clone(), all, non_2xx))
}

fn lua_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

async fn run(server_runtime: tokio::runtime::Handle) -> Result<(), BoxError> {
    if Command::new("wrk").arg("--version").output().is_err() {
        if required() {
            return Err("wrk is not installed, and CI=true requires the lookup benchmark: use scripts/test".into());
        }
        eprintln!("SKIPPED lookup benchmark: wrk is not installed (apt-get install wrk)");
        return Ok(());
    }
    let Some(cerbos) = Cerbos::start_new().await else {
        return Ok(());
    };
    cerbos.install_admin_pack().await;

    // The server: SQLite, the built-in PDP, 1,000 mappings, a static token for the adapter.
    let set = routes(MAPPINGS);
    let (_db, h) = heimdall_with_mappings(&set).await?;
    init_logging_to(LogFormat::Json, &TraceExport::default(), std::io::sink)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = ServerOptions {
        static_api_token: Some(TOKEN.to_owned()),
        // The benchmark is one caller at full speed: no per-caller rate limit.
        requests_per_minute: None,
        ..ServerOptions::default()
    };
    let served = {
        let h = h.clone();
        server_runtime.spawn(async move {
            let state = AppState::builder(h).options(options).build().await?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            server::serve(listener, state, async {
                let _ = stopped.await;
            })
            .await?;
            Ok::<_, BoxError>(())
        })
    };

    // A sanity check of both targets before loading them.
    let http = reqwest::Client::new();
    let mix = requests(&set);
    let probe = http
        .get(format!(
            "http://{addr}{}",
            url_query("/api/v1/mappings?method=GET&path=", "/api/s0/user")
        ))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    if probe.status() != 200 {
        return Err(format!("the lookup answered {}", probe.status()).into());
    }
    let check = r#"{"requestId":"bench","principal":{"id":"root","roles":["heimdall_superadmin"]},"resources":[{"resource":{"kind":"heimdall_group","id":"group:go:bench","attr":{}},"actions":["group:create"]}]}"#;
    let answer: serde_json::Value = http
        .post(format!("{}/api/check/resources", cerbos.base_url()))
        .header("content-type", "application/json")
        .body(check)
        .send()
        .await?
        .json()
        .await?;
    if answer["results"][0]["actions"]["group:create"] != "EFFECT_ALLOW" {
        return Err(format!("Cerbos's check is not the one meant: {answer}").into());
    }

    // The request mix, as wrk requests (the path percent-encoded as a query value).
    let mut lua = String::from("local reqs = {}\ninit = function(args)\n");
    for (method, path) in &mix {
        let mut url = url_query(&format!("/api/v1/mappings?method={method}&path="), path);
        url = lua_string(&url);
        lua.push_str(&format!(
            "  table.insert(reqs, wrk.format(\"GET\", {url}, {{[\"Authorization\"] = \"Bearer {TOKEN}\"}}))\n"
        ));
    }
    lua.push_str("end\nlocal i = 0\nrequest = function()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n");
    let lookup_url = format!("http://{addr}");
    let (heimdall, heimdall_rounds, _) = tokio::task::spawn_blocking(move || wrk_rounds(&lookup_url, &lua)).await??;

    let cerbos_lua = format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = {}\n",
        lua_string(check)
    );
    let cerbos_url = format!("{}/api/check/resources", cerbos.base_url());
    let (reference, reference_rounds, reference_failed) =
        tokio::task::spawn_blocking(move || wrk_rounds(&cerbos_url, &cerbos_lua)).await??;

    println!(
        "lookup/heimdall_http ({MAPPINGS} mappings, wrk -t2 -c32, median of {ROUNDS} rounds of 6 s: \
         {heimdall_rounds}): {:.0} lookups/s, p99 {}, {} answered 404 (target >= {TARGET:.0}/s: {})",
        heimdall.per_second,
        heimdall.p99,
        heimdall.non_2xx,
        if heimdall.per_second >= TARGET { "met" } else { "MISSED" },
    );
    println!(
        "lookup/cerbos_check (the same load on POST /api/check/resources: {reference_rounds}): {:.0} checks/s, \
         p99 {} (Heimdall faster: {})",
        reference.per_second,
        reference.p99,
        if heimdall.per_second > reference.per_second {
            "yes"
        } else {
            "NO"
        },
    );
    if reference_failed > 0 {
        return Err(format!("{reference_failed} Cerbos checks failed").into());
    }
    let _ = stop.send(());
    served.await??;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes criterion-style flags (`--bench`); this measurement takes none. The server gets a
    // runtime of two workers, as the `heimdall` binary has on this machine.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(run(server.handle().clone()));
    server.shutdown_timeout(Duration::from_secs(5));
    result
}
