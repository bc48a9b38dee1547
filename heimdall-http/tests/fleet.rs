//! The fleet test: Heimdall as production teams run it, under faults, everything on 127.0.0.1.
//!
//! - PostgreSQL: a primary with a synchronous hot standby (streaming replication), reached only through
//!   HAProxy, which the test switches to the standby when it promotes it.
//! - Cerbos: two PDPs on Cerbos' own PostgreSQL store (a database of its own on the same cluster), behind an
//!   HAProxy that balances over the healthy ones; the workers write through it and reload both PDPs.
//! - Heimdall: three API replicas (`heimdall serve`, deciding admin operations with the built-in PDP) and two
//!   push workers (`heimdall worker`), all on the proxied database.
//! - Followers: 54 core `Authorizer`s following the API replicas' feeds, a third each deciding from the grants
//!   export, from grants on demand, and through Cerbos.
//!
//! Eight writers make random membership, role, grant and mapping changes on the replicas for 60 s while
//! requests are authorised through the followers and mappings are looked up on the replicas. Meanwhile an API
//! replica is killed (SIGKILL) and restarted, a worker is killed in the middle of a push and restarted, a
//! Cerbos PDP is stopped and started, and PostgreSQL fails over once. Then the test shows that every
//! acknowledged write is in the database exactly once, both PDPs decide as the database says within 5 s of
//! the last write, every follower reaches the final versions within 2 s and never went backwards, and the
//! replicas answered no 5xx but 503 inside the failover window; it prints one `fleet:` line with the figures.

// Tests may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "api/support.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use heimdall_core::authorizer::{Authorizer, AuthorizerConfig, Decider, RemoteMappings};
use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::model::Subject;
use heimdall_core::pdp::{CerbosClient, Decision, Pdp as _, Principal, Resource, principal_id};
use heimdall_core::test_utils::cerbos::{ADMIN_PASSWORD, ADMIN_USER, Cerbos, config_at, create_postgres_store};
use heimdall_core::test_utils::cluster::PrivateCluster;
use heimdall_core::test_utils::haproxy::{Backend, Haproxy, Mode};
use heimdall_core::test_utils::inspect::{Inspector, create_database};
use heimdall_core::{Config, Heimdall};
use serde_json::{Value, json};

use support::{Idp, Process, token};

/// How long the writers write.
const RUN: Duration = Duration::from_secs(60);
/// Concurrent writers, each a superadmin of its own (so that the per-caller mutation limit is each one's).
const WRITERS: usize = 8;
/// Followers: a third each local (export), on demand, and Cerbos.
const FOLLOWERS: usize = 54;
/// Subjects each writer makes members of its groups.
const SUBJECTS_PER_WRITER: usize = 12;
/// Most actions a writer makes (Cerbos checks up to 50 actions at once).
const ACTIONS_PER_WRITER: usize = 30;
/// The bounds the issue sets.
const FOLLOWER_CATCH_UP: Duration = Duration::from_secs(2);
const CERBOS_CATCH_UP: Duration = Duration::from_secs(5);
/// After the proxy switched, how long connection pools may take to notice and reconnect.
const FAILOVER_GRACE: Duration = Duration::from_secs(5);

/// Each follower's versions (mapping, grants) whenever they changed, and when.
type History = Vec<Vec<(Instant, i64, i64)>>;
/// Each lookup on a replica: when it was answered, and its status (`None`: no answer).
type Lookups = Vec<(Instant, Option<u16>)>;

/// A small deterministic generator (xorshift64*): the writers' choices, reproducible from the seed printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        usize::try_from(x >> 33).unwrap() % n.max(1)
    }
}

/// A 5xx a replica answered: when the request was sent and answered, the status and the error body's code.
type ServerError = (Instant, Instant, u16, String);

/// What the replicas answered the writers: every 5xx, when each 2xx came, and the other counts.
#[derive(Default)]
struct Statuses {
    server_errors: Mutex<Vec<ServerError>>,
    acknowledged_at: Mutex<Vec<Instant>>,
    answered: AtomicU64,
    transport_errors: AtomicU64,
    too_many: AtomicU64,
    concurrent_changes: AtomicU64,
}

impl Statuses {
    fn record(&self, sent: Instant, status: u16, body: &str) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            let code = serde_json::from_str::<Value>(body).map_or_else(
                |_| "(no JSON body)".to_owned(),
                |v| v["error"]["code"].as_str().unwrap_or("(no code)").to_owned(),
            );
            self.server_errors
                .lock()
                .unwrap()
                .push((sent, Instant::now(), status, code));
        } else if (200..300).contains(&status) {
            self.acknowledged_at.lock().unwrap().push(Instant::now());
        }
    }
}

/// The API replicas' base URLs (fixed ports: a restarted replica comes back on its own).
#[derive(Clone)]
struct Replicas {
    bases: Arc<Vec<String>>,
    http: reqwest::Client,
    statuses: Arc<Statuses>,
}

/// What became of one write.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Answered 2xx.
    Acknowledged,
    /// An earlier attempt's answer was lost (a 503, a dropped connection) and a retry found it done (409, or
    /// 404 for a removal): it is in the database, but was never acknowledged.
    DoneEarlier,
    /// Refused for good (4xx, with its body): not in the database.
    Refused(u16, String),
}

impl Replicas {
    /// Sends one write until its outcome is certain: a lost answer (no connection, a 5xx) is retried on the next
    /// replica, as a careful client does; a 429 waits. Panics when nothing is certain after 60 s.
    async fn write(&self, start: usize, as_: &str, method: &str, path: &str, body: Option<Value>) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut unsure = false;
        let mut replica = start;
        loop {
            assert!(
                Instant::now() < deadline,
                "{method} {path}: no certain answer within 60 s"
            );
            let base = &self.bases[replica % self.bases.len()];
            let mut req = self
                .http
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .bearer_auth(as_);
            if let Some(body) = &body {
                req = req.json(body);
            }
            let sent = Instant::now();
            let (status, text) = match req.send().await {
                Ok(resp) => (resp.status().as_u16(), resp.text().await.unwrap_or_default()),
                Err(_) => {
                    self.statuses.transport_errors.fetch_add(1, Ordering::Relaxed);
                    unsure = true;
                    replica += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.statuses.record(sent, status, &text);
            match status {
                200..=299 => return Outcome::Acknowledged,
                429 => {
                    self.statuses.too_many.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                500..=599 => {
                    unsure = true;
                    replica += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // Concurrent writers kept getting in the way: nothing was changed, send it again.
                409 if text.contains("\"concurrent_change\"") => {
                    self.statuses.concurrent_changes.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                409 if unsure => return Outcome::DoneEarlier,
                404 if unsure && method == "DELETE" => return Outcome::DoneEarlier,
                other => return Outcome::Refused(other, text),
            }
        }
    }
}

/// One writer's view of what it made: the facts it expects in the database, and its counts.
#[derive(Default)]
struct Writer {
    groups: Vec<String>,
    roles: Vec<String>,
    actions: Vec<String>,
    members: Vec<(String, String)>,
    used_pairs: BTreeSet<(String, String)>,
    grants: BTreeSet<(String, String)>,
    facts: BTreeSet<String>,
    acknowledged: u64,
    done_earlier: u64,
    refused: Vec<String>,
    last_ack: Option<Instant>,
}

impl Writer {
    fn apply(&mut self, outcome: &Outcome, what: &str, fact: impl FnOnce(&mut Self)) -> bool {
        match outcome {
            Outcome::Acknowledged => {
                self.acknowledged += 1;
                self.last_ack = Some(Instant::now());
            }
            Outcome::DoneEarlier => self.done_earlier += 1,
            Outcome::Refused(status, body) => {
                self.refused.push(format!("{what}: {status} {body}"));
                return false;
            }
        }
        fact(self);
        true
    }
}

/// Runs writer `w` until `stop`.
async fn write(w: usize, replicas: Replicas, stop: Arc<AtomicBool>) -> Writer {
    let me = token(&format!("writer{w}"));
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1));
    let mut state = Writer::default();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let at = w + n;
        let choice = if state.groups.is_empty() || n.is_multiple_of(12) {
            0
        } else if state.roles.is_empty() || (n % 12 == 1 && state.actions.len() < ACTIONS_PER_WRITER) {
            1
        } else {
            2 + rng.below(10)
        };
        match choice {
            0 => {
                let g = format!("fleet:w{w}:g{n}");
                let o = replicas
                    .write(at, &me, "POST", "/api/v1/groups", Some(json!({"name": g})))
                    .await;
                state.apply(&o, "create group", |s| {
                    s.facts.insert(format!("group|{g}"));
                    s.groups.push(g.clone());
                });
            }
            1 => {
                let r = format!("fleet:w{w}:r{n}");
                let a = format!("fleet:w{w}:a{n}");
                let o = replicas
                    .write(at, &me, "POST", "/api/v1/roles", Some(json!({"name": r})))
                    .await;
                if state.apply(&o, "create role", |s| {
                    s.facts.insert(format!("role|{r}"));
                    s.roles.push(r.clone());
                }) {
                    let path = format!("/api/v1/roles/{r}/permissions/{a}");
                    let o = replicas
                        .write(at, &me, "PUT", &path, Some(json!({"effect": "allow"})))
                        .await;
                    state.apply(&o, "grant permission", |s| {
                        s.facts.insert(format!("perm|{r}|{a}"));
                        s.actions.push(a.clone());
                    });
                }
            }
            2..=5 => {
                // A new membership of one of the writer's subjects (never the same pair twice).
                let g = state.groups[rng.below(state.groups.len())].clone();
                let s = format!("w{w}u{}", rng.below(SUBJECTS_PER_WRITER));
                if !state.used_pairs.insert((g.clone(), s.clone())) {
                    continue;
                }
                let path = format!("/api/v1/groups/{g}/members");
                let o = replicas
                    .write(at, &me, "POST", &path, Some(json!({"subject": s})))
                    .await;
                state.apply(&o, "add member", |st| {
                    st.facts.insert(format!("member|{g}|{s}"));
                    st.members.push((g.clone(), s.clone()));
                });
            }
            6 | 7 => {
                if state.members.is_empty() {
                    continue;
                }
                let (g, s) = state.members.swap_remove(rng.below(state.members.len()));
                let path = format!("/api/v1/groups/{g}/members/{s}");
                let o = replicas.write(at, &me, "DELETE", &path, None).await;
                if !state.apply(&o, "remove member", |st| {
                    st.facts.remove(&format!("member|{g}|{s}"));
                }) {
                    state.members.push((g, s));
                }
            }
            8 | 9 => {
                let g = state.groups[rng.below(state.groups.len())].clone();
                let r = state.roles[rng.below(state.roles.len())].clone();
                if !state.grants.insert((g.clone(), r.clone())) {
                    continue;
                }
                let path = format!("/api/v1/groups/{g}/roles");
                let o = replicas.write(at, &me, "POST", &path, Some(json!({"role": r}))).await;
                state.apply(&o, "assign role", |st| {
                    st.facts.insert(format!("grant|{g}|{r}"));
                });
            }
            _ => {
                if state.actions.is_empty() {
                    continue;
                }
                let a = state.actions[rng.below(state.actions.len())].clone();
                let p = format!("/fleet/w{w}/m{n}/:id");
                let o = replicas
                    .write(
                        at,
                        &me,
                        "POST",
                        "/api/v1/mappings",
                        Some(json!({"method": "GET", "path_pattern": p, "action": a})),
                    )
                    .await;
                state.apply(&o, "create mapping", |st| {
                    st.facts.insert(format!("mapping|GET|{p}"));
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    state
}

/// A follower's mapping version and grants version (local grants', or the pushed version it was told).
fn versions(a: &Authorizer) -> (i64, i64) {
    let mapping = a.snapshot().map_or(i64::MIN, |s| s.version());
    let grants = match a.local_grants() {
        Some(g) => g.version().unwrap_or(i64::MIN),
        None => a.pushed_version().unwrap_or(i64::MIN),
    };
    (mapping, grants)
}

/// Sends `signal` to `pid`.
fn kill(signal: &str, pid: u32) {
    let sent = Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

/// SIGKILLs `p` and waits until it is gone.
async fn kill9(p: &mut Process) {
    kill("-KILL", p.pid());
    let started = Instant::now();
    while p.running() {
        assert!(started.elapsed() < Duration::from_secs(5), "survived SIGKILL");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many of the writers' subjects' decisions `pdp` gets wrong, against the database's grants.
async fn decision_differences(h: &Heimdall, pdp: &CerbosClient, writers: &[Writer]) -> usize {
    let mut wrong = 0;
    for (w, writer) in writers.iter().enumerate() {
        if writer.actions.is_empty() {
            continue;
        }
        let kind = format!("fleet:w{w}");
        let resource = Resource::new(&kind, "fleet:1");
        let actions: Vec<&str> = writer.actions.iter().map(String::as_str).collect();
        for k in 0..SUBJECTS_PER_WRITER {
            let subject = Subject::parse(format!("w{w}u{k}")).unwrap();
            let granted: BTreeSet<String> = h
                .subject_grants(&subject)
                .await
                .unwrap()
                .permissions
                .into_iter()
                .filter(|p| p.effect == "allow")
                .map(|p| p.action)
                .collect();
            let principal = Principal::new(principal_id(&subject), ["user"]);
            let Ok(decided) = pdp.check(&principal, &resource, &actions).await else {
                wrong += actions.len();
                continue;
            };
            for (action, decision) in actions.iter().zip(decided) {
                let want = if granted.contains(*action) {
                    Decision::Allow
                } else {
                    Decision::Deny
                };
                if decision != want {
                    wrong += 1;
                }
            }
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_loses_nothing_under_faults() {
    // PostgreSQL: a primary, its synchronous standby, and the proxy in front of them.
    let Some(mut primary) = PrivateCluster::start_primary(300) else {
        return;
    };
    let standby = PrivateCluster::standby_of(&primary, 300);
    let Some(pg_proxy) = Haproxy::start(&[Backend {
        name: "pg",
        mode: Mode::Failover,
        servers: vec![("primary", primary.port()), ("standby", standby.port())],
    }]) else {
        return;
    };
    let proxied = |db: &str| format!("postgres://postgres@127.0.0.1:{}/{db}", pg_proxy.port("pg"));
    create_database(&primary.url(), "heimdall").await;
    create_postgres_store(&primary.url(), "cerbos").await;

    // Cerbos: two PDPs on the shared store, behind a balancer.
    let Some(cerbos_a) = Cerbos::start_on_postgres(&proxied("cerbos")).await else {
        return;
    };
    let Some(mut cerbos_b) = Cerbos::start_on_postgres(&proxied("cerbos")).await else {
        return;
    };
    let balancer = Haproxy::start(&[Backend {
        name: "cerbos",
        mode: Mode::Balanced {
            health_path: "/_cerbos/health",
        },
        servers: vec![("a", cerbos_a.http_port()), ("b", cerbos_b.http_port())],
    }])
    .unwrap();
    let cerbos_base = format!("http://127.0.0.1:{}", balancer.port("cerbos"));

    // Heimdall: three API replicas (the first migrates alone), two workers.
    let idp = Idp::start().await;
    let static_token = support::secret("fleet-static-token-of-at-least-32-bytes-0123456789");
    let superadmins = std::iter::once("root".to_owned())
        .chain((0..WRITERS).map(|w| format!("writer{w}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut env = idp.env();
    env.push(("DB_DSN", proxied("heimdall")));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", superadmins));
    env.push(("STATIC_API_TOKEN", static_token.clone()));
    env.push(("HEIMDALL_REQUESTS_PER_MINUTE", "0".to_owned()));
    env.push(("HEIMDALL_MAX_STREAMS_PER_CALLER", "100".to_owned()));
    env.push(("SYNC_RETRY_INTERVAL_SECONDS", "1".to_owned()));
    let mut api = vec![Process::serve(&env)];
    api.push(Process::serve(&env));
    api.push(Process::serve(&env));
    let bases: Vec<String> = api.iter().map(|p| p.base.clone()).collect();
    let mut worker_env = env.clone();
    worker_env.push(("CERBOS_CHECK_URL", format!("{cerbos_base}/api/check/resources")));
    worker_env.push(("CERBOS_ADMIN_URL", format!("{cerbos_base}/admin/policy")));
    worker_env.push(("CERBOS_ADMIN_USER", ADMIN_USER.to_owned()));
    worker_env.push(("CERBOS_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()));
    worker_env.push((
        "CERBOS_RELOAD_URLS",
        format!("{},{}", cerbos_a.base_url(), cerbos_b.base_url()),
    ));
    let mut workers = [
        Process::spawn(&["worker"], &worker_env, None),
        Process::spawn(&["worker"], &worker_env, None),
    ];
    let h = Heimdall::builder(Config {
        database_url: proxied("heimdall"),
        ..Config::default()
    })
    .build()
    .await
    .unwrap();
    let db = Inspector::connect(&proxied("heimdall")).await;

    // Followers, spread over the replicas.
    let lb_pdp = Arc::new(CerbosClient::new(config_at(&cerbos_base)).unwrap());
    let mut followers = Vec::new();
    let mut feeds = Vec::new();
    for i in 0..FOLLOWERS {
        let verifier = TokenVerifier::new(IdentityConfig::new(idp.jwks_url.clone())).unwrap();
        let remote = RemoteMappings {
            poll_interval: Duration::from_secs(5),
            ..RemoteMappings::new(&bases[i % bases.len()], &static_token)
        };
        let decider = match i % 3 {
            0 => Decider::Local,
            1 => Decider::OnDemand { capacity: 64 },
            _ => Decider::Pdp(lb_pdp.clone()),
        };
        let (authorizer, task) = Authorizer::following(verifier, remote, decider, AuthorizerConfig::default()).unwrap();
        followers.push(authorizer);
        feeds.push(task);
    }
    let started = Instant::now();
    while !followers.iter().all(Authorizer::is_ready) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the followers never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Watchers: follower versions (every 20 ms), requests through the followers, lookups on the replicas.
    let stop = Arc::new(AtomicBool::new(false));
    let history: Arc<Mutex<History>> = Arc::new(Mutex::new(vec![Vec::new(); FOLLOWERS]));
    let backwards = Arc::new(AtomicU64::new(0));
    let watch = {
        let (followers, history, backwards, stop) =
            (followers.clone(), history.clone(), backwards.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = vec![(i64::MIN, i64::MIN); followers.len()];
            while !stop.load(Ordering::Relaxed) {
                for (i, f) in followers.iter().enumerate() {
                    let now = versions(f);
                    if now != last[i] {
                        if now.0 < last[i].0 || now.1 < last[i].1 {
                            backwards.fetch_add(1, Ordering::Relaxed);
                        }
                        history.lock().unwrap()[i].push((Instant::now(), now.0, now.1));
                        last[i] = now;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let decisions: Arc<Mutex<BTreeMap<u16, u64>>> = Arc::default();
    let requests = {
        let (followers, decisions, stop) = (followers.clone(), decisions.clone(), stop.clone());
        tokio::spawn(async move {
            let tokens: Vec<String> = (0..WRITERS)
                .flat_map(|w| (0..SUBJECTS_PER_WRITER).map(move |k| format!("w{w}u{k}")))
                .map(|s| token(&s))
                .collect();
            let mut rng = Rng(42);
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    // One of a writer's subjects, on a path that writer may have mapped.
                    let f = &followers[rng.below(followers.len())];
                    let w = rng.below(WRITERS);
                    let t = &tokens[w * SUBJECTS_PER_WRITER + rng.below(SUBJECTS_PER_WRITER)];
                    let path = format!("/fleet/w{w}/m{}/1", rng.below(200));
                    let status = match f.authorize("GET", &path, Some(t)).await {
                        Ok(_) => 200,
                        Err(r) => r.status,
                    };
                    *decisions.lock().unwrap().entry(status).or_default() += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let statuses = Arc::new(Statuses::default());
    let lookups: Arc<Mutex<Lookups>> = Arc::default();
    let lookup_task = {
        let (bases, lookups, stop, token) = (bases.clone(), lookups.clone(), stop.clone(), static_token.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let url = format!(
                    "{}/api/v1/mappings?method=GET&path=/fleet/w0/m1/1",
                    bases[i % bases.len()]
                );
                let status = http
                    .get(url)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status().as_u16());
                lookups.lock().unwrap().push((Instant::now(), status));
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    // The writers.
    let replicas = Replicas {
        bases: Arc::new(bases.clone()),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        statuses: statuses.clone(),
    };
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(write(w, replicas.clone(), stop_writing.clone())))
        .collect();
    let run_started = Instant::now();
    let at = |secs: u64| async move {
        let due = run_started + Duration::from_secs(secs);
        tokio::time::sleep_until(due.into()).await;
    };

    // The faults.
    at(8).await;
    kill9(&mut api[1]).await;
    at(10).await;
    let port = bases[1].rsplit(':').next().unwrap().to_owned();
    let mut restarted_env = env.clone();
    restarted_env.push(("PORT", port));
    api[1] = tokio::task::block_in_place(|| Process::serve(&restarted_env));

    at(16).await;
    // Worker 0 dies holding a claim: worker 1 is held still (it can neither claim nor renew), so a claim that
    // runs past the moment it stopped plus a whole lease was taken by worker 0.
    kill("-STOP", workers[1].pid());
    let stopped_at = db.now().await;
    let claimed_at = Instant::now();
    let mut held_claim = false;
    while claimed_at.elapsed() < Duration::from_secs(10) {
        let claimed = db.claims_taken_after(stopped_at, Duration::from_secs(2)).await;
        if claimed > 0 {
            held_claim = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    kill9(&mut workers[0]).await;
    kill("-CONT", workers[1].pid());
    at(19).await;
    workers[0] = Process::spawn(&["worker"], &worker_env, None);

    at(26).await;
    tokio::task::block_in_place(|| cerbos_b.stop());
    at(30).await;
    cerbos_b.start().await;

    at(38).await;
    let failover_started = Instant::now();
    tokio::task::block_in_place(|| {
        primary.stop();
        standby.promote();
        pg_proxy.switch("pg", "primary", "standby");
    });
    let failover_ended = Instant::now() + FAILOVER_GRACE;
    let switch_ms = failover_started.elapsed().as_millis();

    tokio::time::sleep_until((run_started + RUN).into()).await;
    stop_writing.store(true, Ordering::Relaxed);
    let mut written = Vec::new();
    for w in writers {
        written.push(w.await.unwrap());
    }
    let last_write = written.iter().filter_map(|w| w.last_ack).max().unwrap();

    // Followers: the final versions, reached by each.
    let (final_change, _) = h.change_and_pushed_version().await.unwrap();
    let final_mapping = h.refresh_mappings().await.unwrap().version();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !followers.iter().all(|f| {
        let (m, g) = versions(f);
        m >= final_mapping && g >= final_change
    }) && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Cerbos: the store equals the database (a dry-run reconciliation through each PDP), and each PDP decides
    // as the database says.
    let (client_a, client_b) = (cerbos_a.client(), cerbos_b.client());
    let deadline = Instant::now() + Duration::from_secs(20);
    let (cerbos_differences, cerbos_caught_up) = loop {
        let mut differences = 0;
        for client in [&client_a, &client_b] {
            let r = h.reconcile_dry_run(client).await.unwrap();
            differences += r.to_push + r.to_delete + r.failed + r.foreign;
            differences += decision_differences(&h, client, &written).await;
        }
        if differences == 0 || Instant::now() > deadline {
            break (differences, last_write.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.store(true, Ordering::Relaxed);
    watch.await.unwrap();
    requests.await.unwrap();
    lookup_task.await.unwrap();

    // Catch-up: from the last acknowledged write to the first moment a follower held both final versions.
    let mut catch_up: Vec<Duration> = history
        .lock()
        .unwrap()
        .iter()
        .map(|h| {
            h.iter()
                .find(|(_, m, g)| *m >= final_mapping && *g >= final_change)
                .map_or(Duration::MAX, |(t, _, _)| t.saturating_duration_since(last_write))
        })
        .collect();
    catch_up.sort();
    let p99 = catch_up[(catch_up.len() * 99).div_ceil(100) - 1];

    // The database: every acknowledged write there once; nothing there that no writer did.
    let expected: BTreeSet<String> = written.iter().flat_map(|w| w.facts.iter().cloned()).collect();
    let present = db.facts("fleet:", "fleet/").await;
    let lost = expected.difference(&present).count();
    let phantom = present.difference(&expected).count();
    let twice = db.audited_twice("writer").await;
    let duplicated = twice.len();
    let acknowledged: u64 = written.iter().map(|w| w.acknowledged).sum();
    let done_earlier: u64 = written.iter().map(|w| w.done_earlier).sum();
    let refused: Vec<&String> = written.iter().flat_map(|w| w.refused.iter()).collect();

    // The replicas' answers: 5xx only as 503 inside the failover window.
    let errors = statuses.server_errors.lock().unwrap().clone();
    let in_window = |sent: Instant, answered: Instant| answered >= failover_started && sent <= failover_ended;
    let failover_503 = errors
        .iter()
        .filter(|(s, a, status, code)| *status == 503 && code == "unavailable" && in_window(*s, *a))
        .count();
    let acknowledged_after_failover = statuses
        .acknowledged_at
        .lock()
        .unwrap()
        .iter()
        .filter(|t| **t > failover_ended)
        .count();
    let unexpected_5xx = errors.len() - failover_503;
    let lookups = lookups.lock().unwrap().clone();
    let window_lookups: Vec<_> = lookups
        .iter()
        .filter(|(t, _)| *t >= failover_started && *t <= failover_ended)
        .collect();
    let lookup_failures = window_lookups
        .iter()
        .filter(|(_, s)| !matches!(s, Some(200 | 404)))
        .count();

    let line = format!(
        "fleet: acknowledged={acknowledged} lost={lost} duplicated={duplicated} cerbos_differences={cerbos_differences} \
         follower_catch_up_p99_ms={} versions_backwards={} unexpected_5xx={unexpected_5xx} failover_503={failover_503}\n\
         fleet_detail: writers={WRITERS} followers={FOLLOWERS} run_s={} done_earlier={done_earlier} refused={} \
         phantom={phantom} transport_errors={} too_many={} concurrent_changes={} cerbos_caught_up_ms={} switch_ms={switch_ms} \
         acknowledged_after_failover={acknowledged_after_failover} \
         failover_lookups={} failover_lookup_failures={lookup_failures} worker_killed_holding_claim={held_claim} \
         follower_decisions={:?}\n",
        p99.as_millis(),
        backwards.load(Ordering::Relaxed),
        RUN.as_secs(),
        refused.len(),
        statuses.transport_errors.load(Ordering::Relaxed),
        statuses.too_many.load(Ordering::Relaxed),
        statuses.concurrent_changes.load(Ordering::Relaxed),
        cerbos_caught_up.as_millis(),
        window_lookups.len(),
        decisions.lock().unwrap(),
    );
    // Straight to the process's stderr, past the test harness's capture: the figures belong in every run's log.
    std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes()).unwrap();

    assert!(acknowledged > 500, "too few writes to show anything: {acknowledged}");
    assert_eq!(
        lost,
        0,
        "acknowledged writes missing: {:?}",
        expected.difference(&present).take(10).collect::<Vec<_>>()
    );
    assert_eq!(
        phantom,
        0,
        "facts no writer made: {:?}",
        present.difference(&expected).take(10).collect::<Vec<_>>()
    );
    assert!(
        twice.is_empty(),
        "writes applied twice: {twice:?}; refused: {refused:?}"
    );
    assert!(refused.is_empty(), "writes refused: {refused:?}");
    assert_eq!(cerbos_differences, 0, "the Cerbos PDPs differ from the database");
    assert!(
        cerbos_caught_up <= CERBOS_CATCH_UP,
        "the Cerbos PDPs equalled the database {cerbos_caught_up:?} after the last write"
    );
    assert!(p99 <= FOLLOWER_CATCH_UP, "follower catch-up p99 {p99:?}: {catch_up:?}");
    assert_eq!(
        backwards.load(Ordering::Relaxed),
        0,
        "a follower's version went backwards"
    );
    let since_start = |t: Instant| t.duration_since(run_started);
    assert_eq!(
        unexpected_5xx,
        0,
        "5xx outside the failover window ({:?}, {:?} after the start): {:?}",
        since_start(failover_started),
        since_start(failover_ended),
        errors
            .iter()
            .map(|(sent, answered, status, code)| (since_start(*sent), since_start(*answered), status, code))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        lookup_failures, 0,
        "lookups failed during the failover: {window_lookups:?}"
    );
    assert!(held_claim, "worker 0 was never seen holding a claim");
    assert!(
        acknowledged_after_failover > 100,
        "writes did not resume after the failover: {acknowledged_after_failover}"
    );

    for task in feeds {
        task.abort();
    }
    for p in api.iter_mut().chain(workers.iter_mut()) {
        p.stop();
    }
}
