//! The harness of the end-to-end tests: the `heimdall` binary run as a user runs it (`serve`, `worker`,
//! `demo`), an identity provider on loopback (a JWKS server and a token minter with the fixture keys), and an
//! HTTP client. Every token and API key secret a test makes is registered; every server's log is checked for
//! all of them when the server stops.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use heimdall_core::test_utils::cerbos::{ADMIN_PASSWORD, ADMIN_USER, Cerbos};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub(crate) const JWKS: &str = include_str!("../../../heimdall-core/tests/fixtures/jwt/jwks.json");
pub(crate) const RSA: &[u8] = include_bytes!("../../../heimdall-core/tests/fixtures/jwt/rsa.pem");
pub(crate) const RSA_PUBLIC: &[u8] = include_bytes!("../../../heimdall-core/tests/fixtures/jwt/rsa.pub.pem");
pub(crate) const RSA_OTHER: &[u8] = include_bytes!("../../../heimdall-core/tests/fixtures/jwt/rsa-other.pem");
pub(crate) const EC: &[u8] = include_bytes!("../../../heimdall-core/tests/fixtures/jwt/ec.pem");
pub(crate) const ISSUER: &str = "https://idp.example/realms/test";
pub(crate) const AUDIENCE: &str = "heimdall";

/// Every credential the tests made: no server log may contain one.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Registers a credential that must never appear in a log.
pub(crate) fn secret(s: &str) -> String {
    SECRETS.lock().unwrap().push(s.to_owned());
    s.to_owned()
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// The identity provider: serves the fixture JWKS (or 503 while "down") and signs tokens with its keys.
pub(crate) struct Idp {
    pub(crate) jwks_url: String,
    down: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Idp {
    pub(crate) async fn start() -> Idp {
        let down = Arc::new(AtomicBool::new(false));
        let d = down.clone();
        let app = axum::Router::new().route(
            "/certs",
            axum::routing::get(move || {
                let d = d.clone();
                async move {
                    if d.load(Ordering::SeqCst) {
                        (StatusCode::SERVICE_UNAVAILABLE, String::new())
                    } else {
                        (StatusCode::OK, JWKS.to_owned())
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Idp {
            jwks_url: format!("http://{addr}/certs"),
            down,
            task,
        }
    }

    /// Makes the JWKS answer 503 (or serve again).
    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The server settings that trust this identity provider.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KEYCLOAK_JWKS_URL", self.jwks_url.clone()),
            ("JWT_ISSUER", ISSUER.to_owned()),
            ("JWT_AUDIENCE", AUDIENCE.to_owned()),
        ]
    }
}

/// Claims of a good token for `subject`.
pub(crate) fn claims(subject: &str) -> Value {
    json!({
        "sub": format!("id-{subject}"), "preferred_username": subject, "name": format!("Name of {subject}"),
        "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "nbf": now() - 1, "exp": now() + 600,
    })
}

/// A token signed with `key` under `alg` and `kid`, registered as a secret.
pub(crate) fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    secret(&jsonwebtoken::encode(&header, claims, key).unwrap())
}

/// An RS256 token with these claims.
pub(crate) fn rs256(claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        "rsa-1",
        &EncodingKey::from_rsa_pem(RSA).unwrap(),
        claims,
    )
}

/// A good token for `subject`.
pub(crate) fn token(subject: &str) -> String {
    rs256(&claims(subject))
}

/// A process of the `heimdall` binary, stopped (SIGTERM) when dropped.
pub(crate) struct Process {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    pub(crate) base: String,
    pub(crate) stdout: Vec<String>,
}

impl Process {
    /// Runs `heimdall <args>` with exactly `env` (nothing inherited but PATH and the log format), and waits
    /// until it prints a line starting with `ready` (for `serve`: `listening on`).
    pub(crate) fn spawn(args: &[&str], env: &[(&str, String)], ready: Option<&str>) -> Process {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("heimdall.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_heimdall"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("run heimdall");
        let mut stdout = Vec::new();
        let mut base = String::new();
        if let Some(ready) = ready {
            let out = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            // Reads to the end, also once nobody listens: a closed pipe would fail the process's next write
            // to stdout (println! panics on it), such as the rest of a banner printed a piece at a time.
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) => {
                        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://127.0.0.1:"))
                            && base.is_empty()
                        {
                            base = url.trim_end_matches("/api/v1").to_owned();
                        }
                        let done = line.contains(ready);
                        stdout.push(line);
                        if done {
                            break;
                        }
                    }
                    Err(_) => {
                        let _ = child.kill();
                        panic!(
                            "heimdall {args:?} did not get ready: stdout {stdout:?}, log:\n{}",
                            std::fs::read_to_string(&log).unwrap_or_default()
                        );
                    }
                }
            }
        }
        Process {
            child,
            log,
            _dir: dir,
            base,
            stdout,
        }
    }

    /// `heimdall serve` with `env`.
    pub(crate) fn serve(env: &[(&str, String)]) -> Process {
        let mut env = env.to_vec();
        env.push(("HOST", "127.0.0.1".to_owned()));
        if !env.iter().any(|(k, _)| *k == "PORT") {
            env.push(("PORT", "0".to_owned()));
        }
        Process::spawn(&["serve"], &env, Some("listening on"))
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process still runs.
    pub(crate) fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The process's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (at most 20 s) for the process to exit; then checks its log for credentials.
    pub(crate) fn stop(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("heimdall did not stop within 20 s of SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.assert_log_clean();
        status
    }

    /// No registered credential appears in the log.
    pub(crate) fn assert_log_clean(&self) {
        let log = self.log();
        for s in SECRETS.lock().unwrap().iter() {
            // A token's signature alone is a secret too: check a distinctive tail of each.
            let tail = &s[s.len().saturating_sub(24)..];
            assert!(!log.contains(tail), "a credential appears in the server log");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The settings that connect a server or worker to `cerbos`.
pub(crate) fn cerbos_env(cerbos: &Cerbos) -> Vec<(&'static str, String)> {
    vec![
        ("CERBOS_CHECK_URL", format!("{}/api/check/resources", cerbos.base_url())),
        ("CERBOS_ADMIN_URL", format!("{}/admin/policy", cerbos.base_url())),
        ("CERBOS_ADMIN_USER", ADMIN_USER.to_owned()),
        ("CERBOS_ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
    ]
}

/// An answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
    pub(crate) text: String,
}

impl Reply {
    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub(crate) fn expect(self, status: u16) -> Reply {
        assert_eq!(self.status, status, "body: {}", self.text);
        self
    }

    /// Asserts an error answer: the status, the project's JSON error body and its code.
    #[track_caller]
    pub(crate) fn error(self, status: u16, code: &str) -> Reply {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.text);
        assert!(self.body["error"]["message"].is_string(), "body: {}", self.text);
        self
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP client of one server.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
}

impl Api {
    pub(crate) fn new(base: &str) -> Api {
        Api {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    /// Sends `method path` with an optional bearer credential and JSON body.
    pub(crate) async fn call(&self, method: &str, path: &str, bearer: Option<&str>, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Self::reply(req.send().await.unwrap()).await
    }

    pub(crate) async fn reply(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub(crate) async fn get(&self, path: &str, bearer: &str) -> Reply {
        self.call("GET", path, Some(bearer), None).await
    }

    pub(crate) async fn post(&self, path: &str, bearer: &str, body: Value) -> Reply {
        self.call("POST", path, Some(bearer), Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str, bearer: &str) -> Reply {
        self.call("DELETE", path, Some(bearer), None).await
    }

    /// The readers' scenario, as `root`: the group `go:readers` holding the role `go:reader`, which allows
    /// `course:read`, and the mapping `GET /courses/:id` → `course:read`. Nobody is a member yet.
    pub(crate) async fn course_readers(&self, root: &str) {
        self.post("/api/v1/groups", root, json!({"name": "go:readers"}))
            .await
            .expect(201);
        self.post("/api/v1/roles", root, json!({"name": "go:reader"}))
            .await
            .expect(201);
        self.call(
            "PUT",
            "/api/v1/roles/go:reader/permissions/course:read",
            Some(root),
            Some(json!({"effect": "allow"})),
        )
        .await
        .expect(200);
        self.post("/api/v1/groups/go:readers/roles", root, json!({"role": "go:reader"}))
            .await
            .expect(201);
        self.post(
            "/api/v1/mappings",
            root,
            json!({"method": "GET", "path_pattern": "/courses/:id", "action": "course:read"}),
        )
        .await
        .expect(201);
    }
}
