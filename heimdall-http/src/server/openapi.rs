//! The OpenAPI 3 document, generated from the handlers' annotations, at `/openapi.json`.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{AppState, feeds, groups, keys, mappings, ops, roles, users};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Heimdall",
        description = "Who may call which endpoint: groups, roles, memberships, delegated management rights and \
            endpoint→action mappings, decided by a policy decision point. Every error answers \
            `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "Users (provisioned from their tokens) and their direct roles"),
        (name = "groups", description = "Groups, members, group roles and management rights"),
        (name = "roles", description = "Roles and their permissions"),
        (name = "mappings", description = "Endpoint → action mappings and the adapter lookup"),
        (name = "adapters", description = "What adapters follow: the export and the change feed"),
        (name = "operations", description = "Health, metrics, audit and reconciliation"),
    )
)]
struct Doc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A JWT from the identity provider; the adapter endpoints also take STATIC_API_TOKEN or \
                         an API key (hk_…) with the mappings:read scope",
                    ))
                    .build(),
            ),
        );
    }
}

/// The whole document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Doc::openapi();
    doc.merge(users::Api::openapi());
    doc.merge(groups::Api::openapi());
    doc.merge(roles::Api::openapi());
    doc.merge(mappings::Api::openapi());
    doc.merge(feeds::Api::openapi());
    doc.merge(ops::Api::openapi());
    doc.merge(keys::Api::openapi());
    doc
}

static JSON: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_json()
        .expect("the OpenAPI document is plain data and always serializes")
});

async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], JSON.as_str())
}

pub(super) fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/openapi.json", get(openapi_json))
}

#[cfg(test)]
mod tests {
    /// The document tells a client what the code accepts: the `~` that starts a regular expression, and that
    /// the lower priority wins (the same rule as core's resolver and the README).
    #[test]
    fn mapping_fields_document_the_pattern_syntax_and_the_priority_rule() {
        let doc: serde_json::Value = serde_json::from_str(super::JSON.as_str()).unwrap();
        let mapping_in = &doc["components"]["schemas"]["MappingIn"]["properties"];
        let pattern = mapping_in["path_pattern"]["description"].as_str().unwrap();
        assert!(
            pattern.contains("leading `~`") && pattern.contains(":id") && pattern.contains("**"),
            "{pattern}"
        );
        assert!(
            !pattern.contains("re:"),
            "no syntax the code does not accept: {pattern}"
        );
        for schema in ["MappingIn", "MappingOut"] {
            let priority = doc["components"]["schemas"][schema]["properties"]["priority"]["description"]
                .as_str()
                .unwrap();
            assert!(priority.contains("lower priority wins"), "{schema}: {priority}");
        }
    }
}
