//! The Dockerfile and docker-compose.yml agree with what the `heimdall` binary reads: every variable the
//! compose file sets is one the service's command reads, every command the image runs exists, the image runs
//! as a non-root user, and the Cerbos configuration's admin password is the one the compose file gives
//! Heimdall (checked by starting the real Cerbos with it). Docker itself cannot run on this machine.

// Tests may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use heimdall_core::pdp::{CerbosClient, CerbosConfig, pack};
use heimdall_core::test_utils::TestDatabase;
use heimdall_core::test_utils::cerbos::{cerbos_bin, install_postgres_schema};

const COMPOSE: &str = include_str!("../../docker-compose.yml");
const DOCKERFILE: &str = include_str!("../../Dockerfile");
const CERBOS_CONFIG: &str = include_str!("../../deploy/cerbos/config.yaml");
const CERBOS_STORE_SCRIPT: &str = include_str!("../../deploy/postgres/10-cerbos-store.sh");

/// One compose service: how it is built (Dockerfile target), its command, its environment.
#[derive(Debug, Default)]
struct Service {
    target: Option<String>,
    command: Vec<String>,
    env: BTreeMap<String, String>,
}

fn list(s: &str) -> Vec<String> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|x| x.trim().trim_matches('"').to_owned())
        .filter(|x| !x.is_empty())
        .collect()
}

/// A deliberately small reader for the compose file's shape (two-space indents, flow-style lists).
fn services() -> BTreeMap<String, Service> {
    let mut out: BTreeMap<String, Service> = BTreeMap::new();
    let (mut in_services, mut current, mut in_env) = (false, None::<String>, false);
    for line in COMPOSE.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent == 0 {
            in_services = text == "services:";
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        if indent == 2 {
            let name = text.trim_end_matches(':').to_owned();
            out.entry(name.clone()).or_default();
            current = Some(name);
            in_env = false;
            continue;
        }
        let Some(name) = &current else { continue };
        let service = out.get_mut(name).unwrap();
        if indent == 4 {
            in_env = text == "environment:";
            if let Some(rest) = text.strip_prefix("build:") {
                service.target = rest
                    .split("target:")
                    .nth(1)
                    .map(|t| t.trim().trim_end_matches('}').trim().to_owned());
            }
            if let Some(rest) = text.strip_prefix("command:") {
                service.command = list(rest);
            }
        } else if indent == 6 && in_env {
            let (k, v) = text.split_once(':').unwrap();
            service
                .env
                .insert(k.trim().to_owned(), v.trim().trim_matches('"').to_owned());
        }
    }
    out
}

/// The CMD of each Dockerfile stage.
fn stage_commands() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let mut stage = String::new();
    for line in DOCKERFILE.lines() {
        if let Some(rest) = line.strip_prefix("FROM ") {
            stage = rest.split(" AS ").nth(1).unwrap_or("").trim().to_owned();
        } else if let Some(rest) = line.strip_prefix("CMD ") {
            out.insert(stage.clone(), list(rest));
        }
    }
    out
}

/// The environment variables in `heimdall <args> --help`.
fn help_env(args: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_heimdall"))
        .args(args)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "heimdall {args:?} --help failed: the image runs a command that does not exist"
    );
    let help = String::from_utf8(out.stdout).unwrap();
    help.split("[env: ")
        .skip(1)
        .map(|s| s.split(['=', ']']).next().unwrap().to_owned())
        .collect()
}

/// The environment variables `heimdall <command>` reads: the shared settings and the command's own.
fn reads(command: &str) -> BTreeSet<String> {
    let mut all = help_env(&[]);
    all.extend(help_env(&[command]));
    all
}

#[test]
fn compose_sets_only_variables_its_commands_read() {
    let services = services();
    let stages = stage_commands();
    assert!(
        stages.contains_key("api") && stages.contains_key("worker"),
        "{stages:?}"
    );
    assert_eq!(stages["api"], ["serve"]);
    assert_eq!(stages["worker"], ["worker"]);
    let ours: Vec<_> = services.iter().filter(|(_, s)| s.target.is_some()).collect();
    assert!(
        ours.len() >= 2,
        "the compose file builds the api and the worker: {services:?}"
    );
    for (name, service) in ours {
        let command = if service.command.is_empty() {
            stages[service.target.as_ref().unwrap()].clone()
        } else {
            service.command.clone()
        };
        let known = reads(&command[0]);
        for var in service.env.keys() {
            assert!(
                known.contains(var),
                "service {name} sets {var}, which `heimdall {}` does not read",
                command[0]
            );
        }
    }
    for needed in [
        "DB_DSN",
        "CERBOS_CHECK_URL",
        "CERBOS_ADMIN_URL",
        "KEYCLOAK_JWKS_URL",
        "HOST",
        "PORT",
    ] {
        assert!(
            services["api"].env.contains_key(needed),
            "the api service lacks {needed}"
        );
    }
    assert!(services["worker"].env.contains_key("DB_DSN"));
    assert!(services.contains_key("postgres") && services.contains_key("cerbos"));
    // Two PDPs on Cerbos' PostgreSQL store: the worker writes through one and reloads the other.
    assert!(services.contains_key("cerbos-2"), "{services:?}");
    assert_eq!(
        services["worker"].env["CERBOS_ADMIN_URL"],
        "http://cerbos:3592/admin/policy"
    );
    assert_eq!(services["worker"].env["CERBOS_RELOAD_URLS"], "http://cerbos-2:3592");
    assert!(CERBOS_CONFIG.contains("driver: postgres"));
    assert!(COMPOSE.contains("./deploy/cerbos/postgres.sql:/cerbos/postgres.sql:ro"));
    assert!(CERBOS_STORE_SCRIPT.contains("--file /cerbos/postgres.sql"));
    let port = &services["api"].env["PORT"];
    assert!(
        DOCKERFILE.contains(&format!("EXPOSE {port}")),
        "the image exposes another port than PORT={port}"
    );
}

#[test]
fn the_image_runs_as_a_non_root_user() {
    let users: Vec<&str> = DOCKERFILE.lines().filter_map(|l| l.strip_prefix("USER ")).collect();
    assert!(!users.is_empty(), "no USER in the Dockerfile");
    for u in users {
        assert!(u.trim() != "root" && u.trim() != "0", "the image runs as root");
    }
}

#[tokio::test]
async fn cerbos_config_accepts_the_compose_admin_password() {
    let Some(bin) = cerbos_bin() else { return };
    // Cerbos' PostgreSQL store, as deploy/postgres/10-cerbos-store.sh makes it.
    let Some(store) = TestDatabase::postgres().await else {
        return;
    };
    install_postgres_schema(&store.url).await;
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let grpc = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // The compose configuration, with only what a loopback test must change: addresses and the store's DSN.
    let config = CERBOS_CONFIG
        .replace("\":3592\"", &format!("\"127.0.0.1:{port}\""))
        .replace("\":3593\"", &format!("\"127.0.0.1:{grpc}\""))
        .replace("postgres://heimdall:heimdall-dev@postgres:5432/cerbos", &store.url);
    assert_ne!(config, CERBOS_CONFIG, "the test could not adapt the configuration");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(bin)
        .args(["server", &format!("--config={}", path.display())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let api = &services()["api"].env;
    let client = |password: &str| {
        let mut c = CerbosConfig::new(&base);
        c.admin_url = Some(format!("{base}/admin/policy"));
        c.admin_user = api["CERBOS_ADMIN_USER"].clone();
        c.admin_password = password.to_owned();
        c.max_retries = 0;
        CerbosClient::new(c).unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while client("x").health().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "Cerbos did not start with the compose configuration"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let installed = pack::install_admin_pack(&client(&api["CERBOS_ADMIN_PASSWORD"])).await;
    let refused = pack::install_admin_pack(&client("not-the-password")).await;
    let _ = child.kill();
    let _ = child.wait();
    store.drop_database().await;
    installed.expect("the compose file's admin password opens the compose Cerbos' Admin API");
    assert!(refused.is_err(), "a wrong password must not");
}
