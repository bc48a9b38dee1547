//! The adapter layer's per-request cost: the same axum service called without the layer and behind it.
//!
//! Benchmark ids: `adapter/none` (the service alone), `adapter/warm` (token and decision cached: the
//! layer's steady state), `adapter/local_cold` (a token never seen before, so verified — RS256 — and a
//! decision from the local grants snapshot), `adapter/cerbos_cold` (the decision cache dropped before every request, so each one
//! asks the real Cerbos for the subject's pushed principal policy; the token stays cached). The setup is an
//! embedded Heimdall on SQLite whose push worker has written the member's principal policy to a real Cerbos
//! 0.55. After criterion's medians, `adapter/cerbos_cold` is measured once more request by request to print
//! its 99th percentile. Targets on the 2-core machine: warm ≤ 5 µs median over `none`; local cold ≤ 100 µs
//! median; Cerbos cold p99 ≤
//! 1.5 ms. `adapter/cerbos_check_alone` prints Cerbos's own answer time for the same question, the floor of
//! the cold figure.
//!
//! Run with `cargo bench -p heimdall-benches --bench adapter`; needs `HEIMDALL_CERBOS_BIN` (set by
//! `scripts/test`; under `CI=true` a missing one fails the run).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use heimdall_adapter::AuthorizeLayer;
use heimdall_core::authorizer::{Authorizer, AuthorizerConfig, LocalPdp, MappingSource};
use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::model::MappingInput;
use heimdall_core::sync::{PushWorker, SyncConfig};
use heimdall_core::test_utils::cerbos::Cerbos;
use heimdall_core::test_utils::{TestDatabase, root};
use heimdall_core::{Config, Heimdall};
use http::Request;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tower::ServiceExt as _;

const JWKS: &str = include_str!("../../heimdall-core/tests/fixtures/jwt/jwks.json");
const RSA: &[u8] = include_bytes!("../../heimdall-core/tests/fixtures/jwt/rsa.pem");
/// Requests measured one by one for the cold p99.
const COLD_SAMPLES: usize = 2_000;
const TARGET_WARM_OVERHEAD: Duration = Duration::from_micros(5);
const TARGET_COLD_P99: Duration = Duration::from_micros(1_500);
const TARGET_LOCAL_COLD: Duration = Duration::from_micros(100);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Setup {
    _cerbos: Cerbos,
    _db: TestDatabase,
    plain: axum::Router,
    guarded: axum::Router,
    authorizer: Authorizer,
    /// The same service behind a layer deciding locally from the grants snapshot.
    local: axum::Router,
    token: String,
    jwks: String,
}

/// A token never made before: RS256 signatures are deterministic, so two tokens with the same claims made in
/// the same second are the same string (and the second would be a token-cache hit). A counter in `jti` keeps
/// every one new.
fn token() -> Result<String, BoxError> {
    static MINTED: AtomicI64 = AtomicI64::new(0);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let jti = MINTED.fetch_add(1, Ordering::Relaxed);
    let claims = serde_json::json!({"sub": "alice", "preferred_username": "alice", "iat": now, "exp": now + 3600, "jti": jti.to_string()});
    Ok(jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(RSA)?,
    )?)
}

async fn setup() -> Result<Option<Setup>, BoxError> {
    let Some(cerbos) = Cerbos::start_new().await else {
        return Ok(None);
    };
    cerbos.install_admin_pack().await;
    let db = TestDatabase::sqlite();
    let h = Heimdall::builder(Config {
        database_url: db.url.clone(),
        ..Config::default()
    })
    .build()
    .await?;
    let root = root(&h).await;
    h.create_role(&root, "go:reader", None).await?;
    h.grant_permission(&root, "go:reader", "course:read", "allow").await?;
    h.create_group(&root, "go:readers", None).await?;
    h.assign_group_role(&root, "go:readers", "go:reader").await?;
    h.add_member(&root, "go:readers", "alice").await?;
    let input = MappingInput {
        method: "GET".to_owned(),
        path_pattern: "/courses/:id".to_owned(),
        action: "course:read".to_owned(),
        ..MappingInput::default()
    };
    h.create_mapping(&root, &input).await?;
    PushWorker::new(h.clone(), Arc::new(cerbos.client()), SyncConfig::default())
        .push_due()
        .await?;

    let app = axum::Router::new().route("/courses/{id}", axum::routing::get(|| async { "a course" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let jwks = format!("http://{}/certs", listener.local_addr()?);
    tokio::spawn(async move {
        let app = axum::Router::new().route("/certs", axum::routing::get(|| async { JWKS }));
        let _ = axum::serve(listener, app).await;
    });
    let authorizer = Authorizer::new(
        TokenVerifier::new(IdentityConfig::new(jwks.clone()))?,
        MappingSource::Embedded(h.clone()),
        Arc::new(cerbos.client()),
        AuthorizerConfig::default(),
    );
    let guarded = app.clone().layer(AuthorizeLayer::new(authorizer.clone()));
    let grants = LocalPdp::new();
    grants.install(h.grants_snapshot().await?);
    let local_authorizer = Authorizer::new(
        TokenVerifier::new(IdentityConfig::new(jwks.clone()))?,
        MappingSource::Embedded(h.clone()),
        grants,
        AuthorizerConfig::default(),
    );
    let local = app.clone().layer(AuthorizeLayer::new(local_authorizer));
    let token = token()?;
    // Cerbos shows the pushed policy within milliseconds, not at once: wait until the layer allows.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if call(&guarded, &token).await == 200 {
            break;
        }
        if Instant::now() > deadline {
            return Err("the pushed policy never allowed the request".into());
        }
        authorizer.observe_change_version(i64::from(deadline.elapsed().subsec_nanos()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Some(Setup {
        _cerbos: cerbos,
        _db: db,
        plain: app,
        guarded,
        authorizer,
        local,
        token,
        jwks,
    }))
}

async fn call(app: &axum::Router, token: &str) -> u16 {
    let request = Request::get("/courses/7")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("a request");
    match app.clone().oneshot(request).await {
        Ok(response) => response.status().as_u16(),
        Err(never) => match never {},
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let setup = match rt.block_on(setup()) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => panic!("adapter benchmark setup failed: {e}"),
    };
    let mut group = c.benchmark_group("adapter");
    group.sample_size(30).measurement_time(Duration::from_secs(3));
    group.bench_function("none", |b| {
        b.to_async(&rt)
            .iter(|| async { assert_eq!(call(&setup.plain, &setup.token).await, 200) })
    });
    group.bench_function("warm", |b| {
        b.to_async(&rt)
            .iter(|| async { assert_eq!(call(&setup.guarded, &setup.token).await, 200) })
    });
    group.bench_function("local_cold", |b| {
        b.to_async(&rt).iter_batched(
            || token().expect("a token"),
            |fresh| {
                let local = &setup.local;
                async move { assert_eq!(call(local, &fresh).await, 200) }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let version = AtomicI64::new(0);
    group.bench_function("cerbos_cold", |b| {
        b.to_async(&rt).iter(|| async {
            setup
                .authorizer
                .observe_change_version(version.fetch_add(1, Ordering::Relaxed) + 1);
            assert_eq!(call(&setup.guarded, &setup.token).await, 200)
        })
    });
    group.finish();

    // The percentiles, request by request.
    let measure = |cold: bool| {
        rt.block_on(async {
            let mut times = Vec::with_capacity(COLD_SAMPLES);
            for _ in 0..COLD_SAMPLES {
                if cold {
                    setup
                        .authorizer
                        .observe_change_version(version.fetch_add(1, Ordering::Relaxed) + 1);
                }
                let started = Instant::now();
                assert_eq!(call(&setup.guarded, &setup.token).await, 200);
                times.push(started.elapsed());
            }
            times.sort();
            times
        })
    };
    let plain = rt.block_on(async {
        let mut times = Vec::with_capacity(COLD_SAMPLES);
        for _ in 0..COLD_SAMPLES {
            let started = Instant::now();
            assert_eq!(call(&setup.plain, &setup.token).await, 200);
            times.push(started.elapsed());
        }
        times.sort();
        times
    });
    let (warm, cold) = (measure(false), measure(true));
    let fresh: Vec<String> = (0..COLD_SAMPLES).map(|_| token().expect("a token")).collect();
    // The local layer really verifies: a fresh token with a broken signature is refused.
    let mut forged = token().expect("a token");
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    assert_eq!(
        rt.block_on(call(&setup.local, &forged)),
        401,
        "a forged token got through"
    );
    // The verification alone, for the record: a fresh verifier (keys fetched once) on tokens it has not seen.
    let verify = rt.block_on(async {
        let verifier = TokenVerifier::new(IdentityConfig::new(setup.jwks.clone())).expect("a verifier");
        verifier.verify(&setup.token).await.expect("a valid token");
        let tokens: Vec<String> = (0..200).map(|_| token().expect("a token")).collect();
        let mut times = Vec::with_capacity(tokens.len());
        for t in &tokens {
            let started = Instant::now();
            verifier.verify(t).await.expect("a valid token");
            times.push(started.elapsed());
        }
        times.sort();
        times
    });
    let local = rt.block_on(async {
        let mut times = Vec::with_capacity(COLD_SAMPLES);
        for t in &fresh {
            let started = Instant::now();
            assert_eq!(call(&setup.local, t).await, 200);
            times.push(started.elapsed());
        }
        times.sort();
        times
    });
    // The reference: Cerbos's own answer time for the same question, without the layer.
    let pdp = rt.block_on(async {
        let client = setup._cerbos.client();
        let subject = heimdall_core::model::Subject::parse("alice").expect("a subject");
        let rule = setup
            .authorizer
            .snapshot()
            .and_then(|s| s.rules().first().cloned())
            .expect("the mapping");
        let mut times = Vec::with_capacity(COLD_SAMPLES);
        for _ in 0..COLD_SAMPLES {
            let started = Instant::now();
            let decided = heimdall_core::authorizer::adapter_check(&client, &subject, &rule).await;
            assert!(matches!(decided, Ok(heimdall_core::pdp::Decision::Allow)));
            times.push(started.elapsed());
        }
        times.sort();
        times
    });
    let at = |t: &[Duration], p: f64| t[((t.len() as f64 * p).ceil() as usize).clamp(1, t.len()) - 1];
    let overhead = at(&warm, 0.5).saturating_sub(at(&plain, 0.5));
    println!(
        "adapter/warm: median {:.2} µs, the service alone {:.2} µs: overhead {:.2} µs (target <= {} µs: {})",
        at(&warm, 0.5).as_secs_f64() * 1e6,
        at(&plain, 0.5).as_secs_f64() * 1e6,
        overhead.as_secs_f64() * 1e6,
        TARGET_WARM_OVERHEAD.as_micros(),
        if overhead <= TARGET_WARM_OVERHEAD {
            "met"
        } else {
            "MISSED"
        },
    );
    println!(
        "adapter/local_cold ({COLD_SAMPLES} requests, each with a token not seen before): median {:.0} µs, p99 {:.0} µs \
         (target median <= {} µs: {}); RS256 verification alone: median {:.1} µs",
        at(&local, 0.5).as_secs_f64() * 1e6,
        at(&local, 0.99).as_secs_f64() * 1e6,
        TARGET_LOCAL_COLD.as_micros(),
        if at(&local, 0.5) <= TARGET_LOCAL_COLD {
            "met"
        } else {
            "MISSED"
        },
        at(&verify, 0.5).as_secs_f64() * 1e6,
    );
    println!(
        "adapter/cerbos_cold ({COLD_SAMPLES} requests): median {:.0} µs, p99 {:.0} µs (target p99 <= {} µs: {})",
        at(&cold, 0.5).as_secs_f64() * 1e6,
        at(&cold, 0.99).as_secs_f64() * 1e6,
        TARGET_COLD_P99.as_micros(),
        if at(&cold, 0.99) <= TARGET_COLD_P99 {
            "met"
        } else {
            "MISSED"
        },
    );
    println!(
        "adapter/cerbos_check_alone (the same question to Cerbos, no layer): median {:.0} µs, p99 {:.0} µs",
        at(&pdp, 0.5).as_secs_f64() * 1e6,
        at(&pdp, 0.99).as_secs_f64() * 1e6,
    );
}

criterion_group!(adapter, benches);
criterion_main!(adapter);
