//! `heimdall demo`: a development token issuer on loopback, so that a new user can try the API in a minute.
//!
//! **Not for production.** The issuer makes a fresh ES256 key at start, serves its JWKS on 127.0.0.1, and
//! signs whatever tokens the demo asks for. Anyone who can reach the issuer's port can read the public key
//! only; tokens are minted in-process and printed to the terminal.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

mod oidc;

/// The issuer's `iss`.
pub const ISSUER: &str = "heimdall-demo";
/// The audience its tokens carry.
pub const AUDIENCE: &str = "heimdall";

/// A development token issuer (see the module docs).
pub struct DevIssuer {
    kid: String,
    encoding: EncodingKey,
    jwks: Value,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// An issuer with a new P-256 key.
    pub fn new() -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "cannot generate a P-256 key".to_owned())?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| "cannot read the generated key".to_owned())?;
        // The public key is the uncompressed point: 0x04, then x and y (32 bytes each).
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err("unexpected public key encoding".to_owned());
        }
        let kid = format!("demo-{}", &URL_SAFE_NO_PAD.encode(&point[1..9]));
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]});
        Ok(DevIssuer {
            kid,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwks,
        })
    }

    /// The key set, as the JWKS endpoint serves it.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    /// A token for `subject`, valid for `ttl`.
    pub fn mint(&self, subject: &str, name: &str, ttl: Duration) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let claims = json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "preferred_username": subject, "name": name,
            "iat": now, "nbf": now, "exp": now + ttl.as_secs(),
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// Serves the issuer on `listener` in the background: its JWKS at `/jwks.json`, and for the console's
    /// sign-in an OpenID Connect discovery document, an authorize page that lists `users` (subject, label) to
    /// sign in as, and a token endpoint (authorization code with PKCE `S256`; redirect URIs on loopback only).
    /// Returns the issuer's base URL.
    pub fn serve(
        self: std::sync::Arc<Self>,
        listener: TcpListener,
        users: Vec<(String, String)>,
    ) -> Result<String, String> {
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let base = format!("http://{addr}");
        let app = oidc::routes(self, base.clone(), users);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the demo's token issuer stopped");
            }
        });
        Ok(base)
    }
}

/// The demo's delegated manager.
pub const MANAGER: &str = "bob";
/// The group whose members manage the `go:` groups, and the mappings those own under `/go/`.
pub const MANAGER_GROUP: &str = "leads:go";

/// Gives the demo a delegated manager ([`MANAGER`], a member of [`MANAGER_GROUP`]), so that the console's
/// restricted view can be tried. Idempotent: a database that has them already is left as it is.
pub async fn seed(h: &heimdall_core::Heimdall) -> heimdall_core::Result<()> {
    use heimdall_core::ErrorKind;
    let system = h.system_caller("demo")?;
    let existing = |r: heimdall_core::Result<()>| match r {
        Err(e) if e.kind() != ErrorKind::Conflict => Err(e),
        _ => Ok(()),
    };
    existing(
        h.create_group(
            &system,
            MANAGER_GROUP,
            Some("The go: team's leads: they manage the go: groups and their mappings under /go/"),
        )
        .await
        .map(drop),
    )?;
    if h.list_management_rights(Some(MANAGER_GROUP)).await?.is_empty() {
        h.create_management_right(&system, MANAGER_GROUP, "go:%", Some("/go/**"))
            .await?;
    }
    h.add_member(&system, MANAGER_GROUP, MANAGER).await.map(drop)
}

/// What `heimdall demo` prints once the server listens.
pub fn banner(base: &str, jwks: &str, admin_token: &str, user_token: &str, database: &str) -> String {
    format!(
        r#"
================================================================================
 HEIMDALL DEMO — NOT FOR PRODUCTION
 A development token issuer signs tokens for anyone who asks this process.
 Database: {database} (SQLite, built-in PDP). Bound to 127.0.0.1 only.
================================================================================
 API:        {base}/api/v1   (OpenAPI: {base}/openapi.json)
 Console:    {base}/console   (sign in as demo-admin, a superadmin; bob, who manages the go: groups
             and their mappings under /go/; or alice, a plain user)
 JWKS:       {jwks}   (the development issuer's keys, for adapters)

 Superadmin token (subject demo-admin, valid 12 h):
   export ADMIN_TOKEN={admin_token}
 Plain user token (subject alice, valid 12 h):
   export ALICE_TOKEN={user_token}

 Try:
   curl -s -X POST {base}/api/v1/groups -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'content-type: application/json' -d '{{"name":"go:course:editor"}}'
   curl -s -X POST {base}/api/v1/groups/go:course:editor/members -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'content-type: application/json' -d '{{"subject":"alice"}}'
   curl -s -X POST {base}/api/v1/mappings -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'content-type: application/json' \
        -d '{{"method":"POST","path_pattern":"/courses/*","action":"course:create","owner_group":"go:course:editor"}}'
   curl -s "{base}/api/v1/mappings?method=POST&path=/courses/123" -H "Authorization: Bearer $ALICE_TOKEN"
   curl -s {base}/api/v1/users/alice -H "Authorization: Bearer $ALICE_TOKEN"
   curl -s -X POST {base}/api/v1/explain -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'content-type: application/json' -d '{{"subject":"alice","method":"POST","path":"/courses/123"}}'

 The demo's data is gone when it stops. Stop with Ctrl-C.
================================================================================
"#
    )
}
