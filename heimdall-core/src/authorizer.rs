//! The per-request decision of a service that Heimdall protects: what heimdall-adapter (tower) and heimdall-py
//! (ASGI) wrap, so that both decide with the very same code.
//!
//! [`Authorizer::authorize`] takes the request's method, raw path and bearer token and answers, in this
//! order (DESIGN §6):
//! 1. the token is verified ([`TokenVerifier`]; a verified token is cached by its SHA-256 until its `exp`) —
//!    else 401;
//! 2. the path is canonical ([`crate::mapping::check_path`]) — else 400, never rewritten;
//! 3. `(method, path)` resolves on the local mapping snapshot — no snapshot yet: 503 (fail closed); no
//!    mapping: 403, unless [`Unmapped::AllowAndCount`];
//! 4. the PDP decides, asked exactly as [`crate::Heimdall::explain`] asks ([`adapter_check`]) — an error:
//!    503 (fail closed); a deny: 403.
//!
//! Decisions are cached (moka) by everything they read: subject, mapping version, mapping id, action; the
//! cache is short-lived ([`AuthorizerConfig::decision_ttl`]) and dropped as a whole when the change version
//! moves ([`Authorizer::observe_change_version`]), so a revoked membership stops being allowed within one
//! change-feed round trip.
//!
//! The mapping snapshot comes from a [`MappingSource`]: the embedded facade (services sharing Heimdall's
//! database), or a [`SnapshotCell`] that something else fills (an export and change feed follower).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use aws_lc_rs::digest;

use crate::Heimdall;
use crate::error::{ErrorKind, Result};
use crate::identity::{TokenVerifier, VerifiedIdentity};
use crate::mapping::{MappingRule, Resolution, Snapshot};
use crate::model::{ActionName, Subject};
use crate::pdp::{Decision, Pdp, Principal, Resource, pack, principal_id, resource_kind_for_action};

/// Asks `pdp` whether `subject` may do what `rule` maps to, as an adapter asks in principal-policy mode: the
/// subject's principal id with the base role `user` alone (so only the principal policy Heimdall pushed for
/// them can allow), the action on a resource of the action's kind with id `mapping:<id>`.
pub async fn adapter_check(pdp: &dyn Pdp, subject: &Subject, rule: &MappingRule) -> Result<Decision> {
    let principal = Principal::new(principal_id(subject), [pack::USER_ROLE]);
    let resource = Resource::new(resource_kind_for_action(&rule.action), format!("mapping:{}", rule.id));
    let answer = pdp.check(&principal, &resource, &[rule.action.as_str()]).await?;
    Ok(answer.first().copied().unwrap_or(Decision::Deny))
}

/// What to do with a request no mapping covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmapped {
    /// Refuse it (403). The default.
    #[default]
    Deny,
    /// Let it through and count it (for a gradual rollout): [`AuthorizerStats::unmapped_allowed`].
    AllowAndCount,
}

/// How an [`Authorizer`] behaves.
#[derive(Debug, Clone)]
pub struct AuthorizerConfig {
    /// Requests no mapping covers.
    pub unmapped: Unmapped,
    /// How long a decision is reused (it is also dropped when the change version moves).
    pub decision_ttl: Duration,
    /// Most decisions kept.
    pub decision_capacity: u64,
    /// Most verified tokens kept (each until its `exp`).
    pub token_capacity: u64,
    /// Before the first mapping snapshot arrives: `false` (the default) refuses every request with 503 (fail
    /// closed); `true` lets authenticated requests through unchecked and counts them
    /// ([`AuthorizerStats::no_snapshot`]), for services that must start before Heimdall answers.
    pub allow_before_snapshot: bool,
}

impl Default for AuthorizerConfig {
    fn default() -> Self {
        AuthorizerConfig {
            unmapped: Unmapped::Deny,
            decision_ttl: Duration::from_secs(5),
            decision_capacity: 100_000,
            token_capacity: 100_000,
            allow_before_snapshot: false,
        }
    }
}

/// Where the mapping snapshot comes from.
#[derive(Clone)]
pub enum MappingSource {
    /// The facade's own snapshot (it follows the database by itself).
    Embedded(Heimdall),
    /// A snapshot installed from elsewhere; empty until the first one arrives.
    Cell(Arc<SnapshotCell>),
}

impl std::fmt::Debug for MappingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MappingSource::Embedded(_) => f.write_str("Embedded"),
            MappingSource::Cell(c) => f.debug_tuple("Cell").field(c).finish(),
        }
    }
}

impl MappingSource {
    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        match self {
            MappingSource::Embedded(h) => Some(h.mapping_snapshot()),
            MappingSource::Cell(c) => c.get(),
        }
    }
}

/// A mapping snapshot that a follower installs and requests read, lock-free; with the time it was last
/// confirmed (its age is what a frontend reports as staleness).
#[derive(Debug, Default)]
pub struct SnapshotCell {
    snapshot: ArcSwapOption<Snapshot>,
    confirmed: ArcSwapOption<Instant>,
}

impl SnapshotCell {
    /// An empty cell: requests fail closed until a snapshot is installed.
    pub fn new() -> Arc<Self> {
        Arc::new(SnapshotCell::default())
    }

    /// The current snapshot, if any.
    pub fn get(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.load_full()
    }

    /// Installs `snapshot` unless the cell holds a newer one, and marks the cell confirmed now.
    pub fn install(&self, snapshot: Snapshot) {
        let newer = self.get().is_none_or(|old| old.version() <= snapshot.version());
        if newer {
            self.snapshot.store(Some(Arc::new(snapshot)));
        }
        self.confirm();
    }

    /// Marks the current snapshot as confirmed now (the source said nothing changed).
    pub fn confirm(&self) {
        self.confirmed.store(Some(Arc::new(Instant::now())));
    }

    /// How long ago the snapshot was last confirmed; `None` before the first one.
    pub fn age(&self) -> Option<Duration> {
        self.confirmed.load().as_ref().map(|t| t.elapsed())
    }

    /// Takes `other`'s snapshot, with the time it was confirmed, while this cell is empty.
    pub fn adopt(&self, other: &SnapshotCell) {
        if self.get().is_none()
            && let Some(snapshot) = other.get()
        {
            self.confirmed.store(other.confirmed.load_full());
            self.snapshot.store(Some(snapshot));
        }
    }
}

/// A request the authorizer let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who: the token's subject.
    pub subject: Subject,
    /// The action the request needs; `None` for an unmapped request let through ([`Unmapped::AllowAndCount`]).
    pub action: Option<ActionName>,
    /// The mapping that decided.
    pub mapping_id: Option<i64>,
    /// What the mapping's pattern captured.
    pub params: Vec<(String, String)>,
}

/// Why a request is refused: an HTTP status, a stable code and a message (never holding the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 401, 403 or 503.
    pub status: u16,
    /// `invalid_input`, `unauthenticated`, `forbidden` or `unavailable` (the project's error codes).
    pub code: &'static str,
    /// For humans.
    pub message: String,
}

impl Refusal {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    fn from_error(e: &crate::Error) -> Self {
        match e.kind() {
            ErrorKind::Unauthenticated => Refusal::new(401, "unauthenticated", e.message()),
            ErrorKind::InvalidInput => Refusal::new(400, "invalid_input", e.message()),
            ErrorKind::Forbidden => Refusal::new(403, "forbidden", e.message()),
            _ => Refusal::new(
                503,
                "unavailable",
                "the authorization service is unavailable; try again later",
            ),
        }
    }
}

/// What the authorizer counted since it started (for a host's metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthorizerStats {
    /// Requests let through.
    pub allowed: u64,
    /// Requests refused by the policy or as unmapped.
    pub denied: u64,
    /// Unmapped requests let through ([`Unmapped::AllowAndCount`]).
    pub unmapped_allowed: u64,
    /// Requests refused because the PDP could not decide.
    pub pdp_errors: u64,
    /// Requests that came before the first snapshot (refused, unless `allow_before_snapshot`).
    pub no_snapshot: u64,
}

#[derive(Debug, Default)]
struct Counters {
    allowed: AtomicU64,
    denied: AtomicU64,
    unmapped_allowed: AtomicU64,
    pdp_errors: AtomicU64,
    no_snapshot: AtomicU64,
}

/// The decision cache's key: everything a decision read (a mapping's action is fixed by its id at one
/// mapping version).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DecisionKey {
    subject: Subject,
    mapping_version: i64,
    mapping_id: i64,
}

/// The per-request logic (see the module docs). Cheap to clone; clones share caches and counters.
#[derive(Clone)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: TokenVerifier,
    mappings: MappingSource,
    pdp: Arc<dyn Pdp>,
    /// The grants a local decider reads (when it is one), for [`Authorizer::adopt`].
    local: Option<Arc<LocalPdp>>,
    config: AuthorizerConfig,
    tokens: moka::sync::Cache<[u8; 32], Arc<VerifiedIdentity>>,
    decisions: moka::sync::Cache<DecisionKey, Decision>,
    change_version: AtomicI64,
    counters: Counters,
    /// When the last "PDP could not decide" warning was logged (ms since `started`): at most one a second.
    last_warning: AtomicU64,
    started: Instant,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("mappings", &self.inner.mappings)
            .field("pdp", &self.inner.pdp)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Keeps a verified token until its `exp`.
struct UntilExpiry;

impl moka::Expiry<[u8; 32], Arc<VerifiedIdentity>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<VerifiedIdentity>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let left = u64::try_from(value.expires_at()).unwrap_or(0).saturating_sub(now);
        Some(Duration::from_secs(left))
    }
}

impl Authorizer {
    /// An authorizer verifying tokens with `verifier`, resolving on `mappings` and deciding with `pdp` (a
    /// Cerbos that holds the principal policies Heimdall pushes).
    pub fn new(verifier: TokenVerifier, mappings: MappingSource, pdp: Arc<dyn Pdp>, config: AuthorizerConfig) -> Self {
        Self::with_local(verifier, mappings, pdp, None, config)
    }

    fn with_local(
        verifier: TokenVerifier,
        mappings: MappingSource,
        pdp: Arc<dyn Pdp>,
        local: Option<Arc<LocalPdp>>,
        config: AuthorizerConfig,
    ) -> Self {
        let tokens = moka::sync::Cache::builder()
            .max_capacity(config.token_capacity)
            .expire_after(UntilExpiry)
            .build();
        let decisions = moka::sync::Cache::builder()
            .max_capacity(config.decision_capacity)
            .time_to_live(config.decision_ttl)
            .build();
        Authorizer {
            inner: Arc::new(Inner {
                verifier,
                mappings,
                pdp,
                local,
                config,
                tokens,
                decisions,
                change_version: AtomicI64::new(i64::MIN),
                counters: Counters::default(),
                last_warning: AtomicU64::new(0),
                started: Instant::now(),
            }),
        }
    }

    /// Tells the authorizer the change version a feed reported: when it moved, every cached decision is
    /// dropped (memberships or grants may have changed).
    pub fn observe_change_version(&self, version: i64) {
        let before = self.inner.change_version.fetch_max(version, Ordering::AcqRel);
        if version > before {
            self.inner.decisions.invalidate_all();
        }
    }

    /// What was counted so far.
    pub fn stats(&self) -> AuthorizerStats {
        let c = &self.inner.counters;
        AuthorizerStats {
            allowed: c.allowed.load(Ordering::Relaxed),
            denied: c.denied.load(Ordering::Relaxed),
            unmapped_allowed: c.unmapped_allowed.load(Ordering::Relaxed),
            pdp_errors: c.pdp_errors.load(Ordering::Relaxed),
            no_snapshot: c.no_snapshot.load(Ordering::Relaxed),
        }
    }

    async fn identity(&self, token: &str) -> Result<Arc<VerifiedIdentity>> {
        let mut key = [0u8; 32];
        key.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
        if let Some(found) = self.inner.tokens.get(&key) {
            return Ok(found);
        }
        let verified = Arc::new(self.inner.verifier.verify(token).await?);
        self.inner.tokens.insert(key, verified.clone());
        Ok(verified)
    }

    /// Logs a PDP failure, at most once a second (every failure is counted in the stats).
    fn warn_bounded(&self, e: &crate::Error) {
        let now = u64::try_from(self.inner.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.inner.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 1000)
            && self
                .inner
                .last_warning
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                error = %e,
                failures = self.inner.counters.pdp_errors.load(Ordering::Relaxed),
                "the PDP could not decide: refusing requests (fail closed)"
            );
        }
    }

    fn deny(&self, refusal: Refusal) -> std::result::Result<Grant, Refusal> {
        self.inner.counters.denied.fetch_add(1, Ordering::Relaxed);
        Err(refusal)
    }

    /// Decides one request (see the module docs): `raw_path` as received (percent-encoded; a query string is
    /// allowed and ignored), `bearer` the token without `Bearer `.
    pub async fn authorize(
        &self,
        method: &str,
        raw_path: &str,
        bearer: Option<&str>,
    ) -> std::result::Result<Grant, Refusal> {
        let Some(token) = bearer.filter(|t| !t.is_empty()) else {
            return self.deny(Refusal::new(
                401,
                "unauthenticated",
                "missing Authorization: Bearer credential",
            ));
        };
        let identity = match self.identity(token).await {
            Ok(i) => i,
            Err(e) => return self.deny(Refusal::from_error(&e)),
        };
        let subject = identity.claims().subject.clone();
        let Some(snapshot) = self.inner.mappings.snapshot() else {
            self.inner.counters.no_snapshot.fetch_add(1, Ordering::Relaxed);
            if self.inner.config.allow_before_snapshot {
                self.inner.counters.allowed.fetch_add(1, Ordering::Relaxed);
                return Ok(Grant {
                    subject,
                    action: None,
                    mapping_id: None,
                    params: Vec::new(),
                });
            }
            return self.deny(Refusal::new(
                503,
                "unavailable",
                "no mapping snapshot is loaded yet: refusing every request until one is",
            ));
        };
        let (rule, params) = match snapshot.resolve(method, raw_path) {
            Resolution::Rejected(why) => {
                return self.deny(Refusal::new(
                    400,
                    "invalid_input",
                    format!("path rejected: {}", why.as_str()),
                ));
            }
            Resolution::NoMatch => {
                return match self.inner.config.unmapped {
                    Unmapped::Deny => self.deny(Refusal::new(403, "forbidden", "no mapping covers this request")),
                    Unmapped::AllowAndCount => {
                        self.inner.counters.unmapped_allowed.fetch_add(1, Ordering::Relaxed);
                        self.inner.counters.allowed.fetch_add(1, Ordering::Relaxed);
                        Ok(Grant {
                            subject,
                            action: None,
                            mapping_id: None,
                            params: Vec::new(),
                        })
                    }
                };
            }
            // The rule is borrowed from the snapshot this request holds: nothing is copied until the grant.
            Resolution::Matched(m) => (m.rule(), m.params()),
        };
        let key = DecisionKey {
            subject: subject.clone(),
            mapping_version: snapshot.version(),
            mapping_id: rule.id,
        };
        let decision = match self.inner.decisions.get(&key) {
            Some(d) => d,
            None => match adapter_check(self.inner.pdp.as_ref(), &subject, rule).await {
                Ok(d) => {
                    self.inner.decisions.insert(key, d);
                    d
                }
                Err(e) => {
                    self.inner.counters.pdp_errors.fetch_add(1, Ordering::Relaxed);
                    self.warn_bounded(&e);
                    return self.deny(Refusal::new(
                        503,
                        "unavailable",
                        "the policy decision point could not decide; try again later",
                    ));
                }
            },
        };
        if decision != Decision::Allow {
            return self.deny(Refusal::new(
                403,
                "forbidden",
                format!("{subject} may not {}", rule.action),
            ));
        }
        self.inner.counters.allowed.fetch_add(1, Ordering::Relaxed);
        Ok(Grant {
            subject,
            action: Some(rule.action.clone()),
            mapping_id: Some(rule.id),
            params: params.map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        })
    }
}

/// Who decides for an authorizer that follows heimdall-http.
#[derive(Debug, Clone)]
pub enum Decider {
    /// A PDP holding the pushed principal policies (a Cerbos).
    Pdp(Arc<dyn Pdp>),
    /// Locally, from heimdall-http's grants export ([`LocalPdp`]): no network call per request.
    Local,
}

/// Where a [`follow_export`] task reads mappings: heimdall-http's export and change feed.
#[derive(Clone)]
pub struct RemoteMappings {
    /// heimdall-http's base URL (`http://heimdall:8080`).
    pub base_url: String,
    /// An API key with `mappings:read`, or the static API token.
    pub credential: String,
    /// The fallback: the export is asked again at least this often, also when the feed says nothing.
    pub poll_interval: Duration,
    /// Time limit of one export request (and of connecting to the feed).
    pub timeout: Duration,
}

impl std::fmt::Debug for RemoteMappings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteMappings")
            .field("base_url", &self.base_url)
            .field("credential", &"<redacted>")
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl RemoteMappings {
    /// Following `base_url` with `credential`, polling every 30 s as the fallback.
    pub fn new(base_url: impl Into<String>, credential: impl Into<String>) -> Self {
        RemoteMappings {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            credential: credential.into(),
            poll_interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

/// One mapping as heimdall-http's export (`GET /api/v1/mappings/export`) lists it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ExportedMapping {
    /// The mapping's id.
    pub id: i64,
    /// `GET`, `POST`, … or `ANY`.
    pub method: String,
    /// The path pattern (`/courses/:id`).
    pub path_pattern: String,
    /// The action it maps to.
    pub action: String,
    /// The group that owns it, if any.
    #[serde(default)]
    pub owner_group: Option<String>,
    /// Higher wins among equally specific patterns.
    #[serde(default)]
    pub priority: i32,
}

impl ExportedMapping {
    /// The rule, every field validated as the database would.
    pub fn into_rule(self) -> Result<MappingRule> {
        use crate::mapping::{Method, PathPattern};
        use crate::model::GroupName;
        Ok(MappingRule {
            id: self.id,
            method: Method::parse(&self.method)?,
            pattern: PathPattern::parse(&self.path_pattern)?,
            action: ActionName::parse(self.action)?,
            owner_group: self.owner_group.map(GroupName::parse).transpose()?,
            priority: self.priority,
        })
    }
}

/// heimdall-http's mapping export: every mapping at one version.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Export {
    /// The mapping version the export shows.
    pub version: i64,
    /// Every mapping.
    pub mappings: Vec<ExportedMapping>,
}

impl Export {
    /// The export's JSON body read; invalid input when it is not one.
    pub fn from_json(body: &[u8]) -> Result<Export> {
        serde_json::from_slice(body).map_err(|e| crate::Error::invalid(format!("not a mapping export: {e}")))
    }

    /// The compiled snapshot (a pattern the resolver can't hold is invalid input, as it is when written).
    pub fn into_snapshot(self) -> Result<Snapshot> {
        let rules = self
            .mappings
            .into_iter()
            .map(ExportedMapping::into_rule)
            .collect::<Result<Vec<_>>>()?;
        Snapshot::build(rules, self.version)
    }
}

/// Fetches heimdall-http's mapping export once and compiles it (what a follower does first).
pub async fn fetch_export(remote: &RemoteMappings) -> Result<Arc<Snapshot>> {
    let http = reqwest::Client::builder()
        .connect_timeout(remote.timeout)
        .build()
        .map_err(|e| crate::Error::new(ErrorKind::Config, "cannot build an HTTP client").with_source(e))?;
    let cell = SnapshotCell::new();
    load_export(&http, remote, &cell).await?;
    cell.get()
        .ok_or_else(|| crate::Error::new(ErrorKind::Unexpected, "the export loaded no snapshot"))
}

#[derive(serde::Deserialize)]
struct Versions {
    change_version: i64,
    mapping_version: i64,
}

/// Loads the export into `cell` (unless `If-None-Match` says it holds it already).
async fn load_export(http: &reqwest::Client, remote: &RemoteMappings, cell: &SnapshotCell) -> Result<()> {
    use crate::error::Error;
    let mut request = http
        .get(format!("{}/api/v1/mappings/export", remote.base_url))
        .bearer_auth(&remote.credential)
        .timeout(remote.timeout);
    if let Some(current) = cell.get() {
        request = request.header("if-none-match", format!("\"m{}\"", current.version()));
    }
    let response = request.send().await.map_err(|e| {
        Error::new(ErrorKind::Unavailable, "heimdall-http's export is unreachable").with_source(e.without_url())
    })?;
    match response.status().as_u16() {
        304 => {
            cell.confirm();
            return Ok(());
        }
        200 => {}
        401 | 403 => {
            return Err(Error::new(
                ErrorKind::Config,
                format!("heimdall-http refused the export's credential ({})", response.status()),
            ));
        }
        other => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("heimdall-http's export answered {other}"),
            ));
        }
    }
    let export: Export = response.json().await.map_err(|e| {
        Error::new(ErrorKind::Unavailable, "heimdall-http's export is not readable").with_source(e.without_url())
    })?;
    cell.install(export.into_snapshot()?);
    Ok(())
}

/// Follows heimdall-http: loads the export into `cell`, then listens to the change feed and reloads whenever
/// the mapping version moves, telling `on_change` every change version it hears of; asks the export again
/// at least every [`RemoteMappings::poll_interval`] (the fallback when the feed is silent or down). While
/// heimdall-http is unreachable the cell keeps its last good snapshot (its [`SnapshotCell::age`] grows) and
/// the task retries with growing pauses (up to the poll interval). Runs until aborted.
///
/// With `grants`, the grants export (`/api/v1/grants/export`, scope `grants:read`) is loaded into it too,
/// before the mappings (no request sees a snapshot before the grants it is decided with) and whenever the change
/// version moves, before `on_change` hears of the new version.
pub async fn follow_export(
    remote: RemoteMappings,
    cell: Arc<SnapshotCell>,
    grants: Option<Arc<LocalPdp>>,
    on_change: impl Fn(i64) + Send + Sync,
) {
    let http = match reqwest::Client::builder().connect_timeout(remote.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client that follows heimdall-http");
            return;
        }
    };
    let mut pause = Duration::from_millis(200);
    loop {
        let round = async {
            // Grants first: a request sees a snapshot (and is decided) only once the grants it needs are in.
            if let Some(local) = &grants {
                load_grants(&http, &remote, local).await?;
            }
            load_export(&http, &remote, &cell).await?;
            let mut feed = http
                .get(format!("{}/api/v1/changes/stream", remote.base_url))
                .bearer_auth(&remote.credential)
                .send()
                .await
                .map_err(|e| {
                    crate::Error::new(ErrorKind::Unavailable, "heimdall-http's change feed is unreachable")
                        .with_source(e.without_url())
                })?;
            if !feed.status().is_success() {
                return Err(crate::Error::new(
                    ErrorKind::Unavailable,
                    format!("heimdall-http's change feed answered {}", feed.status()),
                ));
            }
            let mut buffer = String::new();
            loop {
                let chunk = match tokio::time::timeout(remote.poll_interval, feed.chunk()).await {
                    Err(_) => {
                        // Silent for a whole interval: ask the exports anyway.
                        if let Some(local) = &grants {
                            load_grants(&http, &remote, local).await?;
                        }
                        load_export(&http, &remote, &cell).await?;
                        continue;
                    }
                    Ok(Ok(Some(chunk))) => chunk,
                    Ok(Ok(None)) => return Ok(()),
                    Ok(Err(e)) => {
                        return Err(crate::Error::new(ErrorKind::Unavailable, "the change feed broke off")
                            .with_source(e.without_url()));
                    }
                };
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_str::<Versions>(data.trim()) else {
                        continue;
                    };
                    if cell.get().is_none_or(|s| s.version() < v.mapping_version) {
                        load_export(&http, &remote, &cell).await?;
                    } else {
                        cell.confirm();
                    }
                    if let Some(local) = &grants
                        && local.version().is_none_or(|have| have < v.change_version)
                    {
                        load_grants(&http, &remote, local).await?;
                    }
                    on_change(v.change_version);
                }
            }
        };
        match round.await {
            Ok(()) => pause = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?pause, "following heimdall-http failed; serving the last good snapshot");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(remote.poll_interval);
            }
        }
    }
}

/// Where an authorizer built by [`Authorizer::start`] reads its mappings.
#[derive(Clone)]
pub enum Source {
    /// heimdall-http's export and change feed ([`Authorizer::following`]).
    Follow(RemoteMappings),
    /// The embedded facade, for services sharing Heimdall's database.
    Embedded(Heimdall),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Follow(remote) => f.debug_tuple("Follow").field(remote).finish(),
            Source::Embedded(_) => f.write_str("Embedded"),
        }
    }
}

impl Authorizer {
    /// The one way frontends (the tower layer, the Python module) build an authorizer from their settings:
    /// `pdp` asks a PDP (a Cerbos holding the pushed principal policies); `None` decides locally from
    /// heimdall-http's grants export, which only a [`Source::Follow`] has (an embedded source without a PDP is
    /// a configuration error). Returns the follower task, if any (abort it to stop following).
    pub fn start(
        verifier: TokenVerifier,
        source: Source,
        pdp: Option<Arc<dyn Pdp>>,
        config: AuthorizerConfig,
    ) -> Result<(Authorizer, Option<tokio::task::JoinHandle<()>>)> {
        match source {
            Source::Follow(remote) => {
                let decider = pdp.map_or(Decider::Local, Decider::Pdp);
                let (authorizer, task) = Authorizer::following(verifier, remote, decider, config)?;
                Ok((authorizer, Some(task)))
            }
            Source::Embedded(heimdall) => {
                let pdp = pdp.ok_or_else(|| {
                    crate::Error::new(
                        ErrorKind::Config,
                        "an embedded authorizer needs a PDP (local decisions come from heimdall-http's grants export)",
                    )
                })?;
                Ok((
                    Authorizer::new(verifier, MappingSource::Embedded(heimdall), pdp, config),
                    None,
                ))
            }
        }
    }

    /// An authorizer whose mappings (and, with [`Decider::Local`], grants) follow heimdall-http (see
    /// [`follow_export`]), and the task that follows (abort it to stop). Until the first export arrives every
    /// request is refused with 503.
    ///
    /// A configuration error when `remote.base_url` is not an `http(s)://` URL or when called outside a Tokio
    /// runtime (the follower is a task).
    pub fn following(
        verifier: TokenVerifier,
        remote: RemoteMappings,
        decider: Decider,
        config: AuthorizerConfig,
    ) -> Result<(Authorizer, tokio::task::JoinHandle<()>)> {
        let parsed = reqwest::Url::parse(&remote.base_url).map_err(|e| {
            crate::Error::new(
                ErrorKind::Config,
                format!("heimdall-http's URL {:?} is invalid: {e}", remote.base_url),
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(crate::Error::new(
                ErrorKind::Config,
                format!("heimdall-http's URL {:?} must be http:// or https://", remote.base_url),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            crate::Error::new(
                ErrorKind::Config,
                "Authorizer::following must be called inside a Tokio runtime",
            )
        })?;
        let cell = SnapshotCell::new();
        let (pdp, grants): (Arc<dyn Pdp>, _) = match decider {
            Decider::Pdp(pdp) => (pdp, None),
            Decider::Local => {
                let local = LocalPdp::new();
                (local.clone(), Some(local))
            }
        };
        let authorizer =
            Authorizer::with_local(verifier, MappingSource::Cell(cell.clone()), pdp, grants.clone(), config);
        let observer = authorizer.clone();
        let task = runtime.spawn(follow_export(remote, cell, grants, move |v| {
            observer.observe_change_version(v)
        }));
        Ok((authorizer, task))
    }

    /// Takes over `from`'s mapping snapshot (with the time it was confirmed) and local grants wherever this
    /// authorizer has none yet: a process forked from one that held them decides at once, on what its parent
    /// decided with, while its own follower catches up.
    pub fn adopt(&self, from: &Authorizer) {
        if let (MappingSource::Cell(mine), MappingSource::Cell(theirs)) = (&self.inner.mappings, &from.inner.mappings) {
            mine.adopt(theirs);
        }
        if let (Some(mine), Some(theirs)) = (&self.inner.local, &from.inner.local) {
            mine.adopt(theirs);
        }
    }

    /// How long ago the mapping snapshot was last confirmed against its source; `None` before the first.
    pub fn snapshot_age(&self) -> Option<Duration> {
        match &self.inner.mappings {
            MappingSource::Embedded(h) => Some(h.mapping_snapshot_status().age),
            MappingSource::Cell(c) => c.age(),
        }
    }

    /// The snapshot requests are resolved on, if any.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.inner.mappings.snapshot()
    }
}

// ---- Local decisions ---------------------------------------------------------------------------------------

/// One permission a subject holds, as their pushed principal policy states it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantedPermission {
    /// The resource kind (the action's name before its last `:`).
    pub resource_kind: String,
    /// The action.
    pub action: String,
    /// `allow` or `deny`.
    pub effect: String,
}

/// Every subject's effective permissions at one change version: what the principal policies Heimdall pushes
/// say, for deciding without a network call per request ([`LocalPdp`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantsSnapshot {
    /// The change version read before the grants (a later change makes a newer version).
    pub version: i64,
    /// Subject → permissions (subjects holding none are left out).
    pub subjects: std::collections::BTreeMap<String, Vec<GrantedPermission>>,
}

impl Heimdall {
    /// Every subject's effective permissions, for adapters deciding locally (`grants:read`).
    pub async fn grants_snapshot(&self) -> Result<GrantsSnapshot> {
        // The version first: the grants read after it are at least that new, and any later change moves it.
        let version = self.change_version().await?;
        let mut out = GrantsSnapshot {
            version,
            subjects: Default::default(),
        };
        let mut after: Option<String> = None;
        loop {
            let page = self.store().subjects(after.as_deref(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.as_str().to_owned());
            let names: Vec<String> = page.iter().map(|s| s.as_str().to_owned()).collect();
            for (subject, permissions) in self.store().effective_permissions(&names).await? {
                if permissions.is_empty() {
                    continue;
                }
                let granted = permissions
                    .into_iter()
                    .map(|p| GrantedPermission {
                        resource_kind: p.resource_kind,
                        action: p.action.as_str().to_owned(),
                        effect: p.effect.as_str().to_owned(),
                    })
                    .collect();
                out.subjects.insert(subject, granted);
            }
            if page.len() < 1000 {
                break;
            }
        }
        Ok(out)
    }
}

/// A PDP that decides adapters' questions from a [`GrantsSnapshot`], as Cerbos decides them from the pushed
/// principal policies: for the principal's subject, a `deny` of the action on the resource's kind beats an
/// `allow`; nothing stated means deny; reserved kinds (Heimdall's own) grant nothing. Before its first
/// snapshot it cannot decide (an error: requests fail closed).
#[derive(Debug, Default)]
pub struct LocalPdp {
    grants: ArcSwapOption<GrantsSnapshot>,
}

impl LocalPdp {
    /// An empty local PDP.
    pub fn new() -> Arc<Self> {
        Arc::new(LocalPdp::default())
    }

    /// Installs `grants` unless a newer snapshot is installed.
    pub fn install(&self, grants: GrantsSnapshot) {
        if self.version().is_none_or(|v| v <= grants.version) {
            self.grants.store(Some(Arc::new(grants)));
        }
    }

    /// The installed snapshot's version.
    pub fn version(&self) -> Option<i64> {
        self.grants.load().as_ref().map(|g| g.version)
    }

    /// Takes `other`'s grants while this PDP has none.
    pub fn adopt(&self, other: &LocalPdp) {
        if self.version().is_none()
            && let Some(grants) = other.grants.load_full()
        {
            self.grants.store(Some(grants));
        }
    }
}

#[async_trait::async_trait]
impl Pdp for LocalPdp {
    async fn check(&self, principal: &Principal, resource: &Resource, actions: &[&str]) -> Result<Vec<Decision>> {
        let Some(grants) = self.grants.load_full() else {
            return Err(crate::Error::new(
                ErrorKind::Unavailable,
                "no grants snapshot is loaded yet",
            ));
        };
        let held = crate::pdp::subject_from_principal_id(&principal.id)
            .ok()
            .and_then(|s| grants.subjects.get(s.as_str()));
        Ok(actions
            .iter()
            .map(|action| {
                let Some(held) = held else { return Decision::Deny };
                if crate::pdp::principal::is_reserved_resource_kind(&resource.kind) {
                    return Decision::Deny;
                }
                let mut allowed = false;
                for p in held
                    .iter()
                    .filter(|p| p.resource_kind == resource.kind && p.action == *action)
                {
                    if p.effect == "deny" {
                        return Decision::Deny;
                    }
                    allowed |= p.effect == "allow";
                }
                if allowed { Decision::Allow } else { Decision::Deny }
            })
            .collect())
    }

    fn holds_principal_policies(&self) -> bool {
        true
    }
}

/// Loads heimdall-http's grants export into `local`.
async fn load_grants(http: &reqwest::Client, remote: &RemoteMappings, local: &LocalPdp) -> Result<()> {
    let response = http
        .get(format!("{}/api/v1/grants/export", remote.base_url))
        .bearer_auth(&remote.credential)
        .timeout(remote.timeout)
        .send()
        .await
        .map_err(|e| {
            crate::Error::new(ErrorKind::Unavailable, "heimdall-http's grants export is unreachable")
                .with_source(e.without_url())
        })?;
    if !response.status().is_success() {
        return Err(crate::Error::new(
            ErrorKind::Unavailable,
            format!("heimdall-http's grants export answered {}", response.status()),
        ));
    }
    let grants: GrantsSnapshot = response.json().await.map_err(|e| {
        crate::Error::new(ErrorKind::Unavailable, "heimdall-http's grants export is not readable")
            .with_source(e.without_url())
    })?;
    local.install(grants);
    Ok(())
}
