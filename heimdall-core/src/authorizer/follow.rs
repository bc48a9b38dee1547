//! Following heimdall-http: its mapping export, grants export and change feed, and the authorizers built on them.

use std::sync::Arc;
use std::time::Duration;

use super::{Authorizer, AuthorizerConfig, LocalPdp, MappingSource, OnDemandGrants, SnapshotCell};
use crate::Heimdall;
use crate::error::{ErrorKind, Result};
use crate::identity::TokenVerifier;
use crate::mapping::{MappingRule, Snapshot};
use crate::model::ActionName;
use crate::pdp::Pdp;

/// Who decides for an authorizer that follows heimdall-http.
#[derive(Debug, Clone)]
pub enum Decider {
    /// A PDP holding the pushed principal policies (a Cerbos).
    Pdp(Arc<dyn Pdp>),
    /// Locally, from heimdall-http's grants export ([`LocalPdp`]): every subject's grants held, no network
    /// call per request. For small deployments.
    Local,
    /// Locally, from grants fetched on demand ([`OnDemandGrants`]): at most `capacity` subjects held, one
    /// request on a subject's first use.
    OnDemand {
        /// Most subjects held.
        capacity: u64,
    },
}

/// The grants a follower deciding locally holds, kept current by [`follow_export`].
#[derive(Debug, Clone)]
pub enum FollowedGrants {
    /// Every subject's, from the grants export.
    Export(Arc<LocalPdp>),
    /// The subjects met, fetched on demand.
    OnDemand(Arc<OnDemandGrants>),
}

impl FollowedGrants {
    /// The change version the grants are current at, once known.
    pub fn version(&self) -> Option<i64> {
        match self {
            FollowedGrants::Export(local) => local.version(),
            FollowedGrants::OnDemand(grants) => grants.version(),
        }
    }

    /// The PDP deciding from them.
    fn pdp(&self) -> Arc<dyn Pdp> {
        match self {
            FollowedGrants::Export(local) => local.clone(),
            FollowedGrants::OnDemand(grants) => grants.clone(),
        }
    }

    /// Brings them up to heimdall-http's current change version.
    async fn refresh(&self, http: &reqwest::Client, remote: &RemoteMappings) -> Result<()> {
        match self {
            FollowedGrants::Export(local) => load_grants(http, remote, local).await,
            FollowedGrants::OnDemand(grants) => grants.apply_changes().await,
        }
    }
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
    /// Accept a `base_url` over plain `http://` to a host other than loopback (the credential and every
    /// mapping would cross the network unprotected). Off by default.
    pub allow_plain_http: bool,
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
            allow_plain_http: false,
        }
    }
}

/// One mapping as heimdall-http's export (`GET /api/v1/mappings/export`) lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Order among regular-expression mappings that match a request: the lower priority wins, then the lower
    /// id (see the precedence rules in [`crate::mapping`]).
    #[serde(default)]
    pub priority: i32,
}

impl From<&MappingRule> for ExportedMapping {
    fn from(rule: &MappingRule) -> Self {
        ExportedMapping {
            id: rule.id,
            method: rule.method.as_str().to_owned(),
            path_pattern: rule.pattern.as_str().to_owned(),
            action: rule.action.as_str().to_owned(),
            owner_group: rule.owner_group.as_ref().map(|g| g.as_str().to_owned()),
            priority: rule.priority,
        }
    }
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

/// One mapping as a binding's caller lists it (Python, the JVM): like [`ExportedMapping`], but its id (and its
/// owner and priority) may be left out; see [`MappingExport::numbered`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ListedMapping {
    /// The mapping's id; `None`: its position in the list, from 1.
    #[serde(default)]
    pub id: Option<i64>,
    /// `GET`, `POST`, … or `ANY`.
    pub method: String,
    /// The path pattern.
    pub path_pattern: String,
    /// The action it maps to.
    pub action: String,
    /// The group that owns it, if any.
    #[serde(default)]
    pub owner_group: Option<String>,
    /// Order among regular-expression mappings (lower first).
    #[serde(default)]
    pub priority: i32,
}

/// heimdall-http's mapping export: every mapping at one version (what the server writes and followers read).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MappingExport {
    /// The mapping version these mappings are at (also the export's `ETag`).
    pub version: i64,
    /// The mappings, by id.
    pub mappings: Vec<ExportedMapping>,
}

impl MappingExport {
    /// The export of `snapshot`: its mappings by id, at its version.
    pub fn of(snapshot: &Snapshot) -> MappingExport {
        let mut mappings: Vec<ExportedMapping> = snapshot.rules().iter().map(ExportedMapping::from).collect();
        mappings.sort_by_key(|m| m.id);
        MappingExport {
            version: snapshot.version(),
            mappings,
        }
    }

    /// The export of `listed` at `version`, each mapping without an id numbered by its position in the list,
    /// from 1 (the rule every binding's `Resolver` constructor follows).
    pub fn numbered(version: i64, listed: impl IntoIterator<Item = ListedMapping>) -> MappingExport {
        let mappings = listed
            .into_iter()
            .zip(1..)
            .map(|(m, position)| ExportedMapping {
                id: m.id.unwrap_or(position),
                method: m.method,
                path_pattern: m.path_pattern,
                action: m.action,
                owner_group: m.owner_group,
                priority: m.priority,
            })
            .collect();
        MappingExport { version, mappings }
    }

    /// The export's JSON body read; invalid input when it is not one.
    pub fn from_json(body: &[u8]) -> Result<MappingExport> {
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

/// What changed in the mappings between two versions (`GET /api/v1/mappings/changes?since=N`): what a follower
/// holding version `since` applies to reach `version`, instead of loading the whole export again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MappingDelta {
    /// The version the delta starts from (the follower's).
    pub since: i64,
    /// The version it reaches.
    pub version: i64,
    /// The mappings created or changed since `since`, as they are at `version`, by id.
    pub upserts: Vec<ExportedMapping>,
    /// The ids of the mappings deleted since `since`.
    pub removed: Vec<i64>,
    /// [`Snapshot::checksum`] at `version`, in hexadecimal: the follower checks what it built against it.
    pub checksum: String,
}

impl MappingDelta {
    /// The delta from `since` to `snapshot`, given the ids of every mapping changed in between (created,
    /// updated or deleted: those `snapshot` holds are upserts, the others removed).
    pub fn between(since: i64, snapshot: &Snapshot, changed: impl IntoIterator<Item = i64>) -> MappingDelta {
        let mut upserts = Vec::new();
        let mut removed = Vec::new();
        let mut changed: Vec<i64> = changed.into_iter().collect();
        changed.sort_unstable();
        changed.dedup();
        for id in changed {
            match snapshot.rule(id) {
                Some(rule) => upserts.push(ExportedMapping::from(rule)),
                None => removed.push(id),
            }
        }
        MappingDelta {
            since,
            version: snapshot.version(),
            upserts,
            removed,
            checksum: format!("{:016x}", snapshot.checksum()),
        }
    }

    /// `current` with the delta applied, at the delta's version; an error when the delta does not start at
    /// `current`'s version, when a mapping is invalid, or when the result's checksum is not the server's (then
    /// load the whole export).
    pub fn apply(self, current: &Snapshot) -> Result<Snapshot> {
        if self.since != current.version() {
            return Err(crate::Error::invalid(format!(
                "a delta from version {} does not apply to version {}",
                self.since,
                current.version()
            )));
        }
        let replaced: std::collections::HashSet<i64> = self
            .upserts
            .iter()
            .map(|m| m.id)
            .chain(self.removed.iter().copied())
            .collect();
        let mut rules: Vec<MappingRule> = current
            .rules()
            .iter()
            .filter(|r| !replaced.contains(&r.id))
            .cloned()
            .collect();
        for m in self.upserts {
            rules.push(m.into_rule()?);
        }
        let next = Snapshot::build(rules, self.version)?;
        let checksum = format!("{:016x}", next.checksum());
        if checksum != self.checksum {
            return Err(crate::Error::invalid(format!(
                "the mappings built from the delta to version {} differ from the server's (checksum {checksum}, not {})",
                self.version, self.checksum
            )));
        }
        Ok(next)
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

/// heimdall-http refused the follower's credential (a configuration error: retrying won't fix it).
fn credential_refused(what: &str, status: reqwest::StatusCode) -> crate::Error {
    crate::Error::new(
        ErrorKind::Config,
        format!("heimdall-http refused the credential for its {what} ({status})"),
    )
}

/// The versions the change feed reports (its `versions` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct FeedVersions {
    /// Grows with every change to mappings, memberships or grants.
    pub change_version: i64,
    /// The mapping export's version.
    pub mapping_version: i64,
    /// The newest change version the push worker has brought to Cerbos (absent from servers that predate it).
    #[serde(default)]
    pub pushed_version: Option<i64>,
}

/// Loads the export into `cell` (unless `If-None-Match` says it holds it already).
async fn load_export(http: &reqwest::Client, remote: &RemoteMappings, cell: &SnapshotCell) -> Result<()> {
    load_export_unless(http, remote, cell, true).await
}

/// Loads the export into `cell`; with `unless_held`, only when the server's version is not the cell's
/// (`If-None-Match`).
async fn load_export_unless(
    http: &reqwest::Client,
    remote: &RemoteMappings,
    cell: &SnapshotCell,
    unless_held: bool,
) -> Result<()> {
    use crate::error::Error;
    let mut request = http
        .get(format!("{}/api/v1/mappings/export", remote.base_url))
        .bearer_auth(&remote.credential)
        .timeout(remote.timeout);
    if let Some(current) = cell.get().filter(|_| unless_held) {
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
        401 | 403 => return Err(credential_refused("mapping export", response.status())),
        other => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("heimdall-http's export answered {other}"),
            ));
        }
    }
    let export: MappingExport = response.json().await.map_err(|e| {
        Error::new(ErrorKind::Unavailable, "heimdall-http's export is not readable").with_source(e.without_url())
    })?;
    cell.install(export.into_snapshot()?);
    cell.count_load(true);
    Ok(())
}

/// Brings `cell` to heimdall-http's mapping version: the changes since the snapshot it holds
/// (`/api/v1/mappings/changes?since=`), applied; the whole export when it holds none, when the server has no
/// delta from its version, or when the delta does not apply or builds mappings other than the server's.
async fn load_changes(http: &reqwest::Client, remote: &RemoteMappings, cell: &SnapshotCell) -> Result<()> {
    use crate::error::Error;
    let Some(current) = cell.get() else {
        return load_export(http, remote, cell).await;
    };
    let response = http
        .get(format!(
            "{}/api/v1/mappings/changes?since={}",
            remote.base_url,
            current.version()
        ))
        .bearer_auth(&remote.credential)
        .timeout(remote.timeout)
        .send()
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                "heimdall-http's mapping changes are unreachable",
            )
            .with_source(e.without_url())
        })?;
    match response.status().as_u16() {
        200 => {}
        401 | 403 => return Err(credential_refused("mapping changes", response.status())),
        // No delta from this version (or a server that predates deltas): the whole export.
        404 | 405 => return load_export(http, remote, cell).await,
        other => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("heimdall-http's mapping changes answered {other}"),
            ));
        }
    }
    let delta: MappingDelta = response.json().await.map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            "heimdall-http's mapping changes are not readable",
        )
        .with_source(e.without_url())
    })?;
    let version = delta.version;
    if version == current.version() && delta.upserts.is_empty() && delta.removed.is_empty() {
        // Nothing changed: the snapshot stands, if the server's mappings are what it holds.
        if delta.checksum == format!("{:016x}", current.checksum()) {
            cell.confirm();
            return Ok(());
        }
        tracing::warn!(
            version,
            "the mappings differ from the server's at the same version: loading the whole export"
        );
        return load_export_unless(http, remote, cell, false).await;
    }
    match delta.apply(&current) {
        Ok(next) => {
            cell.install(next);
            cell.count_load(false);
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, version, "the mapping delta did not apply: loading the whole export");
            load_export(http, remote, cell).await
        }
    }
}

/// Follows heimdall-http: loads the export into `cell`, then listens to the change feed and applies what changed
/// (the mapping delta since the cell's version; the whole export only when no delta leads there or it does not
/// check out) whenever the mapping version moves, telling `on_change` every versions event it hears of; asks
/// again at least every [`RemoteMappings::poll_interval`] (the fallback when the feed is silent or down), and
/// after a reconnection. While
/// heimdall-http is unreachable the cell keeps its last good snapshot (its [`SnapshotCell::age`] grows) and
/// the task retries with growing pauses (up to the poll interval). Runs until aborted, or until heimdall-http
/// refuses the credential (401/403): then it logs an error, marks the cell refused ([`SnapshotCell::refuse`]:
/// every request is refused, readiness is false) and stops.
///
/// With `grants`, they are brought up to date too (scope `grants:read`): the grants export loaded, or the
/// subjects whose grants changed dropped ([`FollowedGrants`]), before the mappings (no request sees a snapshot
/// before the grants it is decided with) and whenever the change version moves, before `on_change` hears of the
/// new version.
pub async fn follow_export(
    remote: RemoteMappings,
    cell: Arc<SnapshotCell>,
    grants: Option<FollowedGrants>,
    on_change: impl Fn(FeedVersions) + Send + Sync,
) {
    let http = match follower_client(&remote) {
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
            if let Some(grants) = &grants {
                grants.refresh(&http, &remote).await?;
            }
            load_changes(&http, &remote, &cell).await?;
            let mut feed = http
                .get(format!("{}/api/v1/changes/stream", remote.base_url))
                .bearer_auth(&remote.credential)
                .send()
                .await
                .map_err(|e| {
                    crate::Error::new(ErrorKind::Unavailable, "heimdall-http's change feed is unreachable")
                        .with_source(e.without_url())
                })?;
            if matches!(feed.status().as_u16(), 401 | 403) {
                return Err(credential_refused("change feed", feed.status()));
            }
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
                        if let Some(grants) = &grants {
                            grants.refresh(&http, &remote).await?;
                        }
                        load_changes(&http, &remote, &cell).await?;
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
                    let Ok(v) = serde_json::from_str::<FeedVersions>(data.trim()) else {
                        continue;
                    };
                    if cell.get().is_none_or(|s| s.version() < v.mapping_version) {
                        load_changes(&http, &remote, &cell).await?;
                    } else {
                        cell.confirm();
                    }
                    if let Some(grants) = &grants
                        && grants.version().is_none_or(|have| have < v.change_version)
                    {
                        grants.refresh(&http, &remote).await?;
                    }
                    on_change(v);
                }
            }
        };
        match round.await {
            Ok(()) => pause = Duration::from_millis(200),
            // A refused credential does not heal by retrying: say so once, loudly, and stay closed.
            Err(e) if e.kind() == ErrorKind::Config => {
                tracing::error!(error = %e, "heimdall-http refused this follower's credential: every request is refused until it is fixed and the service restarted");
                cell.refuse(e.message().to_owned());
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?pause, "following heimdall-http failed; serving the last good snapshot");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(remote.poll_interval);
            }
        }
    }
}

/// The HTTP client a follower asks heimdall-http with.
fn follower_client(remote: &RemoteMappings) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(remote.timeout)
        .build()
        .map_err(|e| crate::Error::new(ErrorKind::Config, "cannot build an HTTP client").with_source(e))
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
    /// heimdall-http's grants (the whole export, or on demand: [`AuthorizerConfig::grants_on_demand`]), which
    /// only a [`Source::Follow`] has (an embedded source without a PDP is
    /// a configuration error). Returns the follower task, if any (abort it to stop following).
    pub fn start(
        verifier: TokenVerifier,
        source: Source,
        pdp: Option<Arc<dyn Pdp>>,
        config: AuthorizerConfig,
    ) -> Result<(Authorizer, Option<tokio::task::JoinHandle<()>>)> {
        match source {
            Source::Follow(remote) => {
                let local = match config.grants_on_demand {
                    Some(capacity) => Decider::OnDemand { capacity },
                    None => Decider::Local,
                };
                let decider = pdp.map_or(local, Decider::Pdp);
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
    /// A configuration error when `remote.base_url` is not an `http(s)://` URL (plain `http://` only to
    /// loopback, unless [`RemoteMappings::allow_plain_http`]) or when called outside a Tokio runtime (the
    /// follower is a task).
    pub fn following(
        verifier: TokenVerifier,
        remote: RemoteMappings,
        decider: Decider,
        config: AuthorizerConfig,
    ) -> Result<(Authorizer, tokio::task::JoinHandle<()>)> {
        crate::config::check_transport(&remote.base_url, remote.allow_plain_http, "heimdall-http's URL")?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            crate::Error::new(
                ErrorKind::Config,
                "Authorizer::following must be called inside a Tokio runtime",
            )
        })?;
        if matches!(decider, Decider::OnDemand { capacity: 0 }) {
            return Err(crate::Error::new(
                ErrorKind::Config,
                "grants on demand need room for at least one subject (a capacity of 0)",
            ));
        }
        let cell = SnapshotCell::new();
        let local = |grants: FollowedGrants| (grants.pdp(), Some(grants));
        let (pdp, grants) = match decider {
            Decider::Pdp(pdp) => (pdp, None),
            Decider::Local => local(FollowedGrants::Export(LocalPdp::new())),
            Decider::OnDemand { capacity } => local(FollowedGrants::OnDemand(OnDemandGrants::new(
                follower_client(&remote)?,
                remote.clone(),
                capacity,
            ))),
        };
        let authorizer =
            Authorizer::with_local(verifier, MappingSource::Cell(cell.clone()), pdp, grants.clone(), config);
        let observer = authorizer.clone();
        let task = runtime.spawn(follow_export(remote, cell, grants, move |v| {
            observer.observe_versions(v.change_version, v.pushed_version)
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
        if let (Some(FollowedGrants::Export(mine)), Some(FollowedGrants::Export(theirs))) =
            (&self.inner.local, &from.inner.local)
        {
            mine.adopt(theirs);
        }
    }

    /// The grants this authorizer decides from when it decides locally ([`Decider::Local`],
    /// [`Decider::OnDemand`]).
    pub fn local_grants(&self) -> Option<&FollowedGrants> {
        self.inner.local.as_ref()
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

/// Loads heimdall-http's grants export into `local`.
async fn load_grants(http: &reqwest::Client, remote: &RemoteMappings, local: &LocalPdp) -> Result<()> {
    local.install(get_json(http, remote, "/api/v1/grants/export", &[], "grants export").await?);
    Ok(())
}

/// GETs `path` with `query` (encoded here) from heimdall-http with the follower's credential and reads its
/// JSON answer; `what` names it in errors. A refused credential (401, 403) is a [`ErrorKind::Config`] error,
/// anything else unavailable.
pub(super) async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    remote: &RemoteMappings,
    path: &str,
    query: &[(&str, &str)],
    what: &str,
) -> Result<T> {
    let mut url = reqwest::Url::parse(&format!("{}{path}", remote.base_url)).map_err(|e| {
        crate::Error::new(
            ErrorKind::Config,
            format!("heimdall-http's URL does not make a URL: {e}"),
        )
    })?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    let response = http
        .get(url)
        .bearer_auth(&remote.credential)
        .timeout(remote.timeout)
        .send()
        .await
        .map_err(|e| {
            crate::Error::new(ErrorKind::Unavailable, format!("heimdall-http's {what} is unreachable"))
                .with_source(e.without_url())
        })?;
    if matches!(response.status().as_u16(), 401 | 403) {
        return Err(credential_refused(what, response.status()));
    }
    if !response.status().is_success() {
        return Err(crate::Error::new(
            ErrorKind::Unavailable,
            format!("heimdall-http's {what} answered {}", response.status()),
        ));
    }
    response.json().await.map_err(|e| {
        crate::Error::new(
            ErrorKind::Unavailable,
            format!("heimdall-http's {what} is not readable"),
        )
        .with_source(e.without_url())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_mappings_without_an_id_take_their_position() {
        let listed = |id: Option<i64>, path: &str| ListedMapping {
            id,
            method: "GET".to_owned(),
            path_pattern: path.to_owned(),
            action: "a:read".to_owned(),
            owner_group: None,
            priority: 0,
        };
        let export = MappingExport::numbered(7, [listed(None, "/a"), listed(Some(40), "/b"), listed(None, "/c")]);
        assert_eq!(export.version, 7);
        let ids: Vec<i64> = export.mappings.iter().map(|m| m.id).collect();
        assert_eq!(ids, [1, 40, 3]);
        // An explicit id that repeats a position is a conflict of ids, refused when compiled.
        let clash = MappingExport::numbered(1, [listed(None, "/a"), listed(Some(1), "/b")]);
        assert!(clash.into_snapshot().is_err());
    }
}
