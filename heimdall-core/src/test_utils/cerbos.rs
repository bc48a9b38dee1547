//! A real Cerbos PDP per test (or per benchmark).
//!
//! The binary comes from `HEIMDALL_CERBOS_BIN` (the npm package `@cerbos/cerbos-linux-x64@0.55.0`, run
//! directly). When it is unset, a test is skipped with a loud message, except with `CI=true`, where it
//! fails. The PDP listens on free loopback ports (HTTP and gRPC), keeps its policies in a sqlite3 file in
//! a temporary directory, has the Admin API enabled with a test user, and runs under
//! `timeout --kill-after=5 900` so that it dies by itself even if the test process is killed. It is
//! stopped by its own PID when dropped, and can be stopped and started again on the same store.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::model::Subject;
use crate::pdp::{CerbosClient, CerbosConfig, Decision, Pdp as _, Principal, Resource, principal_id};
use tempfile::TempDir;

use super::required;

/// The Admin API user of every test PDP.
pub const ADMIN_USER: &str = "heimdall";
/// The Admin API password of every test PDP.
pub const ADMIN_PASSWORD: &str = "heimdall-test-admin";
/// Base64 of a bcrypt hash (cost 4, to keep Admin API calls fast) of [`ADMIN_PASSWORD`].
const ADMIN_PASSWORD_HASH_B64: &str =
    "JDJiJDA0JGwzVC83TWFkbXNubjhqR1RXOHhyL085OWE1THl3YXBRUFBWNllDZm9UdEhPdlpyRkJpTmg2";
/// How long a PDP may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a PDP may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The Cerbos binary, or `None` (after a loud message) when the Cerbos tests are to be skipped.
///
/// # Panics
///
/// When `HEIMDALL_CERBOS_BIN` is unset and `CI=true`, or when it names no file.
pub fn cerbos_bin() -> Option<PathBuf> {
    match std::env::var_os("HEIMDALL_CERBOS_BIN") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "HEIMDALL_CERBOS_BIN={} is not a file", path.display());
            Some(path)
        }
        None if required() => {
            panic!("HEIMDALL_CERBOS_BIN is not set, and CI=true: the tests against a real Cerbos must run in CI")
        }
        None => {
            // Straight to the process's stderr: the test harness captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: this test needs a real Cerbos 0.55 PDP (set HEIMDALL_CERBOS_BIN to the binary of the npm \
                 package @cerbos/cerbos-linux-x64@0.55.0)"
            );
            None
        }
    }
}

/// Runs `cerbos compile DIR` and returns its exit status and output.
pub fn compile(bin: &Path, dir: &Path) -> (ExitStatus, String) {
    let out = Command::new(bin)
        .arg("compile")
        .arg(dir)
        .env("CERBOS_NO_TELEMETRY", "1")
        .output()
        .expect("run cerbos compile");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// Two distinct free loopback ports.
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// A client configuration for the PDP (or a balancer in front of PDPs) at `base`, with the spec's full URLs,
/// the test credentials and short timeouts and retry delays.
pub fn config_at(base: &str) -> CerbosConfig {
    let mut config = CerbosConfig::new(format!("{base}/api/check/resources"));
    config.admin_url = Some(format!("{base}/admin/policy"));
    config.admin_user = ADMIN_USER.to_owned();
    config.admin_password = ADMIN_PASSWORD.to_owned();
    config.connect_timeout = Duration::from_secs(1);
    config.timeout = Duration::from_secs(5);
    config.retry_min_delay = Duration::from_millis(20);
    config.retry_max_delay = Duration::from_millis(200);
    config
}

/// The tables of Cerbos' PostgreSQL store (deploy/cerbos/postgres.sql).
pub const POSTGRES_SCHEMA: &str = include_str!("../../../deploy/cerbos/postgres.sql");

/// Makes a database `name` for Cerbos' PostgreSQL store on the server of `admin_url` (a superuser's DSN),
/// with Cerbos' tables in it, and returns its DSN. `name` must be a plain identifier.
///
/// # Panics
///
/// When the database cannot be made.
pub async fn create_postgres_store(admin_url: &str, name: &str) -> String {
    let url = super::inspect::create_database(admin_url, name).await;
    install_postgres_schema(&url).await;
    url
}

/// Creates Cerbos' tables in the (empty) database at `url`.
///
/// # Panics
///
/// When they cannot be made.
pub async fn install_postgres_schema(url: &str) {
    use sqlx::Connection as _;
    let mut store = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to Cerbos' database");
    sqlx::raw_sql(POSTGRES_SCHEMA)
        .execute(&mut store)
        .await
        .expect("create Cerbos' tables");
}

/// Where a test PDP keeps its policies.
#[derive(Debug, Clone)]
enum Store {
    /// A sqlite3 file: its own, or another PDP's.
    Sqlite(Option<PathBuf>),
    /// Cerbos' PostgreSQL driver, on this DSN.
    Postgres(String),
}

/// A running (or stopped) test PDP.
#[derive(Debug)]
pub struct Cerbos {
    bin: PathBuf,
    dir: TempDir,
    http_port: u16,
    child: Option<Child>,
}

impl Cerbos {
    /// Starts a fresh PDP with an empty store, or returns `None` when the Cerbos tests are skipped.
    pub async fn start_new() -> Option<Cerbos> {
        Self::start_with_store(Store::Sqlite(None)).await
    }

    /// Starts another PDP on the same policy store as `other` (several PDPs sharing one database).
    pub async fn start_sharing_store(other: &Cerbos) -> Option<Cerbos> {
        Self::start_with_store(Store::Sqlite(Some(other.store_path()))).await
    }

    /// Starts a PDP on Cerbos' PostgreSQL store at `url` (see [`create_postgres_store`]); several PDPs on one
    /// such store are the production topology.
    pub async fn start_on_postgres(url: &str) -> Option<Cerbos> {
        Self::start_with_store(Store::Postgres(url.to_owned())).await
    }

    /// The sqlite3 file holding this PDP's policies.
    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("cerbos.sqlite")
    }

    async fn start_with_store(store: Store) -> Option<Cerbos> {
        let bin = cerbos_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("heimdall-cerbos-")
            .tempdir()
            .expect("create a temp dir");
        let (http_port, grpc_port) = free_ports();
        // busy_timeout: without it, Cerbos 0.55's sqlite3 store answers back-to-back Admin API writes
        // with 500 "Failed to add/update policies" (SQLITE_BUSY) when the machine is loaded. _txlock=immediate:
        // its store reads then writes in one transaction, and a deferred one fails at once (SQLITE_BUSY, no
        // waiting) when another writer got the lock first, as two workers writing at once do. The driver is
        // modernc.org/sqlite, hence the `_pragma=` syntax.
        let storage = match store {
            Store::Sqlite(file) => format!(
                r#"  driver: sqlite3
  sqlite3:
    dsn: "file:{}?mode=rwc&_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)&_txlock=immediate""#,
                file.unwrap_or_else(|| dir.path().join("cerbos.sqlite")).display()
            ),
            // connRetry: the store's server may be failing over while the PDP starts or reconnects.
            Store::Postgres(url) => format!(
                r#"  driver: postgres
  postgres:
    url: "{url}?sslmode=disable"
    connRetry:
      maxAttempts: 20
      initialInterval: 0.1s
      maxInterval: 1s"#
            ),
        };
        let config = format!(
            r#"server:
  httpListenAddr: "127.0.0.1:{http_port}"
  grpcListenAddr: "127.0.0.1:{grpc_port}"
  adminAPI:
    enabled: true
    adminCredentials:
      username: {ADMIN_USER}
      passwordHash: {ADMIN_PASSWORD_HASH_B64}
storage:
{storage}
telemetry:
  disabled: true
"#
        );
        std::fs::write(dir.path().join("config.yaml"), config).expect("write the Cerbos config");
        let mut cerbos = Cerbos {
            bin,
            dir,
            http_port,
            child: None,
        };
        cerbos.start().await;
        Some(cerbos)
    }

    /// The PDP's HTTP port on 127.0.0.1.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// The PDP's HTTP base URL, such as `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// A client configuration for this PDP, with the spec's full URLs, the test credentials and short
    /// timeouts and retry delays.
    pub fn config(&self) -> CerbosConfig {
        config_at(&self.base_url())
    }

    /// A client for this PDP (see [`Cerbos::config`]).
    pub fn client(&self) -> CerbosClient {
        CerbosClient::new(self.config()).expect("a Cerbos client")
    }

    /// Installs the admin policy pack and waits (at most 10 s) until the PDP decides with it: Cerbos makes
    /// writes visible within milliseconds, not at once, and a test that asks at once may see no pack yet.
    ///
    /// # Panics
    ///
    /// When the pack cannot be installed, or is not live in time.
    pub async fn install_admin_pack(&self) {
        use crate::pdp::{Decision, Pdp as _, pack};
        let client = self.client();
        pack::install_admin_pack(&client).await.expect("install the admin pack");
        let root = pack::principal(
            &crate::model::Subject::parse("pack-probe").expect("a subject"),
            Vec::<String>::new(),
            true,
            &[],
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let decided = client.check(&root, &pack::system(), &[pack::action::RECONCILE]).await;
            if matches!(decided.as_deref(), Ok([Decision::Allow])) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the admin pack is not live after 10 s: {decided:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Starts the PDP (again) on the same ports and store, and waits until it is healthy.
    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "Cerbos is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("cerbos.log"))
            .expect("open the Cerbos log");
        let child = Command::new("timeout")
            .args(["--kill-after=5", "900"])
            .arg(&self.bin)
            .arg("server")
            .arg(format!("--config={}", self.dir.path().join("config.yaml").display()))
            .env("CERBOS_NO_TELEMETRY", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start Cerbos under timeout(1)");
        self.child = Some(child);
        let health = format!("{}/_cerbos/health", self.base_url());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("poll Cerbos")) {
                self.child = None;
                panic!("Cerbos exited during start ({status}); its log:\n{}", self.log());
            }
            if let Ok(resp) = http.get(&health).send().await
                && resp.status().is_success()
                && resp.text().await.is_ok_and(|t| t.contains("SERVING"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Cerbos was not healthy within {START_TIMEOUT:?}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the PDP gracefully (SIGTERM to its `timeout`, which passes it on) and waits until it has
    /// exited; its store stays for [`Cerbos::start`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // timeout(1) did not pass the signal on in time: kill the PDP itself, then timeout(1).
        self.kill_pdp_of(&child);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the PDP at once (SIGKILL to the PDP process itself), as a crash would, and reaps it; its
    /// store stays for [`Cerbos::start`].
    #[allow(dead_code)] // For tests that crash the PDP while changes happen.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        self.kill_pdp_of(&child);
        let _ = child.wait();
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the PDP process: while frozen it accepts connections and answers
    /// nothing, as a hung PDP does.
    pub fn pause(&self, paused: bool) {
        let Some(child) = &self.child else {
            return;
        };
        let pid = child.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let signal = if paused { "-STOP" } else { "-CONT" };
        for pdp in children.split_whitespace() {
            let _ = Command::new("kill").arg(signal).arg(pdp).status();
        }
    }

    /// Whether the PDP is running.
    #[allow(dead_code)]
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL to the PDP process, the child of the `timeout` process `child`.
    fn kill_pdp_of(&self, child: &Child) {
        let pid = child.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for pdp in children.split_whitespace() {
            let _ = Command::new("kill").arg("-KILL").arg(pdp).status();
        }
    }

    /// The PDP's log so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("cerbos.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Cerbos {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What `client` decides for `subject` doing `action` on a course, asked as an adapter asks (the principal
/// policy Heimdall pushed, base role `user`).
pub async fn decide(client: &CerbosClient, subject: &str, action: &str) -> Decision {
    let principal = Principal::new(principal_id(&Subject::parse(subject).expect("a subject")), ["user"]);
    let resource = Resource::new("course", "course:1");
    client
        .check(&principal, &resource, &[action])
        .await
        .expect("Cerbos answers")[0]
}

/// Waits (at most 15 s) until Cerbos gives `want`: its writes become visible within milliseconds, not at once.
pub async fn eventually(client: &CerbosClient, subject: &str, action: &str, want: Decision) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = decide(client, subject, action).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{subject} {action}: Cerbos still says {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
