//! Every token attack the issue lists answers 401 with `WWW-Authenticate`; an identity provider that is down
//! makes new keys 503 while known keys keep working.

use base64::Engine as _;
use heimdall_core::test_utils::TestDatabase;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::support::{Api, EC, Idp, Process, RSA_OTHER, RSA_PUBLIC, claims, now, rs256, secret, sign, token};

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn forged_stale_and_foreign_tokens_are_401() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut env = idp.env();
    env.push(("DB_DSN", db.url.clone()));
    env.push(("JWKS_REFETCH_INTERVAL_SECONDS", "1".to_owned()));
    let mut server = Process::serve(&env);
    let api = Api::new(&server.base);

    // The good ones first: RS256 and ES256 both sign in.
    api.get("/api/v1/users/me", &token("alice")).await.expect(200);
    let es = sign(
        Algorithm::ES256,
        "ec-1",
        &EncodingKey::from_ec_pem(EC).unwrap(),
        &claims("erin"),
    );
    assert_eq!(
        api.get("/api/v1/users/me", &es).await.expect(200).body["subject"],
        "erin"
    );

    let mut attacks: Vec<(&str, String)> = Vec::new();
    attacks.push((
        "alg none",
        secret(&format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "kid": "rsa-1"})),
            b64(&claims("mallory"))
        )),
    ));
    attacks.push((
        "HS256 signed with the RSA public key",
        sign(
            Algorithm::HS256,
            "rsa-1",
            &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
            &claims("mallory"),
        ),
    ));
    let mut c = claims("mallory");
    c["exp"] = json!(now() - 3600);
    attacks.push(("expired", rs256(&c)));
    let mut c = claims("mallory");
    c["nbf"] = json!(now() + 3600);
    attacks.push(("not yet valid", rs256(&c)));
    let mut c = claims("mallory");
    c["aud"] = json!("someone-else");
    attacks.push(("wrong audience", rs256(&c)));
    let mut c = claims("mallory");
    c["iss"] = json!("https://evil.example/realms/test");
    attacks.push(("wrong issuer", rs256(&c)));
    attacks.push((
        "unknown kid",
        sign(
            Algorithm::RS256,
            "rsa-2",
            &EncodingKey::from_rsa_pem(RSA_OTHER).unwrap(),
            &claims("mallory"),
        ),
    ));
    attacks.push((
        "a known kid, signed by another key",
        sign(
            Algorithm::RS256,
            "rsa-1",
            &EncodingKey::from_rsa_pem(RSA_OTHER).unwrap(),
            &claims("mallory"),
        ),
    ));
    // Tokens not meant for us: no audience or issuer at all, Keycloak's ID and refresh tokens, a header type
    // that is not an access token's, a subject only in another claim than the configured one.
    for claim in ["aud", "iss"] {
        let mut c = claims("mallory");
        c.as_object_mut().unwrap().remove(claim);
        attacks.push((if claim == "aud" { "no audience" } else { "no issuer" }, rs256(&c)));
    }
    for typ in ["ID", "Refresh"] {
        let mut c = claims("mallory");
        c["typ"] = json!(typ);
        attacks.push((if typ == "ID" { "an ID token" } else { "a refresh token" }, rs256(&c)));
    }
    let mut c = claims("mallory");
    c.as_object_mut().unwrap().remove("preferred_username");
    attacks.push(("a subject only in sub", rs256(&c)));
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".to_owned());
    header.typ = Some("logout+jwt".to_owned());
    attacks.push((
        "a logout token",
        secret(
            &jsonwebtoken::encode(
                &header,
                &claims("mallory"),
                &EncodingKey::from_rsa_pem(crate::support::RSA).unwrap(),
            )
            .unwrap(),
        ),
    ));
    let good = token("mallory");
    attacks.push(("truncated", secret(&good[..good.len() - 10])));
    attacks.push(("garbage", secret("not-a-token-at-all")));
    attacks.push(("three garbage parts", secret("aaa.bbb.ccc")));
    for (what, t) in &attacks {
        let r = api.get("/api/v1/users/me", t).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text);
        let r = r.error(401, "unauthenticated");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"heimdall\""),
            "{what}"
        );
    }
    // Missing and malformed headers.
    let r = api
        .call("GET", "/api/v1/users/me", None, None)
        .await
        .error(401, "unauthenticated");
    assert!(r.header("www-authenticate").is_some());
    let basic = api
        .http
        .get(format!("{}/api/v1/users/me", api.base))
        .header("authorization", "Basic cm9vdDpyb290")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    // None of the attackers became a user.
    let root_like = token("alice");
    api.get("/api/v1/users/mallory", &root_like)
        .await
        .error(404, "not_found");

    // The identity provider goes down: a token with a kid Heimdall has not fetched yet is 503 (it cannot tell),
    // while tokens with known keys keep working.
    idp.set_down(true);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let unknown = sign(
        Algorithm::RS256,
        "rsa-3",
        &EncodingKey::from_rsa_pem(RSA_OTHER).unwrap(),
        &claims("bob"),
    );
    api.get("/api/v1/users/me", &unknown).await.error(503, "unavailable");
    api.get("/api/v1/users/me", &token("alice")).await.expect(200);
    idp.set_down(false);

    assert!(server.stop().success());
}

/// Without JWT_AUDIENCE, `serve` starts only when told HEIMDALL_ALLOW_ANY_AUDIENCE, and then says so at start;
/// tokens of any audience pass (what the operator opted into), the other checks still hold.
#[tokio::test]
async fn any_audience_is_an_explicit_and_logged_choice() {
    let db = TestDatabase::sqlite();
    let idp = Idp::start().await;
    let mut env: Vec<(&str, String)> = idp.env().into_iter().filter(|(k, _)| *k != "JWT_AUDIENCE").collect();
    env.push(("DB_DSN", db.url.clone()));
    env.push(("HEIMDALL_ALLOW_ANY_AUDIENCE", "true".to_owned()));
    let server = Process::serve(&env);
    let api = Api::new(&server.base);
    let mut c = claims("frank");
    c["aud"] = json!("another-app");
    api.get("/api/v1/users/me", &rs256(&c)).await.expect(200);
    let mut c = claims("frank");
    c["iss"] = json!("https://evil.example/realms/test");
    api.get("/api/v1/users/me", &rs256(&c))
        .await
        .error(401, "unauthenticated");
    let log = server.log();
    assert!(
        log.contains("JWT_AUDIENCE is not set") && log.contains("HEIMDALL_ALLOW_ANY_AUDIENCE"),
        "no warning at start: {log}"
    );
}
