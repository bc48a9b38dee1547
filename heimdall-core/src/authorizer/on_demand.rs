//! Grants on demand: a follower deciding locally that holds only the grants of the subjects it meets, each
//! fetched from heimdall-http on first use (`GET /api/v1/grants?subject=`, one request however many ask at
//! once), kept in a bounded cache, and dropped when heimdall-http's grants changes
//! (`GET /api/v1/grants/changes?since=`) name the subject. Its memory is bounded by the cache, not by the
//! number of users Heimdall knows.
//!
//! Nothing stale is served: a subject's entry is replaced only under moka's per-key lock, so a drop waits for
//! a fetch of that subject in flight and then marks it dropped at the change's version; a fetch must bring
//! grants at least as new as the last drop. When every subject is dropped at once (too many changed, or the
//! follower cannot tell what changed), entries fetched before that version are refetched when next used.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use moka::ops::compute::{CompResult, Op};

use super::follow::{RemoteMappings, get_json};
use super::grants::{GrantsChanges, SubjectGrants, decide};
use crate::error::{ErrorKind, Result};
use crate::pdp::{Decision, Pdp, Principal, Resource};

/// A cached subject.
#[derive(Debug, Clone)]
enum Held {
    /// Their grants, as fetched.
    Grants(Arc<SubjectGrants>),
    /// Dropped when their grants changed at this version: a fetch must bring grants at least this new.
    Dropped(i64),
}

/// A PDP deciding from grants fetched on demand (see the module docs). Before the follower has heard the
/// current change version ([`version`](Self::version) is `None`) it cannot decide: requests fail closed.
#[derive(Debug)]
pub struct OnDemandGrants {
    http: reqwest::Client,
    remote: RemoteMappings,
    cache: moka::future::Cache<String, Held, foldhash::fast::RandomState>,
    /// Grants fetched at a version older than this are refetched (set when every subject is dropped).
    floor: AtomicI64,
    /// The change version up to which the follower applied the grants changes: its grants epoch.
    applied: AtomicI64,
    /// Grants requests sent.
    fetches: AtomicU64,
}

impl OnDemandGrants {
    /// A PDP fetching from `remote` through `http`, holding at most `capacity` subjects.
    pub fn new(http: reqwest::Client, remote: RemoteMappings, capacity: u64) -> Arc<Self> {
        Arc::new(OnDemandGrants {
            http,
            remote,
            cache: moka::future::Cache::builder()
                .max_capacity(capacity)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            floor: AtomicI64::new(i64::MIN),
            applied: AtomicI64::new(i64::MIN),
            fetches: AtomicU64::new(0),
        })
    }

    /// The change version up to which the grants changes are applied, once the follower heard it.
    pub fn version(&self) -> Option<i64> {
        Some(self.applied.load(Ordering::Acquire)).filter(|v| *v != i64::MIN)
    }

    /// How many grants requests were sent so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// How many subjects are held (after pending evictions are done).
    pub async fn held(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }

    /// `subject`'s grants: cached, or fetched (once, however many ask at the same time).
    async fn grants_of(&self, subject: &str) -> Result<Arc<SubjectGrants>> {
        let floor = self.floor.load(Ordering::Acquire);
        if let Some(Held::Grants(g)) = self.cache.get(subject).await
            && g.version >= floor
        {
            return Ok(g);
        }
        let computed = self
            .cache
            .entry_by_ref(subject)
            .and_try_compute_with(|entry| async move {
                let floor = self.floor.load(Ordering::Acquire);
                let at_least = match entry.map(|e| e.into_value()) {
                    Some(Held::Grants(g)) if g.version >= floor => return Ok(Op::Nop),
                    Some(Held::Dropped(v)) => v.max(floor),
                    _ => floor,
                };
                let fetched = self.fetch(subject).await?;
                if fetched.version < at_least {
                    return Err(crate::Error::new(
                        ErrorKind::Unavailable,
                        format!(
                            "heimdall-http answered grants at version {}, older than the change at {at_least} it announced",
                            fetched.version
                        ),
                    ));
                }
                Ok(Op::Put(Held::Grants(Arc::new(fetched))))
            })
            .await?;
        match computed {
            CompResult::Inserted(e) | CompResult::ReplacedWith(e) | CompResult::Unchanged(e) => match e.into_value() {
                Held::Grants(g) => Ok(g),
                Held::Dropped(_) => Err(crate::Error::new(
                    ErrorKind::Unexpected,
                    "a dropped subject was kept as it was",
                )),
            },
            CompResult::StillNone(_) | CompResult::Removed(_) => Err(crate::Error::new(
                ErrorKind::Unexpected,
                "a subject's grants were neither kept nor fetched",
            )),
        }
    }

    async fn fetch(&self, subject: &str) -> Result<SubjectGrants> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        get_json(
            &self.http,
            &self.remote,
            "/api/v1/grants",
            &[("subject", subject)],
            "grants",
        )
        .await
    }

    /// Asks heimdall-http which subjects' grants changed since the version applied, drops them, and moves
    /// the version applied. The first time (nothing held yet) it only learns the current version.
    pub(super) async fn apply_changes(&self) -> Result<()> {
        let since = self.version().unwrap_or(i64::MAX);
        let since = since.to_string();
        let changes: GrantsChanges = get_json(
            &self.http,
            &self.remote,
            "/api/v1/grants/changes",
            &[("since", &since)],
            "grants changes",
        )
        .await?;
        self.drop_changed(&changes).await;
        self.applied.fetch_max(changes.version, Ordering::AcqRel);
        Ok(())
    }

    /// Drops what `changes` names (everything, when it names nothing in particular).
    async fn drop_changed(&self, changes: &GrantsChanges) {
        let Some(subjects) = &changes.subjects else {
            self.floor.fetch_max(changes.version, Ordering::AcqRel);
            self.cache.invalidate_all();
            return;
        };
        let version = changes.version;
        for subject in subjects {
            // Under the subject's lock: after a fetch in flight, never before it.
            self.cache
                .entry_by_ref(subject.as_str())
                .and_compute_with(|entry| async move {
                    match entry.map(|e| e.into_value()) {
                        None => Op::Nop,
                        Some(Held::Grants(g)) if g.version >= version => Op::Nop,
                        Some(Held::Dropped(v)) if v >= version => Op::Nop,
                        Some(_) => Op::Put(Held::Dropped(version)),
                    }
                })
                .await;
        }
    }
}

#[async_trait::async_trait]
impl Pdp for OnDemandGrants {
    async fn check(&self, principal: &Principal, resource: &Resource, actions: &[&str]) -> Result<Vec<Decision>> {
        if self.version().is_none() {
            return Err(crate::Error::new(
                ErrorKind::Unavailable,
                "the follower has not heard heimdall-http's change version yet",
            ));
        }
        let Ok(subject) = crate::pdp::subject_from_principal_id(&principal.id) else {
            return Ok(decide(None, resource, actions));
        };
        let grants = self.grants_of(subject.as_str()).await?;
        Ok(decide(Some(&grants.permissions), resource, actions))
    }

    fn holds_principal_policies(&self) -> bool {
        true
    }
}
