//! Bearer tokens: what the verifier accepts, every way a forged or stale token is refused, the JWKS cache
//! and its outages, and JIT provisioning from a verified token.

use std::time::Duration;

use base64::Engine as _;
use heimdall_core::ErrorKind;
use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::test_utils::TestDatabase;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::heimdall;
use crate::support::jwks::JwksServer;

const JWKS: &str = include_str!("../fixtures/jwt/jwks.json");
const RSA: &[u8] = include_bytes!("../fixtures/jwt/rsa.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../fixtures/jwt/rsa.pub.pem");
const RSA_OTHER: &[u8] = include_bytes!("../fixtures/jwt/rsa-other.pem");
const EC: &[u8] = include_bytes!("../fixtures/jwt/ec.pem");
const ISSUER: &str = "https://idp.example/realms/test";
const AUDIENCE: &str = "heimdall";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// Claims of a good token for `subject`.
fn claims(subject: &str) -> Value {
    json!({
        "sub": format!("id-{subject}"), "preferred_username": subject, "name": "A Name", "email": "a@example.com",
        "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 300,
        "groups": ["/staff", "/staff/go"], "realm_access": {"roles": ["go:viewer", "offline_access", "not a role!"]},
    })
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        "rsa-1",
        &EncodingKey::from_rsa_pem(RSA).unwrap(),
        claims,
    )
}

fn config(server: &JwksServer) -> IdentityConfig {
    IdentityConfig {
        issuer: Some(ISSUER.to_owned()),
        audience: Some(AUDIENCE.to_owned()),
        ..IdentityConfig::new(server.url())
    }
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[track_caller]
fn refused(result: heimdall_core::Result<heimdall_core::identity::VerifiedIdentity>, why: &str) {
    match result {
        Ok(identity) => panic!("{why}: accepted as {:?}", identity.claims().subject),
        Err(e) => assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{why}: {e}"),
    }
}

#[tokio::test]
async fn good_tokens_are_verified() {
    let server = JwksServer::start(JWKS).await;
    let verifier = TokenVerifier::new(config(&server)).unwrap();
    let identity = verifier.verify(&rs256(&claims("alice"))).await.unwrap();
    assert_eq!(identity.claims().subject.as_str(), "alice");
    assert_eq!(identity.claims().display_name.as_deref(), Some("A Name"));
    assert_eq!(identity.groups(), ["/staff", "/staff/go"]);
    assert_eq!(identity.roles(), ["go:viewer", "offline_access", "not a role!"]);
    let es = sign(
        Algorithm::ES256,
        "ec-1",
        &EncodingKey::from_ec_pem(EC).unwrap(),
        &claims("bob"),
    );
    assert_eq!(verifier.verify(&es).await.unwrap().claims().subject.as_str(), "bob");
    // The subject is the configured claim, never `sub`.
    assert_eq!(
        verifier
            .verify(&rs256(&claims("x")))
            .await
            .unwrap()
            .claims()
            .subject
            .as_str(),
        "x"
    );
    // Access tokens as identity providers mark them: header typ JWT or at+jwt (RFC 9068), Keycloak's Bearer.
    for typ in ["JWT", "at+jwt", "application/at+jwt", "AT+JWT"] {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".to_owned());
        header.typ = Some(typ.to_owned());
        let mut c = claims("typed");
        c["typ"] = json!("Bearer");
        let token = jsonwebtoken::encode(&header, &c, &EncodingKey::from_rsa_pem(RSA).unwrap()).unwrap();
        assert!(verifier.verify(&token).await.is_ok(), "header typ {typ}");
    }
    // Within the leeway, a just-expired token still passes.
    let mut c = claims("carol");
    c["exp"] = json!(now() - 5);
    assert!(verifier.verify(&rs256(&c)).await.is_ok());
    assert_eq!(server.fetches(), 1, "one fetch served every key");
}

#[tokio::test]
async fn forged_and_stale_tokens_are_refused() {
    let server = JwksServer::start(JWKS).await;
    let verifier = TokenVerifier::new(config(&server)).unwrap();
    verifier.verify(&rs256(&claims("warm"))).await.unwrap();

    // alg none: no signature at all.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "rsa-1"})),
        b64(&claims("eve"))
    );
    refused(verifier.verify(&none).await, "alg none");
    // HS256 "signed" with the RSA public key as the secret: the key confusion attack.
    let hs = sign(
        Algorithm::HS256,
        "rsa-1",
        &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
        &claims("eve"),
    );
    refused(verifier.verify(&hs).await, "HS256 with the public key");
    // The EC key's kid on an RS256 token: the algorithm is the key's.
    let swapped = sign(
        Algorithm::RS256,
        "ec-1",
        &EncodingKey::from_rsa_pem(RSA).unwrap(),
        &claims("eve"),
    );
    refused(verifier.verify(&swapped).await, "algorithm not the key's");
    let mut c = claims("eve");
    c["exp"] = json!(now() - 120);
    refused(verifier.verify(&rs256(&c)).await, "expired");
    let mut c = claims("eve");
    c["nbf"] = json!(now() + 120);
    refused(verifier.verify(&rs256(&c)).await, "not yet valid");
    let mut c = claims("eve");
    c.as_object_mut().unwrap().remove("exp");
    refused(verifier.verify(&rs256(&c)).await, "no exp");
    let mut c = claims("eve");
    c["aud"] = json!("someone-else");
    refused(verifier.verify(&rs256(&c)).await, "wrong audience");
    let mut c = claims("eve");
    c["iss"] = json!("https://evil.example/realms/test");
    refused(verifier.verify(&rs256(&c)).await, "wrong issuer");
    let other = sign(
        Algorithm::RS256,
        "rsa-2",
        &EncodingKey::from_rsa_pem(RSA_OTHER).unwrap(),
        &claims("eve"),
    );
    refused(verifier.verify(&other).await, "unknown kid");
    let impostor = sign(
        Algorithm::RS256,
        "rsa-1",
        &EncodingKey::from_rsa_pem(RSA_OTHER).unwrap(),
        &claims("eve"),
    );
    refused(verifier.verify(&impostor).await, "another key under a known kid");
    // Tampered payload, truncated, garbage, empty, oversized.
    let good = rs256(&claims("alice"));
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], b64(&claims("root")), parts[2]);
    refused(verifier.verify(&tampered).await, "tampered");
    refused(verifier.verify(&good[..good.len() - 10]).await, "truncated");
    refused(verifier.verify("garbage").await, "garbage");
    refused(verifier.verify("a.b.c").await, "not base64 JSON");
    refused(verifier.verify("").await, "empty");
    refused(verifier.verify(&"x".repeat(20_000)).await, "oversized");
    let mut c = claims("eve");
    c["preferred_username"] = json!(" padded ");
    refused(verifier.verify(&rs256(&c)).await, "invalid subject");
}

#[tokio::test]
async fn tokens_not_meant_for_us_are_refused() {
    let server = JwksServer::start(JWKS).await;
    let verifier = TokenVerifier::new(config(&server)).unwrap();
    verifier.verify(&rs256(&claims("warm"))).await.unwrap();
    // A configured audience or issuer is required: a token without the claim is refused like a wrong one.
    for claim in ["aud", "iss"] {
        let mut c = claims("eve");
        c.as_object_mut().unwrap().remove(claim);
        refused(verifier.verify(&rs256(&c)).await, &format!("no {claim}"));
    }
    let mut c = claims("eve");
    c["aud"] = json!([]);
    refused(verifier.verify(&rs256(&c)).await, "an empty audience list");
    let mut c = claims("eve");
    c["aud"] = json!(["someone-else", AUDIENCE]);
    assert!(
        verifier.verify(&rs256(&c)).await.is_ok(),
        "one of several audiences is ours"
    );
    // No fallback to another claim for the subject: two tokens can never name one user through two claims.
    let mut c = claims("eve");
    c.as_object_mut().unwrap().remove("preferred_username");
    refused(verifier.verify(&rs256(&c)).await, "no preferred_username (only sub)");
    let mut c = claims("eve");
    c["preferred_username"] = json!(42);
    refused(verifier.verify(&rs256(&c)).await, "a subject that is not a string");
    // Only access tokens: ID tokens, refresh tokens and other media types are refused.
    for typ in ["ID", "Refresh", "Logout", "Offline", "bearer"] {
        let mut c = claims("eve");
        c["typ"] = json!(typ);
        refused(verifier.verify(&rs256(&c)).await, &format!("payload typ {typ}"));
    }
    let mut c = claims("eve");
    c["typ"] = json!(null);
    refused(verifier.verify(&rs256(&c)).await, "payload typ null");
    for typ in ["JOSE", "id+jwt", "logout+jwt", "secevent+jwt", ""] {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".to_owned());
        header.typ = Some(typ.to_owned());
        let token = jsonwebtoken::encode(&header, &claims("eve"), &EncodingKey::from_rsa_pem(RSA).unwrap()).unwrap();
        refused(verifier.verify(&token).await, &format!("header typ {typ:?}"));
    }
    // Without a configured audience or issuer, those claims are not checked.
    let open = TokenVerifier::new(IdentityConfig::new(server.url())).unwrap();
    let mut c = claims("open");
    c.as_object_mut().unwrap().remove("aud");
    c.as_object_mut().unwrap().remove("iss");
    assert!(open.verify(&rs256(&c)).await.is_ok());
}

#[tokio::test]
async fn removed_keys_stop_being_trusted_at_the_next_refresh() {
    let server = JwksServer::start(JWKS).await;
    let verifier = TokenVerifier::new(IdentityConfig {
        refresh_interval: Duration::from_millis(300),
        refetch_interval: Duration::from_millis(100),
        ..config(&server)
    })
    .unwrap();
    verifier.verify(&rs256(&claims("alice"))).await.unwrap();
    // The provider drops rsa-1 and publishes rsa-2 only.
    server.set_body(include_str!("../fixtures/jwt/jwks-other.json"));
    // Until the refresh is due, the known key still verifies, and no fetch is made for it.
    let fetches = server.fetches();
    assert!(verifier.verify(&rs256(&claims("alice"))).await.is_ok());
    assert_eq!(server.fetches(), fetches);
    tokio::time::sleep(Duration::from_millis(350)).await;
    refused(
        verifier.verify(&rs256(&claims("alice"))).await,
        "a key the provider removed",
    );
    assert_eq!(server.fetches(), fetches + 1, "the refresh is one fetch");
    let other = sign(
        Algorithm::RS256,
        "rsa-2",
        &EncodingKey::from_rsa_pem(RSA_OTHER).unwrap(),
        &claims("bob"),
    );
    assert_eq!(verifier.verify(&other).await.unwrap().claims().subject.as_str(), "bob");
    // The default refresh is five minutes at most.
    assert!(IdentityConfig::new(server.url()).refresh_interval <= Duration::from_secs(300));
}

#[tokio::test]
async fn known_keys_serve_while_a_refresh_fails() {
    let server = JwksServer::start(JWKS).await;
    let verifier = TokenVerifier::new(IdentityConfig {
        refresh_interval: Duration::from_millis(200),
        ..config(&server)
    })
    .unwrap();
    verifier.verify(&rs256(&claims("alice"))).await.unwrap();
    server.set_down(true);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let before = server.fetches();
    for _ in 0..10 {
        assert!(
            verifier.verify(&rs256(&claims("alice"))).await.is_ok(),
            "the provider is down, not compromised"
        );
    }
    assert_eq!(
        server.fetches() - before,
        1,
        "a failed refresh is retried at most once a second"
    );
    server.set_down(false);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(verifier.verify(&rs256(&claims("alice"))).await.is_ok());
    assert_eq!(server.fetches() - before, 2, "retried after a second, and it worked");
}

#[tokio::test]
async fn a_plain_http_jwks_or_follower_url_to_another_host_is_refused() {
    use heimdall_core::authorizer::{Authorizer, AuthorizerConfig, Decider, RemoteMappings};
    let verifier = || TokenVerifier::new(IdentityConfig::new("https://idp.example/certs")).unwrap();
    let follow = |remote: RemoteMappings| {
        Authorizer::following(verifier(), remote, Decider::Local, AuthorizerConfig::default())
            .map(|(_, task)| task.abort())
    };
    let e = follow(RemoteMappings::new("http://heimdall.internal:8080", "hk_x")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("plain http"), "{e}");
    assert!(follow(RemoteMappings::new("https://heimdall.internal", "hk_x")).is_ok());
    assert!(follow(RemoteMappings::new("http://127.0.0.1:9", "hk_x")).is_ok());
    assert!(
        follow(RemoteMappings {
            allow_plain_http: true,
            ..RemoteMappings::new("http://heimdall.internal:8080", "hk_x")
        })
        .is_ok()
    );

    let e = TokenVerifier::new(IdentityConfig::new("http://idp.example/certs")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        TokenVerifier::new(IdentityConfig {
            allow_plain_http: true,
            ..IdentityConfig::new("http://idp.example/certs")
        })
        .is_ok()
    );
    assert!(TokenVerifier::new(IdentityConfig::new("https://idp.example/certs")).is_ok());
    assert!(TokenVerifier::new(IdentityConfig::new("http://127.0.0.1:9/certs")).is_ok());
    assert!(TokenVerifier::new(IdentityConfig::new("ftp://idp.example/certs")).is_err());
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let server = JwksServer::start(JWKS).await;
    let verifier = TokenVerifier::new(config(&server)).unwrap();
    verifier.verify(&rs256(&claims("warm"))).await.unwrap();
    assert_eq!(server.fetches(), 1);
    let other = sign(
        Algorithm::RS256,
        "rsa-2",
        &EncodingKey::from_rsa_pem(RSA_OTHER).unwrap(),
        &claims("eve"),
    );
    for _ in 0..20 {
        refused(verifier.verify(&other).await, "unknown kid");
    }
    assert!(
        server.fetches() <= 2,
        "{} fetches for 20 unknown kids",
        server.fetches()
    );

    // A rotated key is picked up by the next fetch once the interval has passed.
    let rotated = IdentityConfig {
        refetch_interval: Duration::from_millis(200),
        ..config(&server)
    };
    let verifier = TokenVerifier::new(rotated).unwrap();
    verifier.verify(&rs256(&claims("warm"))).await.unwrap();
    let mut keys: Value = serde_json::from_str(JWKS).unwrap();
    let other_keys: Value = serde_json::from_str(include_str!("../fixtures/jwt/jwks-other.json")).unwrap();
    keys["keys"].as_array_mut().unwrap().push(other_keys["keys"][0].clone());
    server.set_body(&keys.to_string());
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(verifier.verify(&other).await.unwrap().claims().subject.as_str(), "eve");
}

#[tokio::test]
async fn known_keys_outlive_the_identity_provider() {
    let server = JwksServer::start(JWKS).await;
    let warm = TokenVerifier::new(config(&server)).unwrap();
    warm.verify(&rs256(&claims("alice"))).await.unwrap();
    server.set_down(true);
    // Known keys keep working.
    assert!(warm.verify(&rs256(&claims("bob"))).await.is_ok());
    // A verifier that has no key yet cannot tell: unavailable (503), not unauthenticated.
    let cold = TokenVerifier::new(IdentityConfig {
        refetch_interval: Duration::from_millis(200),
        ..config(&server)
    })
    .unwrap();
    let before = server.fetches();
    for _ in 0..5 {
        let e = cold.verify(&rs256(&claims("bob"))).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    }
    assert_eq!(server.fetches() - before, 1, "a down provider is not hammered");
    server.set_down(false);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        cold.verify(&rs256(&claims("bob"))).await.is_ok(),
        "back once the provider is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verified_tokens_provision_their_bearer_once() {
    let server = JwksServer::start(JWKS).await;
    let verifier = TokenVerifier::new(config(&server)).unwrap();
    for db in TestDatabase::all().await {
        let h = heimdall(&db).await;
        let token = rs256(&claims("dora"));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (h, v, t) = (h.clone(), verifier.clone(), token.clone());
                tokio::spawn(async move { h.authenticate(&v, &t).await })
            })
            .collect();
        let mut ids = std::collections::HashSet::new();
        for t in tasks {
            let caller = t.await.unwrap().unwrap();
            assert_eq!(caller.subject().as_str(), "dora");
            assert_eq!(
                caller.token_roles().len(),
                2,
                "only valid role names: {:?}",
                caller.token_roles()
            );
            ids.insert(caller.user_id());
        }
        assert_eq!(ids.len(), 1, "{}: one subject is one user", db.backend);
        // Changed claims refresh the user.
        let mut c = claims("dora");
        c["name"] = json!("Dora Renamed");
        h.authenticate(&verifier, &rs256(&c)).await.unwrap();
        let user = h.get_user("dora").await.unwrap().user;
        assert_eq!(user.display_name.as_deref(), Some("Dora Renamed"), "{}", db.backend);
        assert_eq!(
            h.authenticate(&verifier, "garbage").await.unwrap_err().kind(),
            ErrorKind::Unauthenticated
        );
        drop(h);
        db.drop_database().await;
    }
}
