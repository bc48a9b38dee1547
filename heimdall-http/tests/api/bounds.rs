//! Nobody outside can grow what the server holds: metric series, audit rows of refusals, rate-limit budgets,
//! connections (half-sent headers, idle keep-alive, a bound on how many), change-feed streams per caller
//! (and streams whose credential no longer holds), request ids.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use heimdall_core::test_utils::TestDatabase;
use serde_json::{Value, json};

use crate::support::{Api, Idp, Process, claims, rs256, secret, token};

/// A server on a fresh SQLite database that trusts the test identity provider, with `root` superadmin.
fn server(idp: &Idp, db: &TestDatabase, extra: &[(&'static str, &str)]) -> Process {
    let mut env = idp.env();
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_BOOTSTRAP_SUPERADMINS", "root".to_owned()));
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Process::serve(&env)
}

/// A small deterministic generator (xorshift), for random methods and paths.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn word(&mut self, len: usize) -> String {
        (0..len).map(|_| char::from(b'A' + (self.next() % 26) as u8)).collect()
    }
}

/// The series of the request metrics in a `/metrics` scrape.
async fn request_series(api: &Api) -> Vec<String> {
    let text = api.call("GET", "/metrics", None, None).await.expect(200).text;
    let mut series: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("heimdall_http_request"))
        .filter_map(|l| l.rsplit_once(' ').map(|(name, _)| name.to_owned()))
        .collect();
    series.sort();
    series
}

#[tokio::test]
async fn metric_labels_are_bounded() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut server = server(&idp, &db, &[]);
    let api = Api::new(&server.base);

    // Every shape of request once: an unknown method on an unmatched path and on a route, a known one on an
    // unmatched path, and a scrape.
    api.call("XWARMUP", "/no/such/path", None, None).await.expect(404);
    api.call("XWARMUP", "/healthz", None, None).await.expect(405);
    api.call("GET", "/no/such/path", None, None).await.expect(404);
    request_series(&api).await;
    let before = request_series(&api).await;
    assert!(before.iter().any(|s| s.contains("method=\"other\"")), "{before:?}");
    assert!(before.iter().any(|s| s.contains("route=\"unmatched\"")), "{before:?}");

    // 2,000 requests with random methods on random unmatched paths (and on a route): no new series.
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let requests: Vec<(String, String)> = (0..2000)
        .map(|i| {
            let method = format!("X{}", random.word(6));
            let path = if i % 4 == 0 {
                "/healthz".to_owned()
            } else {
                format!("/{}/{}", random.word(8), random.next())
            };
            (method, path)
        })
        .collect();
    for chunk in requests.chunks(50) {
        let replies = futures_util::future::join_all(chunk.iter().map(|(m, p)| api.call(m, p, None, None))).await;
        for r in replies {
            assert!(matches!(r.status, 404 | 405), "{r:?}");
        }
    }
    let after = request_series(&api).await;
    assert_eq!(
        before.len(),
        after.len(),
        "new series: {:?}",
        after.iter().filter(|s| !before.contains(s)).collect::<Vec<_>>()
    );
    server.stop();
}

#[tokio::test]
async fn request_id_is_sanitised() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut server = server(&idp, &db, &[]);
    let api = Api::new(&server.base);
    let with_id = async |id: &[u8]| {
        let value = reqwest::header::HeaderValue::from_bytes(id).unwrap();
        let resp = api
            .http
            .get(format!("{}/healthz", api.base))
            .header("x-request-id", value)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.headers()["x-request-id"].to_str().unwrap().to_owned()
    };
    // Short printable ASCII is kept.
    assert_eq!(with_id(b"trace-42_abc.DEF:9").await, "trace-42_abc.DEF:9");
    let longest = "a".repeat(64);
    assert_eq!(with_id(longest.as_bytes()).await, longest);
    // Too long, spaces, controls or non-ASCII: a fresh id (a UUID) instead.
    for bad in [
        "a".repeat(65).into_bytes(),
        b"has space".to_vec(),
        b"tab\there".to_vec(),
        b"caf\xc3\xa9".to_vec(),
    ] {
        let got = with_id(&bad).await;
        assert_ne!(got.as_bytes(), bad.as_slice());
        assert_eq!(got.len(), 36, "{got}");
        assert!(got.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "{got}");
    }
    assert!(
        !server.log().contains(&"a".repeat(65)),
        "a refused request id never reaches the log"
    );
    server.stop();
}

/// Waits (at most `limit`) for the server to close `conn`; returns how long it took, or `None`.
fn closed_within(conn: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    conn.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut buf = [0u8; 4096];
    while started.elapsed() < limit {
        match conn.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            // An answer (such as 408) before the close is fine.
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

fn connect(base: &str) -> TcpStream {
    TcpStream::connect(base.trim_start_matches("http://")).unwrap()
}

#[tokio::test]
async fn half_sent_header_is_closed() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut server = server(&idp, &db, &[("HEIMDALL_HEADER_READ_TIMEOUT_SECONDS", "1")]);
    let mut conn = connect(&server.base);
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: heimdall\r\nX-Slow: ")
        .unwrap();
    let took = closed_within(&mut conn, Duration::from_secs(5)).expect("a half-sent header is closed within the bound");
    assert!(
        took >= Duration::from_millis(700),
        "closed after {took:?}, before the timeout"
    );
    server.stop();
}

#[tokio::test]
async fn idle_keep_alive_is_closed() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut server = server(&idp, &db, &[("HEIMDALL_HEADER_READ_TIMEOUT_SECONDS", "1")]);
    let mut conn = connect(&server.base);
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: heimdall\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    conn.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // Kept alive, then idle: closed within the bound.
    let took = closed_within(&mut conn, Duration::from_secs(5)).expect("an idle keep-alive connection is closed");
    assert!(took <= Duration::from_secs(3), "{took:?}");
    server.stop();
}

#[tokio::test]
async fn connections_past_the_limit_are_not_served() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut server = server(
        &idp,
        &db,
        &[
            ("HEIMDALL_MAX_CONNECTIONS", "2"),
            ("HEIMDALL_HEADER_READ_TIMEOUT_SECONDS", "30"),
        ],
    );
    // Two connections that send nothing hold both places.
    let a = connect(&server.base);
    let _b = connect(&server.base);
    std::thread::sleep(Duration::from_millis(300));
    let mut third = connect(&server.base);
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: heimdall\r\nConnection: close\r\n\r\n")
        .unwrap();
    third.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let mut buf = [0u8; 12];
    let early = third.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "a third connection is not served while two are open: {early:?}"
    );
    // One closes: the third is served.
    drop(a);
    third.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    third.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    server.stop();
}

/// Opens a change-feed stream; the response (its body not read yet) or the error reply.
async fn open_stream(api: &Api, bearer: &str) -> Result<reqwest::Response, crate::support::Reply> {
    let resp = api
        .http
        .get(format!("{}/api/v1/changes/stream", api.base))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    if resp.status() == 200 {
        Ok(resp)
    } else {
        Err(Api::reply(resp).await)
    }
}

/// Reads `resp` until it ends; how long that took, or `None` when it did not end within `limit`.
async fn ends_within(mut resp: reqwest::Response, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let ended = tokio::time::timeout(limit, async { while let Ok(Some(_)) = resp.chunk().await {} }).await;
    ended.ok().map(|()| started.elapsed())
}

/// Creates an API key with `mappings:read`: its id and secret.
async fn api_key(api: &Api, root: &str, name: &str) -> (i64, String) {
    let created = api
        .post(
            "/api/v1/api-keys",
            root,
            json!({"name": name, "scopes": ["mappings:read"]}),
        )
        .await
        .expect(201);
    (
        created.body["id"].as_i64().unwrap(),
        secret(created.body["secret"].as_str().unwrap()),
    )
}

#[tokio::test]
async fn streams_per_caller_are_bounded() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut server = server(&idp, &db, &[("HEIMDALL_MAX_STREAMS_PER_CALLER", "2")]);
    let api = Api::new(&server.base);
    let root = token("root");
    let (_, key) = api_key(&api, &root, "adapter").await;
    let (_, other) = api_key(&api, &root, "other").await;

    let first = open_stream(&api, &key).await.unwrap();
    let _second = open_stream(&api, &key).await.unwrap();
    let refused = open_stream(&api, &key).await.unwrap_err();
    let refused = refused.error(429, "rate_limited");
    assert!(refused.header("retry-after").is_some());
    // Another caller has its own streams.
    let _others = open_stream(&api, &other).await.unwrap();
    // A stream closed frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match open_stream(&api, &key).await {
            Ok(_) => break,
            Err(r) if Instant::now() < deadline => {
                r.error(429, "rate_limited");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(r) => panic!("a closed stream's place was not freed: {r:?}"),
        }
    }
    server.stop();
}

#[tokio::test]
async fn revoked_stream_is_closed() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut server = server(&idp, &db, &[]);
    let api = Api::new(&server.base);
    let root = token("root");
    let (id, key) = api_key(&api, &root, "adapter").await;

    // An API key's stream ends within about a second of the key's revocation.
    let stream = open_stream(&api, &key).await.unwrap();
    let watching = tokio::spawn(ends_within(stream, Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!watching.is_finished(), "the stream stays open while the key holds");
    let revoked_at = Instant::now();
    api.delete(&format!("/api/v1/api-keys/{id}"), &root).await.expect(204);
    watching.await.unwrap().expect("the revoked key's stream was closed");
    assert!(
        revoked_at.elapsed() <= Duration::from_secs(3),
        "{:?}",
        revoked_at.elapsed()
    );

    // A token's stream ends within about a second of the token's `exp`.
    let mut c = claims("carol");
    c["exp"] = json!(crate::support::now() + 3);
    let expiring = rs256(&c);
    let stream = open_stream(&api, &expiring).await.unwrap();
    let took = ends_within(stream, Duration::from_secs(15))
        .await
        .expect("the expired token's stream was closed");
    assert!(
        took >= Duration::from_secs(1),
        "closed after {took:?}, before the token expired"
    );
    assert!(took <= Duration::from_secs(6), "{took:?}");
    server.stop();
}

/// The audit rows of `actor`, and the failures they stand for (a coalesced row's count, else one).
async fn audited(api: &Api, root: &str, actor: &str) -> (Vec<Value>, u64) {
    let rows = api
        .get(&format!("/api/v1/audit?actor={actor}&limit=1000"), root)
        .await
        .expect(200)
        .body
        .as_array()
        .unwrap()
        .clone();
    let failures = rows.iter().map(|r| r["result"]["count"].as_u64().unwrap_or(1)).sum();
    (rows, failures)
}

#[tokio::test]
async fn refusals_are_audited_with_a_bound() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut server = server(&idp, &db, &[]);
    let api = Api::new(&server.base);
    let root = token("root");
    let alice = token("alice");
    let bound = heimdall_core::FAILURE_AUDIT_ROWS as usize;

    // A signed-in user refused 150 times in a minute: at most `bound` rows of her own, then one coalesced row
    // per operation and outcome; the counts add up to every refusal.
    for i in 0..150 {
        api.post("/api/v1/groups", &alice, json!({"name": format!("go:a{i}")}))
            .await
            .error(403, "forbidden");
    }
    // Coalesced counts are written within a second.
    tokio::time::sleep(heimdall_core::FAILURE_AUDIT_COUNT_DELAY * 2).await;
    let (rows, failures) = audited(&api, &root, "alice").await;
    assert!(rows.len() <= bound + 1, "{} rows", rows.len());
    assert_eq!(failures, 150);
    let coalesced = rows
        .iter()
        .find(|r| r["result"]["coalesced"] == true)
        .expect("a coalesced row");
    assert_eq!(coalesced["operation"], "create_group");
    assert_eq!(coalesced["result"]["outcome"], "denied");
    assert_eq!(coalesced["result"]["count"], 150 - bound as u64);

    // Bad credentials, before anyone is known: audited per client address, with the same bound.
    for i in 0..120 {
        let bad = if i % 2 == 0 { "not-a-token" } else { "hk_unknown" };
        api.get("/api/v1/groups", bad).await.error(401, "unauthenticated");
    }
    tokio::time::sleep(heimdall_core::FAILURE_AUDIT_COUNT_DELAY * 2).await;
    let (rows, failures) = audited(&api, &root, "unauthenticated:127.0.0.1").await;
    assert!(rows.len() <= bound + 1, "{} rows", rows.len());
    assert_eq!(failures, 120);
    assert!(
        rows.iter()
            .all(|r| r["operation"] == "authenticate" && r["target_id"] == "GET /api/v1/groups"),
        "{rows:?}"
    );
    server.stop();
}

#[tokio::test]
async fn every_endpoint_is_rate_limited() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut server = server(&idp, &db, &[("HEIMDALL_REQUESTS_PER_MINUTE", "20")]);
    let api = Api::new(&server.base);
    let alice = token("alice");
    // The budget refills one request every 3 s: a slow run may see one more answered per 3 s it took.
    let allowed = |started: Instant| 20 + (started.elapsed().as_secs() / 3) as usize;
    // Reads by a signed-in user.
    let started = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(api.get("/api/v1/groups", &alice).await.status);
    }
    let answered = statuses.iter().filter(|s| **s == 200).count();
    assert!((20..=allowed(started)).contains(&answered), "{statuses:?}");
    assert!(statuses.iter().all(|s| matches!(s, 200 | 429)), "{statuses:?}");
    let limited = api.get("/api/v1/groups", &alice).await.error(429, "rate_limited");
    assert!(limited.header("retry-after").is_some());
    // Another caller has its own budget.
    api.get("/api/v1/groups", &token("bob")).await.expect(200);
    // Public endpoints and refused credentials take from the client address's budget.
    let started = Instant::now();
    let mut statuses = Vec::new();
    for i in 0..25 {
        let r = if i % 2 == 0 {
            api.call("GET", "/healthz", None, None).await
        } else {
            api.get("/api/v1/groups", "not-a-token").await
        };
        statuses.push(r.status);
    }
    let answered = statuses.iter().filter(|s| **s != 429).count();
    assert!((20..=allowed(started)).contains(&answered), "{statuses:?}");
    // A credential on a public endpoint does not dodge the address's budget.
    api.get("/healthz", "junk").await.error(429, "rate_limited");
    server.stop();
}
