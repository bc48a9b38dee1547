//! `follower_memory` (issue 19): a follower deciding locally with grants on demand (`Decider::OnDemand`), against
//! a heimdall-http that knows 1,000,000 users, 10,000 of whom are active in the follower: the follower's resident
//! memory once it has decided for all 10,000, a cold subject's first decision (one `GET /api/v1/grants?subject=`
//! on loopback), and a warm one, beside the same warm decision from a grants snapshot (`Decider::Local`, what
//! followers did before).
//!
//! The server (SQLite, heimdall-http's router) runs in this process; the follower runs in a child process (this
//! binary again, with `--follower`), so that the resident memory it reports is its own. Targets on the 2-core
//! machine: at most 100 MiB resident, a cold first decision within 5 ms (median).
//!
//! Run with `cargo bench -p heimdall-benches --bench follower_memory`.

use std::process::Command;
use std::time::{Duration, Instant};

use heimdall_benches::{rss_kib, sqlite_heimdall};
use heimdall_core::authorizer::{
    Authorizer, AuthorizerConfig, Decider, FollowedGrants, GrantedPermission, GrantsSnapshot, LocalPdp, RemoteMappings,
    adapter_check,
};
use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::mapping::{MappingRule, Method, PathPattern};
use heimdall_core::model::{ActionName, Subject};
use heimdall_core::pdp::{Decision, Pdp};
use heimdall_http::server::{self, AppState, ServerOptions};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Users the server knows.
const USERS: u64 = 1_000_000;
/// Users active in the follower (the first of them, members of the group that may read courses).
const ACTIVE: u64 = 10_000;
/// Subjects the follower holds at most.
const CAPACITY: u64 = 20_000;
/// Targets.
const RSS_TARGET_MIB: f64 = 100.0;
const COLD_TARGET_MS: f64 = 5.0;
const TOKEN: &str = "follower-memory-benchmark-static-token";

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--follower") {
        let base = args.get(at + 1).ok_or("--follower takes the server's base URL")?;
        return follower(base);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve_and_measure())
}

/// The server side: the user base, heimdall-http, and the follower child run against it.
async fn serve_and_measure() -> Result<(), BoxError> {
    let (db, h) = sqlite_heimdall().await?;
    let system = h.system_caller("benchmark")?;
    h.create_role(&system, "go:reader", None).await?;
    h.grant_permission(&system, "go:reader", "course:read", "allow").await?;
    h.create_group(&system, "go:readers", None).await?;
    h.assign_group_role(&system, "go:readers", "go:reader").await?;
    let started = Instant::now();
    db.insert_users("user-", USERS, "go:readers", ACTIVE).await?;
    eprintln!(
        "follower_memory: {USERS} users, {ACTIVE} of them readers, inserted in {:?}",
        started.elapsed()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let options = ServerOptions {
        static_api_token: Some(TOKEN.to_owned()),
        requests_per_minute: None,
        ..ServerOptions::default()
    };
    let state = AppState::builder(h).options(options).build().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server::serve(listener, state, async {
        let _ = stopped.await;
    }));

    let exe = std::env::current_exe()?;
    let out = tokio::task::spawn_blocking(move || Command::new(exe).arg("--follower").arg(&base).output()).await??;
    let _ = stop.send(());
    served.await??;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("the follower failed ({})", out.status).into());
    }
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(())
}

/// This process's resident memory, in MiB.
fn rss_mib() -> Result<f64, BoxError> {
    Ok(rss_kib()? / 1024.0)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() * 99 / 100]
}

/// Decides `course:read` for each active subject through `pdp`, timing each decision.
async fn decide_all(pdp: &dyn Pdp, rule: &MappingRule) -> Result<Vec<Duration>, BoxError> {
    let mut times = Vec::with_capacity(ACTIVE as usize);
    for i in 1..=ACTIVE {
        let subject = Subject::parse(format!("user-{i}"))?;
        let started = Instant::now();
        let decision = adapter_check(pdp, &subject, rule).await?;
        times.push(started.elapsed());
        if decision != Decision::Allow {
            return Err(format!("user-{i} was not allowed to read courses").into());
        }
    }
    Ok(times)
}

/// The follower side (the child process).
fn follower(base: &str) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Tokens are not verified here: the decisions are asked of the PDP directly, as the authorizer asks it.
        let verifier = TokenVerifier::new(IdentityConfig::new("http://127.0.0.1:9/jwks.json".to_owned()))?;
        let remote = RemoteMappings::new(base, TOKEN);
        let (authorizer, task) = Authorizer::following(
            verifier,
            remote,
            Decider::OnDemand { capacity: CAPACITY },
            AuthorizerConfig::default(),
        )?;
        let Some(FollowedGrants::OnDemand(grants)) = authorizer.local_grants().cloned() else {
            return Err("an on-demand follower holds grants on demand".into());
        };
        let started = Instant::now();
        while grants.version().is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                return Err("the follower never heard the change version".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rule = MappingRule {
            id: 1,
            method: Method::Get,
            pattern: PathPattern::parse("/courses/:id")?,
            action: ActionName::parse("course:read")?,
            owner_group: None,
            priority: 0,
        };
        let rss_start = rss_mib()?;
        let cold = decide_all(&*grants, &rule).await?;
        let warm = decide_all(&*grants, &rule).await?;
        let rss = rss_mib()?;
        let held = grants.held().await;
        let fetches = grants.fetches();
        task.abort();

        // The same warm decision from a grants snapshot (the other local mode, `Decider::Local`), holding what
        // the export holds for these subjects. (The export itself pages through every user: with a million
        // of them it outlasts the server's request timeout, which is why grants come on demand.)
        let granted = vec![GrantedPermission {
            resource_kind: "course".to_owned(),
            action: "course:read".to_owned(),
            effect: "allow".to_owned(),
        }];
        let local = LocalPdp::new();
        local.install(GrantsSnapshot {
            version: grants.version().unwrap_or_default(),
            subjects: (1..=ACTIVE).map(|i| (format!("user-{i}"), granted.clone())).collect(),
        });
        decide_all(&*local, &rule).await?;
        let export_warm = decide_all(&*local, &rule).await?;

        let cold_ms = median(cold.clone()).as_secs_f64() * 1e3;
        let met = |ok: bool| if ok { "met" } else { "MISSED" };
        println!(
            "follower_memory: users={USERS} active={ACTIVE} rss_mib={rss:.1} cold_first_decision_median_ms={cold_ms:.3} \
             cold_p99_ms={:.3} warm_decision_median_us={:.2} export_warm_decision_median_us={:.2} held={held} \
             fetches={fetches} rss_at_start_mib={rss_start:.1} (targets: rss <= {RSS_TARGET_MIB} MiB: {}, cold median \
             <= {COLD_TARGET_MS} ms: {})",
            p99(cold).as_secs_f64() * 1e3,
            median(warm).as_secs_f64() * 1e6,
            median(export_warm).as_secs_f64() * 1e6,
            met(rss <= RSS_TARGET_MIB),
            met(cold_ms <= COLD_TARGET_MS),
        );
        if fetches != ACTIVE {
            return Err(format!("{fetches} grants requests for {ACTIVE} subjects: each is fetched once").into());
        }
        Ok(())
    })
}
