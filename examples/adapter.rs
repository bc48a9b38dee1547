//! An axum service behind heimdall-adapter's layer, deciding locally from a running heimdall-http (for
//! instance `heimdall demo`): its mappings and grants come from the export and the change feed.
//!
//! ```sh
//! HEIMDALL_URL=http://127.0.0.1:8080 HEIMDALL_API_KEY=hk_... KEYCLOAK_JWKS_URL=http://127.0.0.1:PORT/jwks.json \
//!     cargo run -p heimdall-examples --example adapter
//! curl -i http://127.0.0.1:3000/courses/1 -H "Authorization: Bearer $ALICE_TOKEN"
//! ```
//!
//! The API key needs the scopes `mappings:read` and `grants:read`; the README's adapter section shows the
//! whole walk-through (run as written by heimdall-http's `walkthrough` test). `EXAMPLE_ADDR` changes where the
//! service listens (default `127.0.0.1:3000`).

use std::time::Duration;

use axum::Extension;
use heimdall_adapter::{AuthorizeLayer, Grant, RemoteMappings};

fn setting(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (see the example's header)"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let heimdall = std::env::var("HEIMDALL_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned());
    let key = setting("HEIMDALL_API_KEY")?;
    let jwks = setting("KEYCLOAK_JWKS_URL")?;
    // Local decisions (no pdp given): no call to Heimdall or Cerbos per request. Unmapped routes are refused.
    let (layer, _follower) = AuthorizeLayer::builder()
        .jwks_url(jwks)
        .follow(RemoteMappings {
            poll_interval: Duration::from_secs(30),
            ..RemoteMappings::new(heimdall, key)
        })
        .build()?;
    let app = axum::Router::new()
        .route(
            "/courses/{id}",
            axum::routing::get(|Extension(grant): Extension<Grant>| async move {
                format!(
                    "{} may {} (mapping {:?}, {:?})\n",
                    grant.subject,
                    grant.action.map(|a| a.to_string()).unwrap_or_default(),
                    grant.mapping_id,
                    grant.params
                )
            }),
        )
        .layer(layer);
    let addr = std::env::var("EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("the example service listens on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
