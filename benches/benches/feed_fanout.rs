//! `feed_fanout` (issue 19): one heimdall-http feeding the change feed (`GET /api/v1/changes/stream`) to 1,000
//! followers at once: how long a change takes to reach all of them (from just before its commit to each stream's
//! `versions` event naming it; p99 over every stream of five changes), and what each open stream costs the server
//! (its resident memory's growth divided by the streams).
//!
//! The server (SQLite, heimdall-http's own connection loop, the static API token) runs in this process; the
//! followers run in a child process (this binary again, with `--streams`), so that the server's resident memory
//! is its own. The two talk over the child's stdin and stdout. Targets on the 2-core machine: p99 ≤ 1 s, at most
//! 64 KiB a stream.
//!
//! Run with `cargo bench -p heimdall-benches --bench feed_fanout`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use heimdall_benches::{rss_kib, sqlite_heimdall};
use heimdall_core::model::MappingInput;
use heimdall_http::server::{self, AppState, ServerOptions};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Followers holding a stream open.
const FOLLOWERS: usize = 1_000;
/// Changes made while they listen.
const CHANGES: usize = 5;
const P99_TARGET_MS: f64 = 1_000.0;
const KIB_TARGET: f64 = 64.0;
const TOKEN: &str = "feed-fanout-benchmark-static-token";

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--streams") {
        let base = args.get(at + 1).ok_or("--streams takes the server's base URL")?;
        return streams(base);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve_and_measure())
}

/// Microseconds since the epoch: a clock both processes read alike.
fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

async fn serve_and_measure() -> Result<(), BoxError> {
    let (_db, h) = sqlite_heimdall().await?;
    let system = h.system_caller("benchmark")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let options = ServerOptions {
        static_api_token: Some(TOKEN.to_owned()),
        requests_per_minute: None,
        max_connections: 2 * FOLLOWERS,
        max_streams_per_caller: 2 * FOLLOWERS,
        ..ServerOptions::default()
    };
    let state = AppState::builder(h.clone()).options(options).build().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server::serve(listener, state, async {
        let _ = stopped.await;
    }));
    // Warm the server up (its pools, the first stream) before the baseline.
    reqwest::Client::new()
        .get(format!("{base}/api/v1/changes/version"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .error_for_status()?;
    let before = rss_kib()?;

    let mut child = Command::new(std::env::current_exe()?)
        .arg("--streams")
        .arg(&base)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut to_child = child.stdin.take().ok_or("no stdin to the child")?;
    let from_child = child.stdout.take().ok_or("no stdout from the child")?;
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(from_child).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let opened = next_line(&mut lines).await?;
    if opened != "open" {
        return Err(format!("the followers' process said {opened:?}").into());
    }
    // Let the streams settle (buffers allocated, first events written) before reading the memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kib_per_stream = (rss_kib()? - before) / FOLLOWERS as f64;

    let mut latencies_ms: Vec<f64> = Vec::with_capacity(FOLLOWERS * CHANGES);
    for i in 0..CHANGES {
        let started = now_us();
        let input = MappingInput {
            method: "GET".to_owned(),
            path_pattern: format!("/fanout/{i}/:id"),
            action: "fanout:read".to_owned(),
            ..MappingInput::default()
        };
        h.create_mapping(&system, &input).await?;
        let version = h.change_version().await?;
        writeln!(to_child, "{version} {started}")?;
        to_child.flush()?;
        let answer = next_line(&mut lines).await?;
        for us in answer.split_whitespace() {
            latencies_ms.push(us.parse::<f64>()? / 1e3);
        }
    }
    drop(to_child);
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    let _ = stop.send(());
    served.await??;
    if !status.success() {
        return Err(format!("the followers' process failed ({status})").into());
    }
    if latencies_ms.len() != FOLLOWERS * CHANGES {
        return Err(format!(
            "{} arrivals for {} streams x {CHANGES} changes",
            latencies_ms.len(),
            FOLLOWERS
        )
        .into());
    }
    latencies_ms.sort_by(f64::total_cmp);
    let at = |q: usize| latencies_ms[(latencies_ms.len() - 1) * q / 100];
    let p99 = at(99);
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "feed_fanout: followers={FOLLOWERS} p99_ms={p99:.1} kib_per_stream={kib_per_stream:.1} median_ms={:.1} \
         max_ms={:.1} changes={CHANGES} (targets: p99 <= {P99_TARGET_MS} ms: {}, <= {KIB_TARGET} KiB a stream: {})",
        at(50),
        at(100),
        met(p99 <= P99_TARGET_MS),
        met(kib_per_stream <= KIB_TARGET),
    );
    Ok(())
}

/// The next line the followers' process writes.
async fn next_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Result<String, BoxError> {
    match tokio::time::timeout(Duration::from_secs(60), lines.recv()).await {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Err("the followers' process ended".into()),
        Err(_) => Err("the followers' process said nothing for 60 s".into()),
    }
}

/// The followers (the child process): opens the streams, says `open` once each had its first event, then for
/// each `<version> <started_us>` line on stdin answers with every stream's delay, in microseconds, until an event
/// naming that version (or a later one) reached it.
fn streams(base: &str) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder().build()?;
        // (stream, change version, arrival in µs since the epoch)
        let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel::<(usize, i64, u128)>();
        for i in 0..FOLLOWERS {
            let (client, events_tx, url) = (
                client.clone(),
                events_tx.clone(),
                format!("{base}/api/v1/changes/stream"),
            );
            tokio::spawn(async move {
                let Ok(mut response) = client.get(url).bearer_auth(TOKEN).send().await else {
                    return;
                };
                if !response.status().is_success() {
                    return;
                }
                let mut buffer = String::new();
                while let Ok(Some(chunk)) = response.chunk().await {
                    let arrived = now_us();
                    buffer.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buffer.find("\n\n") {
                        let event: String = buffer.drain(..end + 2).collect();
                        let version = event
                            .lines()
                            .find_map(|l| l.strip_prefix("data:"))
                            .and_then(|d| serde_json::from_str::<serde_json::Value>(d.trim()).ok())
                            .and_then(|v| v["change_version"].as_i64());
                        if let Some(version) = version
                            && events_tx.send((i, version, arrived)).is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
        drop(events_tx);
        let mut latest = vec![i64::MIN; FOLLOWERS];
        let mut arrival = vec![0u128; FOLLOWERS];
        let deadline = Instant::now() + Duration::from_secs(60);
        while latest.contains(&i64::MIN) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some((i, version, at))) = tokio::time::timeout(left, events.recv()).await else {
                let open = latest.iter().filter(|v| **v != i64::MIN).count();
                return Err(format!("only {open} of {FOLLOWERS} streams opened").into());
            };
            latest[i] = latest[i].max(version);
            arrival[i] = at;
        }
        println!("open");
        std::io::stdout().flush()?;

        let (requests_tx, mut requests) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if requests_tx.send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = requests.recv().await {
            let mut parts = line.split_whitespace();
            let (Some(version), Some(started)) = (parts.next(), parts.next()) else {
                return Err(format!("not a change: {line:?}").into());
            };
            let (version, started): (i64, u128) = (version.parse()?, started.parse()?);
            // A stream that heard of this version before the line came: when it did.
            let mut reached: Vec<Option<u128>> = (0..FOLLOWERS)
                .map(|i| (latest[i] >= version).then_some(arrival[i]))
                .collect();
            let deadline = Instant::now() + Duration::from_secs(30);
            while reached.contains(&None) {
                let left = deadline.saturating_duration_since(Instant::now());
                let Ok(Some((i, v, at))) = tokio::time::timeout(left, events.recv()).await else {
                    return Err(format!("change {version} did not reach every stream within 30 s").into());
                };
                latest[i] = latest[i].max(v);
                arrival[i] = at;
                if v >= version && reached[i].is_none() {
                    reached[i] = Some(at);
                }
            }
            let delays: Vec<String> = reached
                .iter()
                .map(|r| r.unwrap_or(started).saturating_sub(started).to_string())
                .collect();
            println!("{}", delays.join(" "));
            std::io::stdout().flush()?;
        }
        Ok(())
    })
}
