//! The per-request decision of a service that Heimdall protects: what heimdall-adapter (tower) and heimdall-py
//! (ASGI) wrap, so that both decide with the very same code.
//!
//! [`Authorizer::authorize`] takes the request's method, raw path and bearer token and answers, in this
//! order (DESIGN §6):
//! 1. the token is verified ([`TokenVerifier`]; a verified token is cached until its `exp`, and found only as
//!    exactly the same string) — else 401;
//! 2. the method is an upper-case token ([`crate::mapping::check_method`]: `get` is refused) and the path is
//!    canonical ([`crate::mapping::check_path`]) — else 400, never rewritten;
//! 3. `(method, path)` resolves on the local mapping snapshot — no snapshot yet: 503 (fail closed); no
//!    mapping: 403, unless [`Unmapped::AllowAndCount`];
//! 4. the PDP decides, asked exactly as [`crate::Heimdall::explain`] asks ([`adapter_check`]) — an error:
//!    503 (fail closed); a deny: 403.
//!
//! Decisions are cached (moka) by everything they read: subject, mapping version, mapping id, and the version
//! of the grants they were made on — the local grants snapshot's, or in Cerbos mode the *pushed version* the
//! feed reports (every change up to it is in Cerbos), so a decision Cerbos made before a change's push completed
//! is never served after the follower hears that it did. The cache is short-lived
//! ([`AuthorizerConfig::decision_ttl`]) and dropped as a whole when the change or pushed version moves
//! ([`Authorizer::observe_versions`]); an embedded authorizer reads the pushed version from its facade, checked
//! with its mapping snapshot.
//!
//! The mapping snapshot comes from a [`MappingSource`]: the embedded facade (services sharing Heimdall's
//! database), or a [`SnapshotCell`] that something else fills (an export and change feed follower).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::Heimdall;
use crate::error::{ErrorKind, Result};
use crate::identity::{TokenVerifier, VerifiedIdentity};
use crate::mapping::{MappingRule, PathRejection, Resolution, Snapshot, check_method, check_path};
use crate::model::{ActionName, Subject};
use crate::pdp::{Decision, Pdp, Principal, Resource, pack, principal_id, resource_kind_for_action};

mod follow;
mod grants;
mod on_demand;

pub use follow::{
    Decider, ExportedMapping, FeedVersions, FollowedGrants, ListedMapping, MappingDelta, MappingExport, RemoteMappings,
    Source, fetch_export, follow_export,
};
pub use grants::{GrantedPermission, GrantsChanges, GrantsSnapshot, LocalPdp, MAX_GRANTS_CHANGES, SubjectGrants};
pub use on_demand::OnDemandGrants;

/// Asks `pdp` whether `subject` may do what `rule` maps to, as an adapter asks in principal-policy mode: the
/// subject's principal id with the base role `user` alone (so only the principal policy Heimdall pushed for
/// them can allow), the action on a resource of the action's kind with id `mapping:<id>`.
pub async fn adapter_check(pdp: &dyn Pdp, subject: &Subject, rule: &MappingRule) -> Result<Decision> {
    let principal = Principal::new(principal_id(subject), [pack::USER_ROLE]);
    let resource = Resource::new(resource_kind_for_action(&rule.action), format!("mapping:{}", rule.id));
    let answer = pdp.check(&principal, &resource, &[rule.action.as_str()]).await?;
    Ok(answer.first().copied().unwrap_or(Decision::Deny))
}

/// The refusal (400) of a request whose method or path the resolver refuses.
fn rejected(why: PathRejection) -> Refusal {
    let what = if why == PathRejection::InvalidMethod {
        "method"
    } else {
        "path"
    };
    Refusal::new(400, "invalid_input", format!("{what} rejected: {}", why.as_str()))
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
    /// How many verified tokens are kept (each until its `exp`), counted in KiB of token: a token of up to
    /// 1 KiB counts once, a larger one once per KiB it starts.
    pub token_capacity: u64,
    /// Before the first mapping snapshot arrives: `false` (the default) refuses every request with 503 (fail
    /// closed); `true` lets authenticated requests through unchecked and counts them
    /// ([`AuthorizerStats::no_snapshot`]), for services that must start before Heimdall answers — but only
    /// for [`AuthorizerConfig::before_snapshot_deadline`] after the authorizer was built.
    pub allow_before_snapshot: bool,
    /// How long `allow_before_snapshot` lasts: past it, requests are refused (503) until a snapshot arrives.
    pub before_snapshot_deadline: Duration,
    /// Deciding locally while following heimdall-http ([`Authorizer::start`] without a PDP): `None` (the
    /// default) loads every subject's grants from the grants export ([`Decider::Local`]); `Some(n)` fetches a
    /// subject's grants on first use and holds at most `n` subjects ([`Decider::OnDemand`]), so that memory
    /// is bounded by `n`, not by the number of users.
    pub grants_on_demand: Option<u64>,
}

impl Default for AuthorizerConfig {
    fn default() -> Self {
        AuthorizerConfig {
            unmapped: Unmapped::Deny,
            decision_ttl: Duration::from_secs(5),
            decision_capacity: 100_000,
            token_capacity: 100_000,
            allow_before_snapshot: false,
            before_snapshot_deadline: Duration::from_secs(30),
            grants_on_demand: None,
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

    fn refused(&self) -> Option<Arc<String>> {
        match self {
            MappingSource::Embedded(_) => None,
            MappingSource::Cell(c) => c.refused(),
        }
    }

    /// Whether the follower gave up (no copy of why: the request path asks this).
    fn is_refused(&self) -> bool {
        match self {
            MappingSource::Embedded(_) => false,
            MappingSource::Cell(c) => c.refused.load().is_some(),
        }
    }
}

/// A mapping snapshot that a follower installs and requests read, lock-free; with the time it was last
/// confirmed (its age is what a frontend reports as staleness), and whether the follower gave up because
/// heimdall-http refused its credential (then every request is refused).
#[derive(Debug, Default)]
pub struct SnapshotCell {
    snapshot: ArcSwapOption<Snapshot>,
    confirmed: ArcSwapOption<Instant>,
    refused: ArcSwapOption<String>,
    /// Whole exports installed.
    exports: AtomicU64,
    /// Deltas applied.
    deltas: AtomicU64,
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

    /// Counts a snapshot installed from a whole export (`true`) or a delta (`false`).
    pub fn count_load(&self, whole: bool) {
        let counter = if whole { &self.exports } else { &self.deltas };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// How many whole exports and how many deltas the follower installed.
    pub fn loads(&self) -> (u64, u64) {
        (
            self.exports.load(Ordering::Relaxed),
            self.deltas.load(Ordering::Relaxed),
        )
    }

    /// Marks the current snapshot as confirmed now (the source said nothing changed).
    pub fn confirm(&self) {
        self.confirmed.store(Some(Arc::new(Instant::now())));
    }

    /// How long ago the snapshot was last confirmed; `None` before the first one.
    pub fn age(&self) -> Option<Duration> {
        self.confirmed.load().as_ref().map(|t| t.elapsed())
    }

    /// Marks the cell as given up: heimdall-http refused the follower's credential (`why`). Every request is
    /// refused from now on; nothing clears it but a new authorizer with a working credential.
    pub fn refuse(&self, why: String) {
        self.refused.store(Some(Arc::new(why)));
    }

    /// Why the follower gave up, if it did ([`SnapshotCell::refuse`]).
    pub fn refused(&self) -> Option<Arc<String>> {
        self.refused.load_full()
    }

    /// Takes `other`'s snapshot, with the time it was confirmed, if this cell is still empty (a snapshot this
    /// cell's own follower installs meanwhile is never replaced).
    pub fn adopt(&self, other: &SnapshotCell) {
        let Some(snapshot) = other.get() else { return };
        let previous = self.snapshot.compare_and_swap(&None::<Arc<Snapshot>>, Some(snapshot));
        if previous.is_none() {
            self.confirmed
                .compare_and_swap(&None::<Arc<Instant>>, other.confirmed.load_full());
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
/// mapping version), and the version of the grants it was decided on ([`Authorizer::grants_epoch`]), read
/// before the decision: a decision made on older grants is never found again once newer ones are known, even
/// when it is stored after they arrived.
#[derive(Debug, Clone)]
struct DecisionKey {
    /// Whose decision: keyed (hashed and compared) by the identity's subject alone, so that every token of one
    /// subject shares the decision; an `Arc`, so that making a key copies no string.
    identity: Arc<VerifiedIdentity>,
    mapping_version: i64,
    mapping_id: i64,
    grants_epoch: i64,
}

impl DecisionKey {
    fn subject(&self) -> &str {
        self.identity.claims().subject.as_str()
    }
}

impl PartialEq for DecisionKey {
    fn eq(&self, other: &Self) -> bool {
        (self.mapping_version, self.mapping_id, self.grants_epoch)
            == (other.mapping_version, other.mapping_id, other.grants_epoch)
            && self.subject() == other.subject()
    }
}

impl Eq for DecisionKey {}

impl std::hash::Hash for DecisionKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.subject().hash(state);
        self.mapping_version.hash(state);
        self.mapping_id.hash(state);
        self.grants_epoch.hash(state);
    }
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
    /// The grants a local decider reads (when it is one): their version is the grants epoch.
    local: Option<FollowedGrants>,
    config: AuthorizerConfig,
    /// Verified tokens, by the token itself: looked up by hashing it with a fast seeded hash and comparing it
    /// whole, so a token is found only as exactly the string that was verified.
    tokens: moka::sync::Cache<Arc<str>, Arc<VerifiedIdentity>, foldhash::fast::RandomState>,
    decisions: moka::sync::Cache<DecisionKey, Decision>,
    change_version: AtomicI64,
    /// The highest pushed version the feed reported (Cerbos mode's grants epoch).
    pushed_version: AtomicI64,
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

impl moka::Expiry<Arc<str>, Arc<VerifiedIdentity>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
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
        local: Option<FollowedGrants>,
        config: AuthorizerConfig,
    ) -> Self {
        let tokens = moka::sync::Cache::builder()
            .max_capacity(config.token_capacity)
            .weigher(|token: &Arc<str>, _: &Arc<VerifiedIdentity>| {
                u32::try_from(token.len() / 1024 + 1).unwrap_or(u32::MAX)
            })
            .expire_after(UntilExpiry)
            .build_with_hasher(foldhash::fast::RandomState::default());
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
                pushed_version: AtomicI64::new(i64::MIN),
                counters: Counters::default(),
                last_warning: AtomicU64::new(0),
                started: Instant::now(),
            }),
        }
    }

    /// Tells the authorizer the change version a feed reported: when it moved, every cached decision is
    /// dropped (memberships or grants may have changed).
    pub fn observe_change_version(&self, version: i64) {
        self.observe_versions(version, None);
    }

    /// Tells the authorizer the versions a feed reported. When the change version moves, every cached
    /// decision is dropped; when the pushed version moves (Cerbos now holds newer principal policies), so
    /// are they, and decisions made before are never served again: they are keyed by the version they were
    /// made at.
    pub fn observe_versions(&self, change_version: i64, pushed_version: Option<i64>) {
        let before = self.inner.change_version.fetch_max(change_version, Ordering::AcqRel);
        let mut moved = change_version > before;
        if let Some(pushed) = pushed_version {
            moved |= pushed > self.inner.pushed_version.fetch_max(pushed, Ordering::AcqRel);
        }
        if moved {
            self.inner.decisions.invalidate_all();
        }
    }

    /// The highest pushed version the feed reported (Cerbos holds every change up to it), if any.
    pub fn pushed_version(&self) -> Option<i64> {
        Some(self.inner.pushed_version.load(Ordering::Acquire)).filter(|v| *v != i64::MIN)
    }

    /// The version of the grants a decision made now is made on: the local grants' version (the snapshot's, or
    /// the change version up to which grants on demand are current) when deciding locally; otherwise the newest pushed version known (a PDP holding the pushed policies answers
    /// for at least that version).
    fn grants_epoch(&self) -> i64 {
        match (&self.inner.local, &self.inner.mappings) {
            (Some(local), _) => local.version().unwrap_or(i64::MIN),
            (None, MappingSource::Embedded(h)) => h.pushed_version_seen(),
            (None, MappingSource::Cell(_)) => self.inner.pushed_version.load(Ordering::Acquire),
        }
    }

    /// Whether the authorizer can decide: it holds a mapping snapshot and its follower has not given up (a
    /// frontend's readiness).
    pub fn is_ready(&self) -> bool {
        !self.inner.mappings.is_refused()
            && match &self.inner.mappings {
                MappingSource::Embedded(_) => true,
                MappingSource::Cell(c) => c.snapshot.load().is_some(),
            }
    }

    /// Why the follower gave up, when heimdall-http refused its credential (401/403): it then stops asking and
    /// every request is refused. `None` while it follows (or for an embedded source).
    pub fn credential_refused(&self) -> Option<String> {
        self.inner.mappings.refused().map(|why| why.as_str().to_owned())
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
        if let Some(found) = self.inner.tokens.get(token) {
            return Ok(found);
        }
        let verified = Arc::new(self.inner.verifier.verify(token).await?);
        self.inner.tokens.insert(Arc::from(token), verified.clone());
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
        if self.inner.mappings.is_refused() {
            return self.deny(Refusal::new(
                503,
                "unavailable",
                "heimdall-http refused this service's credential: refusing every request until it is fixed",
            ));
        }
        let Some(snapshot) = self.inner.mappings.snapshot() else {
            // Without a snapshot the method and path are still checked (as `resolve` checks them below), so
            // that `allow_before_snapshot` never lets a request through that a router could read otherwise.
            if let Err(why) = check_method(method).and_then(|()| check_path(raw_path).map(|_| ())) {
                return self.deny(rejected(why));
            }
            self.inner.counters.no_snapshot.fetch_add(1, Ordering::Relaxed);
            if self.inner.config.allow_before_snapshot
                && self.inner.started.elapsed() < self.inner.config.before_snapshot_deadline
            {
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
                "no mapping snapshot is loaded: refusing every request until one is",
            ));
        };
        let (rule, params) = match snapshot.resolve(method, raw_path) {
            Resolution::Rejected(why) => return self.deny(rejected(why)),
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
            identity: Arc::clone(&identity),
            mapping_version: snapshot.version(),
            mapping_id: rule.id,
            grants_epoch: self.grants_epoch(),
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
