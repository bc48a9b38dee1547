//! How long a membership change takes to reach a real Cerbos: from the commit of `add_member` to the moment
//! Cerbos answers the new decision for the member, with a push worker running at its default settings.
//!
//! Three setups: the worker in the API's process (`in_process`); the worker as a separate process, as
//! deployed (`separate_worker`: its own Heimdall and pool, woken by PostgreSQL's `LISTEN/NOTIFY`); and the
//! same with 8 tasks writing at once (`separate_worker_8_writers`).
//!
//! Run with `cargo bench -p heimdall-benches --bench propagation`; needs `HEIMDALL_CERBOS_BIN` (set by
//! `scripts/test`) and uses PostgreSQL when `HEIMDALL_TEST_DATABASE_URL` is set, SQLite otherwise (then only
//! `in_process`). Prints the median and the 99th percentile over [`CHANGES`] changes each. Target: p99 ≤
//! 100 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use heimdall_benches::percentile;
use heimdall_core::model::{Caller, Subject};
use heimdall_core::pdp::{CerbosClient, Decision, Pdp, Principal, Resource, principal_id};
use heimdall_core::sync::{PushWorker, SyncConfig};
use heimdall_core::test_utils::cerbos::Cerbos;
use heimdall_core::test_utils::{TestDatabase, course_editors};
use heimdall_core::{Config, Heimdall};

/// How many membership changes are measured.
const CHANGES: usize = 200;
/// The target for the 99th percentile.
const TARGET_P99: Duration = Duration::from_millis(100);
/// How often a waiting writer asks Cerbos for the new decision (the measurement's resolution).
const CHECK_EVERY: Duration = Duration::from_millis(5);
/// Writing tasks in the concurrent setup.
const WRITERS: usize = 8;
/// Longest wait for one change before the run is declared broken.
const GIVE_UP: Duration = Duration::from_secs(30);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Adds `subject` to the editors and waits until Cerbos allows them: the time from the commit on.
async fn one_change(h: &Heimdall, root: &Caller, checker: &CerbosClient, subject: &str) -> Result<Duration, BoxError> {
    let principal = Principal::new(principal_id(&Subject::parse(subject)?), ["user"]);
    let resource = Resource::new("course", "course:1");
    h.add_member(root, "go:course:editor", subject).await?;
    let committed = Instant::now();
    loop {
        if checker.check(&principal, &resource, &["course:create"]).await?[0] == Decision::Allow {
            return Ok(committed.elapsed());
        }
        if committed.elapsed() > GIVE_UP {
            return Err(format!("{subject}'s change did not reach Cerbos within {GIVE_UP:?}").into());
        }
        // Asking more often only loads the two cores that PostgreSQL, Cerbos and the worker share.
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

/// Runs a push worker on `h` until the returned sender is dropped or used.
fn start_worker(h: &Heimdall, cerbos: &Cerbos) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let worker = PushWorker::new(h.clone(), Arc::new(cerbos.client()), SyncConfig::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        worker
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, running)
}

fn report(name: &str, backend: &str, mut delays: Vec<Duration>) {
    delays.sort();
    let (median, p99) = (percentile(&delays, 50.0), percentile(&delays, 99.0));
    println!(
        "propagation/{name} ({backend} store, {} changes): median {:.1} ms, p99 {:.1} ms, max {:.1} ms \
         (target p99 <= {} ms: {})",
        delays.len(),
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        delays[delays.len() - 1].as_secs_f64() * 1e3,
        TARGET_P99.as_millis(),
        if p99 <= TARGET_P99 { "met" } else { "MISSED" },
    );
}

async fn run() -> Result<(), BoxError> {
    let Some(cerbos) = Cerbos::start_new().await else {
        return Ok(());
    };
    let db = match TestDatabase::postgres().await {
        Some(db) => db,
        None => TestDatabase::sqlite(),
    };
    let config = Config {
        database_url: db.url.clone(),
        ..Config::default()
    };
    let api = Heimdall::builder(config.clone()).build().await?;
    let root = course_editors(&api).await;
    let checker = cerbos.client();

    // The worker in the API's process, woken in-process.
    let (stop, running) = start_worker(&api, &cerbos);
    let mut delays = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        delays.push(one_change(&api, &root, &checker, &format!("local{i}")).await?);
    }
    let _ = stop.send(());
    running.await?;
    report("in_process", api.backend(), delays);

    if api.backend() == "postgres" {
        // As deployed: the worker is another process (its own Heimdall and pool; nothing shared in memory).
        let worker_process = Heimdall::builder(config).build().await?;
        let (stop, running) = start_worker(&worker_process, &cerbos);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut delays = Vec::with_capacity(CHANGES);
        for i in 0..CHANGES {
            delays.push(one_change(&api, &root, &checker, &format!("remote{i}")).await?);
        }
        report("separate_worker", api.backend(), delays);

        // The same, with several writers at once.
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (api, root, checker) = (api.clone(), root.clone(), cerbos.client());
                tokio::spawn(async move {
                    let mut delays = Vec::new();
                    for i in 0..CHANGES / WRITERS {
                        delays.push(one_change(&api, &root, &checker, &format!("w{w}x{i}")).await?);
                    }
                    Ok::<_, BoxError>(delays)
                })
            })
            .collect();
        let mut delays = Vec::with_capacity(CHANGES);
        for t in tasks {
            delays.extend(t.await??);
        }
        let _ = stop.send(());
        running.await?;
        report(&format!("separate_worker_{WRITERS}_writers"), api.backend(), delays);
        drop(worker_process);
    } else {
        println!("propagation/separate_worker: needs PostgreSQL (HEIMDALL_TEST_DATABASE_URL); not measured");
    }
    drop(api);
    db.drop_database().await;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes criterion-style flags (`--bench`); this measurement takes none.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
