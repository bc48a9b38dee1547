//! `console_page`: every page of the admin console, rendered by heimdall-http on PostgreSQL holding 10,000
//! groups, 100,000 mappings and 100,000 audit rows, asked over loopback HTTP by a signed-in superadmin, and
//! (`manager_*`) by a delegated manager whose right covers the 100 groups `%g99__` (`bench:g9900` to
//! `bench:g9999`): a pattern that starts with a wildcard, so nothing narrows the scan, and the last groups in
//! name order, so his groups page reads every group to fill a page: the worst case of `list_groups_in`.
//!
//! The server runs in this process (two runtime workers), with the demo's development issuer for the sign-in;
//! the fixture is inserted by SQL (`TestDatabase::insert_console_fixture`). Each page is asked 3 times to warm
//! up, then [`ROUNDS`] times; prints one line per page, `console_page: page=NAME median_ms=X bytes=N`, against
//! the targets (median ≤ 50 ms, ≤ 100 KB uncompressed). Needs `HEIMDALL_TEST_DATABASE_URL` (set by
//! `scripts/test`); without it, says so and measures nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::model::MappingInput;
use heimdall_core::test_utils::TestDatabase;
use heimdall_core::{Config, Heimdall};
use heimdall_http::demo::{self, DevIssuer};
use heimdall_http::server::console::{ConsoleOptions, OidcConfig};
use heimdall_http::server::{self, AppState};
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const GROUPS: i64 = 10_000;
const MAPPINGS: i64 = 100_000;
const AUDIT_ROWS: i64 = 100_000;
/// Requests measured per page.
const ROUNDS: usize = 30;
const TARGET_MEDIAN: Duration = Duration::from_millis(50);
const TARGET_BYTES: usize = 100 * 1024;

fn location(resp: &reqwest::Response) -> Result<String, BoxError> {
    Ok(resp
        .headers()
        .get(reqwest::header::LOCATION)
        .ok_or("no Location")?
        .to_str()?
        .to_owned())
}

/// Signs in at `base`'s console through the development issuer as `subject`; returns the session cookie.
async fn sign_in(http: &reqwest::Client, base: &str, subject: &str) -> Result<String, BoxError> {
    let to_provider = http.get(format!("{base}/console/signin")).send().await?;
    let authorize = reqwest::Url::parse(&location(&to_provider)?)?;
    let q: std::collections::HashMap<String, String> = authorize.query_pairs().into_owned().collect();
    let provider = format!("{}://{}", authorize.scheme(), authorize.authority());
    let form = [
        ("subject", subject),
        ("client_id", &q["client_id"]),
        ("redirect_uri", &q["redirect_uri"]),
        ("state", &q["state"]),
        ("code_challenge", &q["code_challenge"]),
    ];
    let chosen = http
        .post(format!("{provider}/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form)?)
        .send()
        .await?;
    let signed_in = http.get(location(&chosen)?).send().await?;
    let cookie = signed_in
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .ok_or("no session cookie")?
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_owned();
    Ok(cookie)
}

async fn run() -> Result<(), BoxError> {
    let Some(db) = TestDatabase::postgres().await else {
        println!("console_page: needs PostgreSQL (HEIMDALL_TEST_DATABASE_URL); not measured");
        return Ok(());
    };
    let h = Heimdall::builder(Config {
        database_url: db.url.clone(),
        bootstrap_superadmins: vec!["bench-admin".to_owned()],
        ..Config::default()
    })
    .build()
    .await?;
    let started = Instant::now();
    db.insert_console_fixture(GROUPS, MAPPINGS, AUDIT_ROWS).await?;
    // One change through the facade, so that the snapshot loads the inserted mappings.
    let system = h.system_caller("benchmark")?;
    h.create_mapping(
        &system,
        &MappingInput {
            method: "GET".to_owned(),
            path_pattern: "/bench/last/:id".to_owned(),
            action: "bench:read".to_owned(),
            ..MappingInput::default()
        },
    )
    .await?;
    h.create_group(&system, "bench:leads", None).await?;
    h.create_management_right(&system, "bench:leads", "%g99__", Some("/bench/**"))
        .await?;
    h.add_member(&system, "bench:leads", "bench-manager").await?;
    let snapshot = h.refresh_mappings().await?;
    let edited = snapshot.rules().first().map(|r| r.id).ok_or("no mapping")?;
    eprintln!(
        "console_page: {GROUPS} groups, {} mappings, {AUDIT_ROWS} audit rows in {:.1?}",
        snapshot.len(),
        started.elapsed()
    );

    let issuer = Arc::new(DevIssuer::new()?);
    let issuer_url = issuer.clone().serve(
        TcpListener::bind("127.0.0.1:0").await?,
        vec![
            ("bench-admin".to_owned(), "a superadmin".to_owned()),
            ("bench-manager".to_owned(), "a delegated manager".to_owned()),
        ],
    )?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let verifier = TokenVerifier::new(IdentityConfig {
        issuer: Some(demo::ISSUER.to_owned()),
        audience: Some(demo::AUDIENCE.to_owned()),
        ..IdentityConfig::new(format!("{issuer_url}/jwks.json"))
    })?;
    let state = AppState::builder(h)
        .verifier(Some(verifier))
        .console(Some(ConsoleOptions {
            oidc: OidcConfig {
                issuer: issuer_url,
                client_id: "heimdall-console".to_owned(),
                public_url: base.clone(),
                allow_plain_http: false,
            },
            session_ttl: Duration::from_secs(3600),
        }))
        .build()
        .await?;
    tokio::spawn(server::serve(listener, state, std::future::pending::<()>()));

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let admin = sign_in(&http, &base, "bench-admin").await?;
    let manager = sign_in(&http, &base, "bench-manager").await?;
    let pages = [
        ("groups", "/console/groups".to_owned(), &admin),
        ("groups_search", "/console/groups?prefix=bench:g99".to_owned(), &admin),
        ("group", "/console/groups/bench:g4242".to_owned(), &admin),
        ("roles", "/console/roles".to_owned(), &admin),
        ("mappings", "/console/mappings".to_owned(), &admin),
        (
            "mappings_by_owner",
            "/console/mappings?owner=bench:g4242".to_owned(),
            &admin,
        ),
        (
            "mappings_by_path",
            "/console/mappings?path=/bench/r9999".to_owned(),
            &admin,
        ),
        ("mapping", format!("/console/mappings/{edited}"), &admin),
        (
            "try",
            "/console/try?method=GET&path=/bench/r77777/1&subject=bench-admin".to_owned(),
            &admin,
        ),
        ("api_keys", "/console/api-keys".to_owned(), &admin),
        ("audit", "/console/audit".to_owned(), &admin),
        (
            "audit_filtered",
            "/console/audit?operation=add_member&target=group:bench:g4242&outcome=failure\
             &since=2000-01-01T00:00"
                .to_owned(),
            &admin,
        ),
        ("sync", "/console/sync".to_owned(), &admin),
        ("user", "/console/users/bench-admin".to_owned(), &admin),
        ("manager_groups", "/console/groups".to_owned(), &manager),
        ("manager_group", "/console/groups/bench:g9942".to_owned(), &manager),
        ("manager_mappings", "/console/mappings".to_owned(), &manager),
    ];
    let mut missed = Vec::new();
    for (name, path, cookie) in pages {
        let url = format!("{base}{path}");
        let mut times = Vec::with_capacity(ROUNDS);
        let mut bytes = 0;
        for i in 0..ROUNDS + 3 {
            let asked = Instant::now();
            let resp = http
                .get(&url)
                .header(reqwest::header::COOKIE, cookie.as_str())
                .send()
                .await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            let took = asked.elapsed();
            if !status.is_success() {
                return Err(format!("{name}: {status}: {}", String::from_utf8_lossy(&body)).into());
            }
            bytes = body.len();
            if i >= 3 {
                times.push(took);
            }
        }
        times.sort();
        let median = times[times.len() / 2];
        let met = median <= TARGET_MEDIAN && bytes <= TARGET_BYTES;
        if !met {
            missed.push(name);
        }
        println!(
            "console_page: page={name} median_ms={:.2} bytes={bytes} (targets: median <= {} ms, <= {} KB: {})",
            median.as_secs_f64() * 1e3,
            TARGET_MEDIAN.as_millis(),
            TARGET_BYTES / 1024,
            if met { "met" } else { "MISSED" }
        );
    }
    if !missed.is_empty() {
        println!("console_page: targets missed by {missed:?}");
    }
    db.drop_database().await;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes criterion-style flags (`--bench`); this measurement takes none.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}
