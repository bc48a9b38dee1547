//! Bounded staleness when a push worker dies: a worker (a separate `heimdall worker` process) holds the claims
//! of users whose memberships were just revoked, stuck on a paused Cerbos, and is killed with SIGKILL; another
//! worker takes those users over once the dead one's short claim lapses. Every revocation is enforced by Cerbos
//! within 5 s of its 2xx.

use std::process::Command;
use std::time::{Duration, Instant};

use heimdall_core::pdp::Decision;
use heimdall_core::test_utils::TestDatabase;
use heimdall_core::test_utils::cerbos::{Cerbos, decide};
use serde_json::json;

use crate::support::{Api, Idp, Process, cerbos_env, token};

/// Users whose revocations the killed worker holds.
const USERS: usize = 20;
/// The bound the README promises for a worker's death.
const BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_claims_are_taken_over_within_seconds() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    let Some(cerbos) = Cerbos::start_new().await else {
        return;
    };
    cerbos.install_admin_pack().await;
    let idp = Idp::start().await;
    let mut env = idp.env();
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    env.push(("SYNC_RETRY_INTERVAL_SECONDS", "1".to_owned()));
    // The server decides admin operations itself (built-in PDP), so it keeps answering while Cerbos is paused;
    // only the workers talk to Cerbos.
    let server = Process::serve(&env);
    let mut worker_env = env.clone();
    worker_env.extend(cerbos_env(&cerbos));
    let mut doomed = Process::spawn(&["worker"], &worker_env, None);
    let api = Api::new(&server.base);
    let root = token("root");
    let client = cerbos.client();

    api.course_readers(&root).await;
    let users: Vec<String> = (0..USERS).map(|i| format!("crash-{i}")).collect();
    for user in &users {
        api.post("/api/v1/groups/go:readers/members", &root, json!({"subject": user}))
            .await
            .expect(201);
    }
    for user in &users {
        let started = Instant::now();
        while decide(&client, user, "course:read").await != Decision::Allow {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{user}'s membership never reached Cerbos"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // Cerbos hangs; the revocations are acknowledged while the worker is stopped, so that when it goes on it
    // claims them all in one round, and waits on Cerbos.
    cerbos.pause(true);
    let signal = |sig: &str| {
        let sent = Command::new("kill")
            .args([sig, &doomed.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {sig}");
    };
    signal("-STOP");
    let mut acknowledged = Vec::with_capacity(USERS);
    for user in &users {
        api.delete(&format!("/api/v1/groups/go:readers/members/{user}"), &root)
            .await
            .expect(204);
        acknowledged.push(Instant::now());
    }
    signal("-CONT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal("-KILL");
    let started = Instant::now();
    while doomed.running() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the worker survived SIGKILL"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The dead worker's claims lapse (nobody renews them); the server's metrics show them until they are
    // taken over.
    let lapsed = format!("heimdall_outbox_lapsed_claims {USERS}");
    let started = Instant::now();
    loop {
        let metrics = api.call("GET", "/metrics", None, None).await.expect(200).text;
        if metrics.lines().any(|l| l == lapsed) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "the dead worker's claims did not lapse within 4 s of its death"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _heir = Process::spawn(&["worker"], &worker_env, None);
    cerbos.pause(false);

    // Every pass asks Cerbos about each user not yet refused; a user's staleness is from its 2xx to the first
    // pass that found it refused.
    let mut pending: Vec<usize> = (0..USERS).collect();
    let mut worst = Duration::ZERO;
    while !pending.is_empty() {
        let mut still = Vec::new();
        for i in pending {
            if decide(&client, &users[i], "course:read").await == Decision::Deny {
                worst = worst.max(acknowledged[i].elapsed());
            } else {
                assert!(
                    acknowledged[i].elapsed() < Duration::from_secs(30),
                    "{}'s revocation never reached Cerbos",
                    users[i]
                );
                still.push(i);
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Straight to the process's stderr, past the test harness's capture: the figure belongs in every run's log.
    let line = format!(
        "worker_crash_staleness: users={USERS} max_s={:.2}\n",
        worst.as_secs_f64()
    );
    std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes()).unwrap();
    assert!(
        worst <= BOUND,
        "a revocation held by the dead worker took {worst:?} to reach Cerbos (bound {BOUND:?})"
    );
}
