//! How long a membership change takes to reach a real Cerbos: from the commit of `add_member` to the moment
//! Cerbos answers the new decision for the member, with a push worker running at its default settings.
//!
//! Run with `cargo bench -p heimdall-benches --bench propagation`; needs `HEIMDALL_CERBOS_BIN` (set by
//! `scripts/test`) and uses PostgreSQL when `HEIMDALL_TEST_DATABASE_URL` is set, SQLite otherwise. Prints
//! the median and the 99th percentile over [`CHANGES`] changes. Target: p99 ≤ 1 s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use heimdall_core::model::Subject;
use heimdall_core::pdp::{Decision, Pdp, Principal, Resource, principal_id};
use heimdall_core::sync::{PushWorker, SyncConfig};
use heimdall_core::test_utils::cerbos::Cerbos;
use heimdall_core::test_utils::{TestDatabase, course_editors};
use heimdall_core::{Config, Heimdall};

/// How many membership changes are measured.
const CHANGES: usize = 200;
/// The target for the 99th percentile.
const TARGET_P99: Duration = Duration::from_secs(1);
/// Longest wait for one change before the run is declared broken.
const GIVE_UP: Duration = Duration::from_secs(30);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let Some(cerbos) = Cerbos::start_new().await else {
        return Ok(());
    };
    let db = match TestDatabase::postgres().await {
        Some(db) => db,
        None => TestDatabase::sqlite(),
    };
    let h = Heimdall::builder(Config {
        database_url: db.url.clone(),
        ..Config::default()
    })
    .build()
    .await?;
    let root = course_editors(&h).await;

    let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), SyncConfig::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        worker
            .run(async {
                let _ = stopped.await;
            })
            .await
    });

    let checker = cerbos.client();
    let resource = Resource::new("course", "course:1");
    let mut delays = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        let subject = Subject::parse(format!("member{i}"))?;
        let principal = Principal::new(principal_id(&subject), ["user"]);
        let committed = Instant::now();
        h.add_member(&root, "go:course:editor", subject.as_str()).await?;
        loop {
            if checker.check(&principal, &resource, &["course:create"]).await?[0] == Decision::Allow {
                break;
            }
            if committed.elapsed() > GIVE_UP {
                return Err(format!("change {i} did not reach Cerbos within {GIVE_UP:?}").into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        delays.push(committed.elapsed());
    }
    let _ = stop.send(());
    running.await?;

    delays.sort();
    let (median, p99) = (percentile(&delays, 50.0), percentile(&delays, 99.0));
    println!(
        "propagation/membership_to_cerbos ({} store, {CHANGES} changes): median {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         (target p99 <= {} ms: {})",
        h.backend(),
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        delays[delays.len() - 1].as_secs_f64() * 1e3,
        TARGET_P99.as_millis(),
        if p99 <= TARGET_P99 { "met" } else { "MISSED" },
    );
    drop(h);
    db.drop_database().await;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes criterion-style flags (`--bench`); this measurement takes none.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
