//! A client of a Cerbos PDP over HTTP/JSON: the Check API ([`Pdp`]) and the Admin API.
//!
//! Cerbos serves HTTP/JSON on port 3592 (3593 is gRPC only). The client keeps connections alive, bounds
//! every request with a connect timeout and a total timeout, and retries checks and reads (never writes)
//! with exponential backoff and jitter.
//!
//! Failures are classified for the caller: a `400` (Cerbos rejected the request, for example an invalid
//! policy) is [`ErrorKind::InvalidInput`] and permanent; `401`, `403`, `429`, `5xx`, timeouts and
//! connection errors are [`ErrorKind::Unavailable`] and [`Error::is_retryable`]; anything else is
//! [`ErrorKind::Unexpected`].
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> heimdall_core::Result<()> {
//! use heimdall_core::pdp::{CerbosClient, CerbosConfig, Pdp, Principal, Resource};
//!
//! let mut config = CerbosConfig::new("http://cerbos:3592/api/check/resources");
//! config.admin_url = Some("http://cerbos:3592/admin/policy".into());
//! config.admin_password = "secret".into();
//! let cerbos = CerbosClient::new(config)?;
//! let alice = Principal::new("alice", ["user"]);
//! let decisions = cerbos.check(&alice, &Resource::new("course", "c1"), &["course:create"]).await?;
//! # Ok(()) }
//! ```
//!
//! [`ErrorKind::InvalidInput`]: crate::ErrorKind::InvalidInput
//! [`ErrorKind::Unavailable`]: crate::ErrorKind::Unavailable
//! [`ErrorKind::Unexpected`]: crate::ErrorKind::Unexpected

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::pdp::principal::{PRINCIPAL_ID_REGEX, PRINCIPAL_POLICY_MARK, has_heimdall_mark};
use crate::pdp::{Decision, MAX_ACTIONS_PER_RESOURCE, MAX_RESOURCES_PER_CHECK, Pdp, Principal, Resource};

/// Most policies per `PUT /admin/policy` (Cerbos' limit).
pub const MAX_POLICIES_PER_PUT: usize = 100;
/// Most ids per `POST /admin/policy/delete` (Cerbos' limit).
pub const MAX_IDS_PER_DELETE: usize = 20;
/// Most ids per `GET /admin/policy` (ours, to keep URLs short).
pub const MAX_IDS_PER_GET: usize = 20;
/// Longest error text from Cerbos kept in an error message.
const MAX_ERROR_BODY: usize = 512;

/// How to reach a Cerbos PDP.
///
/// `Debug` never shows the admin password.
#[derive(Clone)]
pub struct CerbosConfig {
    /// The Check API: the spec's full URL (`http://cerbos:3592/api/check/resources`) or a base URL
    /// (`http://cerbos:3592`, also with a path prefix such as `https://gw/cerbos/`).
    pub check_url: String,
    /// The Admin API: the spec's full URL (`http://cerbos:3592/admin/policy`) or a base URL; the other
    /// Admin API paths are derived from it. `None`: the same server as `check_url`.
    pub admin_url: Option<String>,
    /// The Admin API user name.
    pub admin_user: String,
    /// The Admin API password (never logged, never in `Debug`).
    pub admin_password: String,
    /// Longest time to open a connection.
    pub connect_timeout: Duration,
    /// Longest time for one request, connection included.
    pub timeout: Duration,
    /// Retries of a check or a read after the first attempt (writes are never retried).
    pub max_retries: usize,
    /// First delay between retries (then doubled each time, with jitter).
    pub retry_min_delay: Duration,
    /// Longest delay between retries.
    pub retry_max_delay: Duration,
}

impl CerbosConfig {
    /// A configuration with the given Check API URL and defaults for the rest: admin API on the same
    /// server as user `cerbos` with no password, connect timeout 2 s, request timeout 5 s, 3 retries
    /// from 50 ms up to 1 s.
    pub fn new(check_url: impl Into<String>) -> Self {
        CerbosConfig {
            check_url: check_url.into(),
            admin_url: None,
            admin_user: "cerbos".to_owned(),
            admin_password: String::new(),
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            max_retries: 3,
            retry_min_delay: Duration::from_millis(50),
            retry_max_delay: Duration::from_secs(1),
        }
    }
}

impl fmt::Debug for CerbosConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CerbosConfig")
            .field("check_url", &self.check_url)
            .field("admin_url", &self.admin_url)
            .field("admin_user", &self.admin_user)
            .field("admin_password", &"<redacted>")
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_min_delay", &self.retry_min_delay)
            .field("retry_max_delay", &self.retry_max_delay)
            .finish()
    }
}

/// The base URL (ending in `/`) of a Cerbos given as a full endpoint URL or a base URL.
fn base_url(what: &str, raw: &str) -> Result<Url> {
    let mut url = Url::parse(raw.trim()).map_err(|e| Error::config(format!("{what} {raw:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::config(format!("{what} must be an http or https URL")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(format!(
            "{what} must not carry credentials; set the admin user and password instead"
        )));
    }
    url.set_query(None);
    url.set_fragment(None);
    let mut path = url.path().trim_end_matches('/').to_owned();
    for suffix in ["/api/check/resources", "/admin/policy", "/admin/policies", "/admin"] {
        if let Some(stripped) = path.strip_suffix(suffix) {
            path = stripped.to_owned();
            break;
        }
    }
    path.push('/');
    url.set_path(&path);
    Ok(url)
}

fn join(base: &Url, path: &str) -> Result<Url> {
    base.join(path)
        .map_err(|e| Error::config(format!("cannot build a Cerbos URL from {base}: {e}")))
}

#[derive(Debug, Clone)]
struct Endpoints {
    check: Url,
    policy: Url,
    policies: Url,
    delete: Url,
    reload: Url,
    health: Url,
}

/// A client of one Cerbos PDP (see the module docs). Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct CerbosClient {
    http: reqwest::Client,
    endpoints: Endpoints,
    config: CerbosConfig,
}

/// Which policies [`CerbosClient::list_policies`] returns; unset fields match everything.
#[derive(Debug, Clone, Default)]
pub struct PolicyFilter {
    /// Only policies whose name matches this regular expression (a principal policy's name is its
    /// principal, a resource policy's its resource kind).
    pub name_regexp: Option<String>,
    /// Only policies whose scope matches this regular expression.
    pub scope_regexp: Option<String>,
    /// Only policies whose version matches this regular expression.
    pub version_regexp: Option<String>,
    /// Disabled policies too.
    pub include_disabled: bool,
}

/// Whether a request may be repeated (checks and reads) or not (writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Yes,
    No,
}

impl CerbosClient {
    /// A client for `config`; a configuration error when a URL is invalid.
    pub fn new(config: CerbosConfig) -> Result<Self> {
        let check_base = base_url("the Cerbos check URL", &config.check_url)?;
        let admin_base = match &config.admin_url {
            Some(u) => base_url("the Cerbos admin URL", u)?,
            None => check_base.clone(),
        };
        let endpoints = Endpoints {
            check: join(&check_base, "api/check/resources")?,
            policy: join(&admin_base, "admin/policy")?,
            policies: join(&admin_base, "admin/policies")?,
            delete: join(&admin_base, "admin/policy/delete")?,
            reload: join(&admin_base, "admin/store/reload")?,
            health: join(&check_base, "_cerbos/health")?,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_keepalive(Duration::from_secs(30))
            // Never carry the admin credentials anywhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::config("cannot build the Cerbos HTTP client").with_source(e))?;
        Ok(CerbosClient {
            http,
            endpoints,
            config,
        })
    }

    /// The Check API endpoint in use.
    pub fn check_endpoint(&self) -> &str {
        self.endpoints.check.as_str()
    }

    /// The Admin API's `/admin/policy` endpoint in use.
    pub fn admin_endpoint(&self) -> &str {
        self.endpoints.policy.as_str()
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.config.retry_min_delay)
            .with_max_delay(self.config.retry_max_delay)
            .with_max_times(self.config.max_retries)
            .with_jitter()
    }

    /// Sends one request and returns the JSON answer, retrying retryable failures when `retry` says so.
    async fn call(&self, method: Method, url: Url, body: Option<&Value>, admin: bool, retry: Retry) -> Result<Value> {
        if admin && self.config.admin_password.is_empty() {
            return Err(Error::config(
                "the Cerbos Admin API needs a password (CERBOS_ADMIN_PASSWORD)",
            ));
        }
        let once = || self.call_once(method.clone(), url.clone(), body, admin);
        match retry {
            Retry::No => once().await,
            Retry::Yes => once
                .retry(self.backoff())
                .when(Error::is_retryable)
                .notify(|e, after| {
                    tracing::warn!(error = %e, retry_in = ?after, path = url.path(), "Cerbos call failed; retrying");
                })
                .await,
        }
    }

    async fn call_once(&self, method: Method, url: Url, body: Option<&Value>, admin: bool) -> Result<Value> {
        let path = url.path().to_owned();
        let mut req = self.http.request(method, url);
        if admin {
            req = req.basic_auth(&self.config.admin_user, Some(&self.config.admin_password));
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "timed out"
            } else {
                "could not be reached"
            };
            Error::unavailable(format!("Cerbos ({path}) {what}")).with_source(e.without_url())
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| {
            Error::unavailable(format!("reading Cerbos' answer ({path}) failed")).with_source(e.without_url())
        })?;
        if !status.is_success() {
            return Err(status_error(&path, status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_str(&text)
            .map_err(|e| Error::unexpected(format!("Cerbos ({path}) answered with invalid JSON")).with_source(e))
    }

    /// Decides several resources for one principal: one `Vec<Decision>` per item, in order. Sends up to
    /// [`MAX_RESOURCES_PER_CHECK`] resources per request; each item has 1 to [`MAX_ACTIONS_PER_RESOURCE`]
    /// actions.
    pub async fn check_resources(
        &self,
        principal: &Principal,
        items: &[(&Resource, &[&str])],
    ) -> Result<Vec<Vec<Decision>>> {
        validate_principal(principal)?;
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(MAX_RESOURCES_PER_CHECK) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (resource, actions) in chunk {
                entries.push(resource_entry(resource, actions)?);
            }
            let body = json!({
                "principal": { "id": principal.id, "roles": principal.roles, "attr": principal.attr },
                "resources": entries,
            });
            let answer = self
                .call(
                    Method::POST,
                    self.endpoints.check.clone(),
                    Some(&body),
                    false,
                    Retry::Yes,
                )
                .await?;
            out.extend(parse_check_answer(&answer, chunk)?);
        }
        Ok(out)
    }

    /// Adds or replaces policies (`PUT /admin/policy`), [`MAX_POLICIES_PER_PUT`] per request. Never
    /// retried; on an error, earlier batches may have been applied (putting them again is harmless).
    pub async fn put_policies(&self, policies: &[Value]) -> Result<()> {
        for chunk in policies.chunks(MAX_POLICIES_PER_PUT) {
            let body = json!({ "policies": chunk });
            self.call(Method::PUT, self.endpoints.policy.clone(), Some(&body), true, Retry::No)
                .await?;
            tracing::debug!(count = chunk.len(), "put policies to Cerbos");
        }
        Ok(())
    }

    /// Deletes policies by id (`POST /admin/policy/delete`), [`MAX_IDS_PER_DELETE`] per request; returns
    /// how many existed and were deleted. Never retried.
    pub async fn delete_policies(&self, ids: &[String]) -> Result<u64> {
        let mut deleted = 0;
        for chunk in ids.chunks(MAX_IDS_PER_DELETE) {
            let mut url = self.endpoints.delete.clone();
            url.query_pairs_mut().extend_pairs(chunk.iter().map(|id| ("id", id)));
            let answer = self.call(Method::POST, url, None, true, Retry::No).await?;
            deleted += answer.get("deletedPolicies").and_then(Value::as_u64).unwrap_or(0);
        }
        tracing::debug!(requested = ids.len(), deleted, "deleted policies from Cerbos");
        Ok(deleted)
    }

    /// Lists policy ids (`GET /admin/policies`), sorted.
    pub async fn list_policies(&self, filter: &PolicyFilter) -> Result<Vec<String>> {
        let mut url = self.endpoints.policies.clone();
        {
            let mut q = url.query_pairs_mut();
            for (key, value) in [
                ("nameRegexp", &filter.name_regexp),
                ("scopeRegexp", &filter.scope_regexp),
                ("versionRegexp", &filter.version_regexp),
            ] {
                if let Some(v) = value {
                    q.append_pair(key, v);
                }
            }
            if filter.include_disabled {
                q.append_pair("includeDisabled", "true");
            }
        }
        let answer = self.call(Method::GET, url, None, true, Retry::Yes).await?;
        let mut ids = match answer.get("policyIds") {
            None => Vec::new(),
            Some(Value::Array(ids)) => ids.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(_) => {
                return Err(Error::unexpected("Cerbos listed policies in an unknown shape"));
            }
        };
        ids.sort();
        Ok(ids)
    }

    /// Fetches policies by id (`GET /admin/policy`); ids that do not exist are left out.
    pub async fn get_policies(&self, ids: &[String]) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(MAX_IDS_PER_GET) {
            let mut url = self.endpoints.policy.clone();
            url.query_pairs_mut().extend_pairs(chunk.iter().map(|id| ("id", id)));
            let answer = self.call(Method::GET, url, None, true, Retry::Yes).await?;
            if let Some(Value::Array(policies)) = answer.get("policies") {
                out.extend(policies.iter().cloned());
            }
        }
        Ok(out)
    }

    /// The ids of the principal policies Heimdall pushed (principal named like a [`super::principal_id`]
    /// and annotated [`HEIMDALL_ANNOTATION`](super::principal::HEIMDALL_ANNOTATION)` = `[`PRINCIPAL_POLICY_MARK`]), sorted. Cerbos cannot filter
    /// by annotation, so this lists by name, then reads the candidates to check their annotation.
    pub async fn list_heimdall_principal_policies(&self) -> Result<Vec<String>> {
        let filter = PolicyFilter {
            name_regexp: Some(PRINCIPAL_ID_REGEX.to_owned()),
            ..PolicyFilter::default()
        };
        let candidates: Vec<String> = self
            .list_policies(&filter)
            .await?
            .into_iter()
            .filter(|id| id.starts_with("principal.") && id.ends_with(".vdefault"))
            .collect();
        let mut ids: Vec<String> = self
            .get_policies(&candidates)
            .await?
            .iter()
            .filter(|p| has_heimdall_mark(p, PRINCIPAL_POLICY_MARK))
            .filter_map(|p| {
                let principal = p.pointer("/principalPolicy/principal")?.as_str()?;
                let version = p.pointer("/principalPolicy/version")?.as_str()?;
                Some(format!("principal.{principal}.v{version}"))
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Checks that the PDP answering checks is up (`GET /_cerbos/health`), once, without retries: what a
    /// readiness probe asks.
    pub async fn health(&self) -> Result<()> {
        self.call(Method::GET, self.endpoints.health.clone(), None, false, Retry::No)
            .await
            .map(drop)
    }

    /// Makes the PDP reload its store and waits until it has (`GET /admin/store/reload?wait=true`);
    /// needed when several PDPs share one database. Retried (reloading twice is harmless).
    pub async fn reload_store(&self) -> Result<()> {
        let mut url = self.endpoints.reload.clone();
        url.query_pairs_mut().append_pair("wait", "true");
        self.call(Method::GET, url, None, true, Retry::Yes).await.map(drop)
    }
}

/// The error for a non-success HTTP status.
fn status_error(path: &str, status: StatusCode, body: &str) -> Error {
    let detail = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    let mut detail: String = detail.chars().take(MAX_ERROR_BODY).collect();
    if detail.is_empty() {
        detail = "no details".to_owned();
    }
    let message = format!("Cerbos ({path}) answered {status}: {detail}");
    match status.as_u16() {
        400 => Error::invalid(message),
        401 | 403 | 408 | 429 => Error::unavailable(message),
        s if s >= 500 => Error::unavailable(message),
        _ => Error::unexpected(message),
    }
}

fn validate_principal(principal: &Principal) -> Result<()> {
    if principal.id.is_empty() {
        return Err(Error::invalid("a Cerbos check needs a principal id"));
    }
    if principal.roles.is_empty() || principal.roles.iter().any(String::is_empty) {
        return Err(Error::invalid(
            "a Cerbos check needs at least one role, and no empty role",
        ));
    }
    Ok(())
}

/// One element of a check request's `resources`.
fn resource_entry(resource: &Resource, actions: &[&str]) -> Result<Value> {
    if resource.kind.is_empty() || resource.id.is_empty() {
        return Err(Error::invalid("a Cerbos check needs a resource kind and id"));
    }
    if actions.is_empty() || actions.len() > MAX_ACTIONS_PER_RESOURCE || actions.iter().any(|a| a.is_empty()) {
        return Err(Error::invalid(format!(
            "a Cerbos check needs 1 to {MAX_ACTIONS_PER_RESOURCE} non-empty actions per resource"
        )));
    }
    let mut unique: Vec<&str> = actions.to_vec();
    unique.sort_unstable();
    unique.dedup();
    Ok(json!({
        "resource": { "kind": resource.kind, "id": resource.id, "attr": resource.attr },
        "actions": unique,
    }))
}

/// Reads a check answer for `items`, failing (closed) when anything asked about is missing.
fn parse_check_answer(answer: &Value, items: &[(&Resource, &[&str])]) -> Result<Vec<Vec<Decision>>> {
    let results = answer
        .get("results")
        .and_then(Value::as_array)
        .filter(|r| r.len() == items.len())
        .ok_or_else(|| Error::unexpected("Cerbos answered a check without one result per resource"))?;
    items
        .iter()
        .zip(results)
        .map(|((resource, actions), result)| {
            let same = result.pointer("/resource/id").and_then(Value::as_str) == Some(resource.id.as_str())
                && result.pointer("/resource/kind").and_then(Value::as_str) == Some(resource.kind.as_str());
            if !same {
                return Err(Error::unexpected("Cerbos answered a check for a different resource"));
            }
            let effects = result
                .get("actions")
                .and_then(Value::as_object)
                .ok_or_else(|| Error::unexpected("Cerbos answered a check without effects"))?;
            actions
                .iter()
                .map(|a| match effects.get(*a).and_then(Value::as_str) {
                    Some("EFFECT_ALLOW") => Ok(Decision::Allow),
                    Some(_) => Ok(Decision::Deny),
                    None => Err(Error::unexpected(format!(
                        "Cerbos answered a check without the action {a:?}"
                    ))),
                })
                .collect()
        })
        .collect()
}

#[async_trait]
impl Pdp for CerbosClient {
    async fn check(&self, principal: &Principal, resource: &Resource, actions: &[&str]) -> Result<Vec<Decision>> {
        let mut all = self.check_resources(principal, &[(resource, actions)]).await?;
        all.pop()
            .ok_or_else(|| Error::unexpected("Cerbos answered a check without a result"))
    }

    async fn check_batch(&self, principal: &Principal, items: &[(&Resource, &[&str])]) -> Result<Vec<Vec<Decision>>> {
        self.check_resources(principal, items).await
    }

    fn holds_principal_policies(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn client(check: &str, admin: Option<&str>) -> CerbosClient {
        let mut c = CerbosConfig::new(check);
        c.admin_url = admin.map(str::to_owned);
        CerbosClient::new(c).unwrap()
    }

    #[test]
    fn urls_full_or_base() {
        let c = client(
            "http://cerbos:3592/api/check/resources",
            Some("http://cerbos:3592/admin/policy"),
        );
        assert_eq!(c.check_endpoint(), "http://cerbos:3592/api/check/resources");
        assert_eq!(c.endpoints.policy.as_str(), "http://cerbos:3592/admin/policy");
        assert_eq!(c.endpoints.policies.as_str(), "http://cerbos:3592/admin/policies");
        assert_eq!(c.endpoints.delete.as_str(), "http://cerbos:3592/admin/policy/delete");
        assert_eq!(c.endpoints.reload.as_str(), "http://cerbos:3592/admin/store/reload");
        let c = client("http://cerbos:3592", None);
        assert_eq!(c.check_endpoint(), "http://cerbos:3592/api/check/resources");
        assert_eq!(c.admin_endpoint(), "http://cerbos:3592/admin/policy");
        let c = client("https://gw/pdp/", Some("https://admin.gw/pdp/admin/policy/"));
        assert_eq!(c.check_endpoint(), "https://gw/pdp/api/check/resources");
        assert_eq!(c.endpoints.delete.as_str(), "https://admin.gw/pdp/admin/policy/delete");
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for bad in ["cerbos:3592", "ftp://cerbos", "http://u:p@cerbos:3592", "not a url"] {
            let e = CerbosClient::new(CerbosConfig::new(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}");
            assert!(!e.to_string().contains(":p@"), "{e}");
        }
    }

    #[test]
    fn debug_redacts_the_password() {
        let mut c = CerbosConfig::new("http://cerbos:3592");
        c.admin_password = "hunter2-very-secret".into();
        let shown = format!("{c:?} {:?}", CerbosClient::new(c.clone()).unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn statuses_are_classified() {
        let kind = |s: u16| status_error("/x", StatusCode::from_u16(s).unwrap(), "{\"message\":\"m\"}");
        assert_eq!(kind(400).kind(), ErrorKind::InvalidInput);
        assert!(!kind(400).is_retryable());
        for s in [401, 403, 429, 500, 502, 503, 504] {
            assert!(kind(s).is_retryable(), "{s}");
        }
        assert_eq!(kind(404).kind(), ErrorKind::Unexpected);
        assert!(kind(400).to_string().contains(": m"));
    }

    #[test]
    fn requests_are_validated_before_sending() {
        let r = Resource::new("course", "c1");
        assert!(resource_entry(&r, &[]).is_err());
        assert!(resource_entry(&Resource::new("", "c1"), &["a"]).is_err());
        assert!(resource_entry(&Resource::new("course", ""), &["a"]).is_err());
        let many: Vec<String> = (0..51).map(|i| format!("a{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(resource_entry(&r, &many).is_err());
        assert!(validate_principal(&Principal::new("p", Vec::<String>::new())).is_err());
        assert!(validate_principal(&Principal::new("", ["user"])).is_err());
    }

    #[test]
    fn answers_fail_closed() {
        let r = Resource::new("course", "c1");
        let items: [(&Resource, &[&str]); 1] = [(&r, &["a", "b", "a"])];
        let ok = json!({"results": [{"resource": {"id": "c1", "kind": "course"},
            "actions": {"a": "EFFECT_ALLOW", "b": "EFFECT_DENY"}}]});
        assert_eq!(
            parse_check_answer(&ok, &items).unwrap(),
            [vec![Decision::Allow, Decision::Deny, Decision::Allow]]
        );
        let missing =
            json!({"results": [{"resource": {"id": "c1", "kind": "course"}, "actions": {"a": "EFFECT_ALLOW"}}]});
        assert!(parse_check_answer(&missing, &items).is_err());
        let other = json!({"results": [{"resource": {"id": "c2", "kind": "course"}, "actions": {}}]});
        assert!(parse_check_answer(&other, &items).is_err());
        assert!(parse_check_answer(&json!({}), &items).is_err());
    }
}
