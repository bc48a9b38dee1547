//! Propagation in a fleet: from the commit of a membership change on one of three API replicas to the moment
//! both of two Cerbos PDPs answer the new decision.
//!
//! The PDPs share Cerbos' own PostgreSQL store (a database beside Heimdall's); two push workers write through
//! PDP A's Admin API (A sees its own writes) and make B reload after each push (`CERBOS_RELOAD_URLS`), as the
//! README's production section sets them up. The API replicas and the
//! workers are each a `Heimdall` of its own (its own pool, nothing shared in memory, as separate processes are;
//! the workers are woken by PostgreSQL's `LISTEN/NOTIFY`). Eight tasks write at once, spread over the replicas.
//!
//! Run with `cargo bench -p heimdall-benches --bench propagation_fleet`; needs `HEIMDALL_CERBOS_BIN` and
//! `HEIMDALL_TEST_DATABASE_URL` (both set by `scripts/test`). Prints
//! `propagation_fleet: median_ms=X p99_ms=X`. Target: p99 ≤ 250 ms on this 2-core machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use heimdall_benches::percentile;
use heimdall_core::model::{Caller, Subject};
use heimdall_core::pdp::{CerbosClient, Decision, Pdp, Principal, Resource, principal_id};
use heimdall_core::sync::{PolicyAdmin, PushWorker, SyncConfig};
use heimdall_core::test_utils::cerbos::{Cerbos, install_postgres_schema};
use heimdall_core::test_utils::{TestDatabase, course_editors};
use heimdall_core::{Config, Heimdall};

/// How many membership changes are measured.
const CHANGES: usize = 200;
/// Writing tasks.
const WRITERS: usize = 8;
/// API replicas the writers spread over.
const REPLICAS: usize = 3;
/// The target for the 99th percentile.
const TARGET_P99: Duration = Duration::from_millis(250);
/// How often a waiting writer asks each PDP (the measurement's resolution).
const CHECK_EVERY: Duration = Duration::from_millis(5);
/// Longest wait for one change before the run is declared broken.
const GIVE_UP: Duration = Duration::from_secs(30);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Adds `subject` to the editors through `replica`, and waits until every one of `pdps` allows them: the time
/// from the commit on.
async fn one_change(
    replica: &Heimdall,
    root: &Caller,
    pdps: &[CerbosClient],
    subject: &str,
) -> Result<Duration, BoxError> {
    let principal = Principal::new(principal_id(&Subject::parse(subject)?), ["user"]);
    let resource = Resource::new("course", "course:1");
    replica.add_member(root, "go:course:editor", subject).await?;
    let committed = Instant::now();
    let mut waiting: Vec<&CerbosClient> = pdps.iter().collect();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for pdp in waiting {
            if pdp.check(&principal, &resource, &["course:create"]).await?[0] != Decision::Allow {
                still.push(pdp);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if committed.elapsed() > GIVE_UP {
            return Err(format!("{subject}'s change did not reach every PDP within {GIVE_UP:?}").into());
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
    Ok(committed.elapsed())
}

async fn run() -> Result<(), BoxError> {
    let Some(db) = TestDatabase::postgres().await else {
        println!("propagation_fleet: needs PostgreSQL (HEIMDALL_TEST_DATABASE_URL); not measured");
        return Ok(());
    };
    let Some(store) = TestDatabase::postgres().await else {
        return Ok(());
    };
    install_postgres_schema(&store.url).await;
    let Some(a) = Cerbos::start_on_postgres(&store.url).await else {
        return Ok(());
    };
    let Some(b) = Cerbos::start_on_postgres(&store.url).await else {
        return Ok(());
    };
    let config = Config {
        database_url: db.url.clone(),
        ..Config::default()
    };
    let mut replicas = Vec::with_capacity(REPLICAS);
    for _ in 0..REPLICAS {
        replicas.push(Heimdall::builder(config.clone()).build().await?);
    }
    let root = course_editors(&replicas[0]).await;

    let mut stops = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..2 {
        let process = Heimdall::builder(config.clone()).build().await?;
        let reload: Vec<Arc<dyn PolicyAdmin>> = vec![Arc::new(b.client())];
        let worker = PushWorker::new(process, Arc::new(a.client()), SyncConfig::default()).reload_after_push(reload);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        workers.push(tokio::spawn(async move {
            worker
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        }));
        stops.push(stop);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let replica = replicas[w % REPLICAS].clone();
            let (root, pdps) = (root.clone(), vec![a.client(), b.client()]);
            tokio::spawn(async move {
                let mut delays = Vec::new();
                for i in 0..CHANGES / WRITERS {
                    delays.push(one_change(&replica, &root, &pdps, &format!("fleet{w}x{i}")).await?);
                }
                Ok::<_, BoxError>(delays)
            })
        })
        .collect();
    let mut delays = Vec::with_capacity(CHANGES);
    for t in tasks {
        delays.extend(t.await??);
    }
    for stop in stops {
        let _ = stop.send(());
    }
    for w in workers {
        w.await?;
    }
    delays.sort();
    let (median, p99) = (percentile(&delays, 50.0), percentile(&delays, 99.0));
    println!(
        "propagation_fleet: median_ms={:.1} p99_ms={:.1} max_ms={:.1} changes={} writers={WRITERS} replicas={REPLICAS} \
         pdps=2 workers=2 (target p99 <= {} ms: {})",
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        delays[delays.len() - 1].as_secs_f64() * 1e3,
        delays.len(),
        TARGET_P99.as_millis(),
        if p99 <= TARGET_P99 { "met" } else { "MISSED" },
    );
    drop(replicas);
    drop((a, b));
    db.drop_database().await;
    store.drop_database().await;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes criterion-style flags (`--bench`); this measurement takes none.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
