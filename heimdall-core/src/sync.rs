//! Keeping Cerbos' principal policies in step with the database.
//!
//! Every change that alters a user's effective permissions puts the user into the outbox in the same
//! transaction (see the store). A [`PushWorker`] claims due users in batches, recomputes each one's principal
//! policy from the database, and pushes it (or deletes it, when it would be empty) through a [`PolicyAdmin`]
//! such as the Cerbos Admin API. Failures are retried with exponential backoff and jitter; a rejection (HTTP
//! 400) is permanent and recorded on the row until the user changes again or a reconciliation repairs it.
//! [`Heimdall::reconcile`] compares everything Cerbos holds as Heimdall's with what the database implies and
//! hands the users that differ to the worker: the worker is the only writer of principal policies, so an
//! older state can never be written over a newer one.
//!
//! Only Heimdall's own policies are ever overwritten or deleted: every policy Heimdall writes carries the
//! annotation [`crate::pdp::principal::HEIMDALL_ANNOTATION`], and a policy with the same id but without it is
//! reported as a conflict and left alone. A policy Cerbos rejects fails closed: the user's previous policy is
//! deleted (no grants until fixed), and the error stays on the outbox row.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use backon::BackoffBuilder;
use serde_json::Value;

use crate::error::{ErrorKind, Result};
use crate::heimdall::Heimdall;
use crate::model::Subject;
use crate::pdp;
use crate::pdp::principal::{PRINCIPAL_POLICY_MARK, has_heimdall_mark};
use crate::store::{Completion, OutboxItem};

/// Largest number of policies one write carries (the Cerbos Admin API's limit).
pub const MAX_PUT_BATCH: usize = 100;
/// Largest number of policy ids one delete carries (the Cerbos Admin API's limit).
pub const MAX_DELETE_BATCH: usize = 20;

/// Where principal policies go: the Cerbos Admin API, in production.
#[async_trait]
pub trait PolicyAdmin: Send + Sync + std::fmt::Debug {
    /// Adds or replaces policies (at most [`MAX_PUT_BATCH`]).
    async fn put_policies(&self, policies: &[Value]) -> Result<()>;
    /// Deletes policies by id (at most [`MAX_DELETE_BATCH`]); unknown ids are not an error.
    async fn delete_policies(&self, ids: &[String]) -> Result<()>;
    /// The ids of all policies marked as Heimdall's.
    async fn list_heimdall_policy_ids(&self) -> Result<Vec<String>>;
    /// The policies with these ids that exist.
    async fn get_policies(&self, ids: &[String]) -> Result<Vec<Value>>;
    /// Makes the PDP reread its policy store now (PDPs sharing one store don't see each other's writes
    /// until they do).
    async fn reload_store(&self) -> Result<()>;
}

#[async_trait]
impl PolicyAdmin for pdp::CerbosClient {
    async fn put_policies(&self, policies: &[Value]) -> Result<()> {
        pdp::CerbosClient::put_policies(self, policies).await
    }

    async fn delete_policies(&self, ids: &[String]) -> Result<()> {
        pdp::CerbosClient::delete_policies(self, ids).await.map(|_| ())
    }

    async fn list_heimdall_policy_ids(&self) -> Result<Vec<String>> {
        self.list_heimdall_principal_policies().await
    }

    async fn get_policies(&self, ids: &[String]) -> Result<Vec<Value>> {
        pdp::CerbosClient::get_policies(self, ids).await
    }

    async fn reload_store(&self) -> Result<()> {
        pdp::CerbosClient::reload_store(self).await
    }
}

/// Whether an error from a [`PolicyAdmin`] is worth retrying. A rejected request (invalid input) is not.
fn is_permanent(e: &crate::Error) -> bool {
    e.kind() == ErrorKind::InvalidInput
}

/// Why a push failed, as the outbox row records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Try again later, with backoff.
    Transient,
    /// Cerbos rejected the policy: failed for good (until the user changes or a reconciliation).
    Rejected,
    /// The id holds a policy Heimdall did not write: failed for good, left alone.
    Foreign,
}

impl Failure {
    fn of(e: &crate::Error) -> Failure {
        if is_permanent(e) {
            Failure::Rejected
        } else {
            Failure::Transient
        }
    }
}

/// How the push worker behaves.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Users claimed per round (and policies per Admin API write, at most [`MAX_PUT_BATCH`]).
    pub batch_size: usize,
    /// How long a claim is a worker's own before another worker may take the user over, unless the worker
    /// renews it: it does, every third of this, while it pushes. So a worker that dies (kill -9) loses its
    /// claims within this time, and another worker pushes those users at its next poll.
    pub lease: Duration,
    /// How long an idle worker waits before looking again when nothing woke it (other processes' changes).
    pub poll_interval: Duration,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay (the spec's `SYNC_RETRY_INTERVAL_SECONDS`).
    pub max_backoff: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            batch_size: MAX_PUT_BATCH,
            lease: Duration::from_secs(2),
            poll_interval: Duration::from_millis(200),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// What one round of pushing did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Users claimed.
    pub claimed: usize,
    /// Policies written.
    pub pushed: usize,
    /// Policies deleted (users left with no permissions).
    pub deleted: usize,
    /// Users whose push failed and will be retried.
    pub retrying: usize,
    /// Users whose push was rejected for good (their previous policy is deleted: fail closed).
    pub rejected: usize,
    /// Users whose policy id holds a policy Heimdall did not write: left alone, recorded as failed.
    pub foreign: usize,
    /// Pushes that outlived their lease: the user was made due again, so the current state lands last.
    pub lease_lost: usize,
    /// The last failure's message, if any failed.
    pub last_error: Option<String>,
}

/// What a reconciliation found. It writes nothing to Cerbos itself: the users whose policy differs are handed
/// to the push worker through the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Users whose policy was compared.
    pub users_checked: usize,
    /// Users whose policy was missing or different, queued for a push.
    pub to_push: usize,
    /// Heimdall policies that nothing in the database implies any more, queued for deletion.
    pub to_delete: usize,
    /// Policy ids held by a policy Heimdall did not write: conflicts, left alone.
    pub foreign: usize,
    /// Heimdall policies whose id names no valid subject (left alone).
    pub failed: usize,
}

impl ReconcileReport {
    /// Whether Cerbos already held exactly what the database implies (foreign policies aside).
    pub fn in_sync(&self) -> bool {
        self.to_push == 0 && self.to_delete == 0 && self.failed == 0
    }
}

/// The policy each of `subjects` should have in Cerbos (`None`: no permissions), read in one query.
async fn desired_policies(h: &Heimdall, subjects: &[Subject]) -> Result<Vec<Option<Value>>> {
    let names: Vec<String> = subjects.iter().map(|s| s.as_str().to_owned()).collect();
    let mut permissions = h.store().effective_permissions(&names).await?;
    Ok(subjects
        .iter()
        .map(|subject| {
            let triples: Vec<(String, crate::model::ActionName, crate::model::Effect)> = permissions
                .remove(subject.as_str())
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.resource_kind, p.action, p.effect))
                .collect();
            pdp::principal_policy(subject, &triples)
        })
        .collect())
}

/// The (resource, action, effect) rules of a principal policy, for comparing what Cerbos holds with what it
/// should hold regardless of rule names and of fields Cerbos adds.
fn rules_of(policy: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    let rules = policy.pointer("/principalPolicy/rules").and_then(Value::as_array);
    for rule in rules.into_iter().flatten() {
        let resource = rule.get("resource").and_then(Value::as_str).unwrap_or_default();
        for action in rule.get("actions").and_then(Value::as_array).into_iter().flatten() {
            let name = action.get("action").and_then(Value::as_str).unwrap_or_default();
            let effect = action.get("effect").and_then(Value::as_str).unwrap_or_default();
            out.insert((resource.to_owned(), name.to_owned(), effect.to_owned()));
        }
    }
    out
}

/// A round's claim on its users: the lease they carry in the outbox, renewed while the round works (the value
/// is the fencing token every completion is checked against).
struct Lease {
    until: std::sync::Mutex<chrono::DateTime<chrono::Utc>>,
    subjects: Vec<String>,
}

impl Lease {
    fn new(until: chrono::DateTime<chrono::Utc>, subjects: Vec<String>) -> Self {
        Lease {
            until: std::sync::Mutex::new(until),
            subjects,
        }
    }

    fn current(&self) -> chrono::DateTime<chrono::Utc> {
        *self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, until: chrono::DateTime<chrono::Utc>) {
        *self.until.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = until;
    }

    /// `item` under the claim's current lease.
    fn held(&self, item: &OutboxItem) -> OutboxItem {
        OutboxItem {
            lease_until: self.current(),
            ..item.clone()
        }
    }
}

/// Claims users from the outbox and pushes their principal policies.
#[derive(Debug, Clone)]
pub struct PushWorker {
    heimdall: Heimdall,
    admin: Arc<dyn PolicyAdmin>,
    config: SyncConfig,
    reload: Vec<Arc<dyn PolicyAdmin>>,
    /// One flag per PDP in `reload`: its last reload failed, so it is tried again every round until one works.
    owed: Arc<[AtomicBool]>,
}

impl PushWorker {
    /// A worker pushing `heimdall`'s outbox to `admin`.
    pub fn new(heimdall: Heimdall, admin: Arc<dyn PolicyAdmin>, config: SyncConfig) -> Self {
        PushWorker {
            heimdall,
            admin,
            config,
            reload: Vec::new(),
            owed: Arc::new([]),
        }
    }

    /// After every round that changed policies, and before its pushes count as done, makes each of `pdps`
    /// reload its store (`GET /admin/store/reload?wait=true`), all at once: for PDPs that share the policy
    /// database `admin` writes to and would otherwise not see the change (the PDP `admin` talks to sees its own
    /// writes; behind a balancer, list every PDP). A failed reload is logged and tried again at every later round (each
    /// `poll_interval` at most), until that PDP has reloaded: a PDP that was down or restarting while the last
    /// change was pushed catches up without a further push.
    pub fn reload_after_push(mut self, pdps: Vec<Arc<dyn PolicyAdmin>>) -> Self {
        self.owed = pdps.iter().map(|_| AtomicBool::new(false)).collect();
        self.reload = pdps;
        self
    }

    /// Reloads every PDP (`all`), or those whose last reload failed; all at once.
    async fn reload_pdps(&self, all: bool) {
        let mut reloads = tokio::task::JoinSet::new();
        for (i, pdp) in self.reload.iter().enumerate() {
            if !(all || self.owed[i].load(Ordering::Acquire)) {
                continue;
            }
            let (pdp, owed) = (pdp.clone(), self.owed.clone());
            reloads.spawn(async move {
                // A hung PDP holds the round up for RELOAD_WAIT at most: its reload is owed, and tried next round.
                let failed = match tokio::time::timeout(RELOAD_WAIT, pdp.reload_store()).await {
                    Ok(Ok(())) => false,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "a PDP could not reload its policy store; trying again next round");
                        true
                    }
                    Err(_) => {
                        tracing::warn!(
                            wait = ?RELOAD_WAIT,
                            "a PDP did not reload its policy store in time; trying again next round"
                        );
                        true
                    }
                };
                owed[i].store(failed, Ordering::Release);
            });
        }
        while reloads.join_next().await.is_some() {}
    }

    fn retry_at(&self, attempts: i32) -> chrono::DateTime<chrono::Utc> {
        let delay = backon::ExponentialBuilder::default()
            .with_min_delay(self.config.min_backoff)
            .with_max_delay(self.config.max_backoff)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(usize::try_from(attempts).unwrap_or(0))
            .unwrap_or(self.config.max_backoff);
        self.heimdall.now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::seconds(60))
    }

    async fn retry(
        &self,
        lease: &Lease,
        item: &OutboxItem,
        error: &crate::Error,
        failure: Failure,
        report: &mut PushReport,
    ) {
        let next = self.retry_at(item.attempts);
        let message = format!("{}: {}", error.kind(), error.message());
        report.last_error = Some(message.clone());
        let permanent = failure != Failure::Transient;
        match failure {
            Failure::Transient => {
                report.retrying += 1;
                tracing::warn!(subject = %item.subject, attempts = item.attempts + 1, error = %message, "principal policy push failed; will retry");
            }
            Failure::Rejected => {
                report.rejected += 1;
                tracing::error!(subject = %item.subject, error = %message, "Cerbos rejected a principal policy; not retrying");
            }
            Failure::Foreign => {
                report.foreign += 1;
                tracing::error!(subject = %item.subject, "a policy Heimdall did not write holds this user's id: not touching it");
            }
        }
        if let Err(e) = self
            .heimdall
            .store()
            .outbox_retry(&lease.held(item), next, &message, permanent)
            .await
        {
            tracing::warn!(subject = %item.subject, error = %e, "could not record a failed push; the lease will expire");
        }
    }

    async fn complete(&self, lease: &Lease, items: &[&OutboxItem], report: &mut PushReport) {
        let items: Vec<OutboxItem> = items.iter().map(|i| lease.held(i)).collect();
        match self.heimdall.store().outbox_complete(&items, self.heimdall.now()).await {
            Ok(completions) => {
                for (item, completion) in items.iter().zip(completions) {
                    if completion == Completion::LeaseLost {
                        report.lease_lost += 1;
                        tracing::warn!(subject = %item.subject, "a push outlived its lease; the user is pushed again");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not mark pushes done; they will be pushed again");
            }
        }
    }

    /// The ids among `ids` that hold a policy Heimdall did not write.
    async fn foreign_ids(&self, ids: &[String]) -> Result<std::collections::HashSet<String>> {
        let mut foreign = std::collections::HashSet::new();
        for chunk in ids.chunks(MAX_PUT_BATCH) {
            for policy in self.admin.get_policies(chunk).await? {
                if !has_heimdall_mark(&policy, PRINCIPAL_POLICY_MARK)
                    && let Some(id) = policy_id_of(&policy)
                {
                    foreign.insert(id);
                }
            }
        }
        Ok(foreign)
    }

    /// Fails a rejected push closed: the user's previous (possibly more permissive) policy is deleted.
    async fn fail_closed(&self, item: &OutboxItem) {
        let Ok(subject) = Subject::parse(item.subject.clone()) else {
            return;
        };
        match self.admin.delete_policies(&[pdp::policy_id(&subject)]).await {
            Ok(()) => {
                tracing::warn!(subject = %item.subject, "deleted the previous policy of a user whose new one was rejected")
            }
            Err(e) => {
                tracing::error!(subject = %item.subject, error = %e, "could not delete the previous policy of a user whose new one was rejected")
            }
        }
    }

    /// Writes a batch of policies (the written users join `done`); when Cerbos rejects the batch, tries each on
    /// its own so that one bad policy does not hold back the others.
    async fn put(
        &self,
        lease: &Lease,
        batch: Vec<(OutboxItem, Value)>,
        done: &mut Vec<OutboxItem>,
        report: &mut PushReport,
    ) {
        let policies: Vec<Value> = batch.iter().map(|(_, p)| p.clone()).collect();
        match self.admin.put_policies(&policies).await {
            Ok(()) => {
                report.pushed += batch.len();
                done.extend(batch.into_iter().map(|(i, _)| i));
            }
            Err(e) if is_permanent(&e) && batch.len() > 1 => {
                for one in batch {
                    Box::pin(self.put(lease, vec![one], done, report)).await;
                }
            }
            Err(e) => {
                let failure = Failure::of(&e);
                for (item, _) in &batch {
                    if failure == Failure::Rejected {
                        self.fail_closed(item).await;
                    }
                    self.retry(lease, item, &e, failure, report).await;
                }
            }
        }
    }

    /// Deletes a batch of policies (the users join `done`).
    async fn delete(
        &self,
        lease: &Lease,
        batch: Vec<(OutboxItem, String)>,
        done: &mut Vec<OutboxItem>,
        report: &mut PushReport,
    ) {
        let ids: Vec<String> = batch.iter().map(|(_, id)| id.clone()).collect();
        match self.admin.delete_policies(&ids).await {
            Ok(()) => {
                report.deleted += batch.len();
                done.extend(batch.into_iter().map(|(i, _)| i));
            }
            Err(e) => {
                for (item, _) in &batch {
                    self.retry(lease, item, &e, Failure::of(&e), report).await;
                }
            }
        }
    }

    /// The end of a lease taken (or renewed) now.
    fn lease_until(&self) -> chrono::DateTime<chrono::Utc> {
        self.heimdall.now() + chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::seconds(2))
    }

    /// One round: reloads the PDPs whose last reload failed, then claims due users and pushes or deletes their
    /// policies. While it works, the claim is renewed every third of [`SyncConfig::lease`], so a worker that
    /// dies loses its claims within one lease and another worker takes its users over.
    pub async fn run_once(&self) -> Result<PushReport> {
        self.reload_pdps(false).await;
        let now = self.heimdall.now();
        let limit = i64::try_from(self.config.batch_size.clamp(1, MAX_PUT_BATCH)).unwrap_or(1);
        let items = self
            .heimdall
            .store()
            .outbox_claim(now, self.lease_until(), limit)
            .await?;
        let Some(first) = items.first() else {
            return Ok(PushReport::default());
        };
        let lease = Lease::new(first.lease_until, items.iter().map(|i| i.subject.clone()).collect());
        let work = self.push_claimed(&lease, items);
        tokio::pin!(work);
        let every = (self.config.lease / 3).max(Duration::from_millis(10));
        loop {
            tokio::select! {
                report = &mut work => return Ok(report),
                () = tokio::time::sleep(every) => self.renew(&lease).await,
            }
        }
    }

    /// Renews the claim behind `lease` (the rows still carrying it); a failure is logged, and the claim lapses
    /// unless a later renewal works.
    async fn renew(&self, lease: &Lease) {
        let held = lease.current();
        let renewed = self.lease_until();
        match self.heimdall.store().outbox_renew(&lease.subjects, held, renewed).await {
            Ok(stored) => lease.set(stored),
            Err(e) => tracing::warn!(error = %e, "could not renew a push claim; it lapses unless renewed in time"),
        }
    }

    /// Pushes the policies of the users claimed under `lease`.
    async fn push_claimed(&self, lease: &Lease, items: Vec<OutboxItem>) -> PushReport {
        let mut report = PushReport {
            claimed: items.len(),
            ..PushReport::default()
        };
        let mut puts = Vec::new();
        let mut deletes = Vec::new();
        let mut valid = Vec::with_capacity(items.len());
        for item in items {
            match Subject::parse(item.subject.clone()) {
                Ok(subject) => valid.push((item, subject)),
                Err(e) => self.retry(lease, &item, &e, Failure::Rejected, &mut report).await,
            }
        }
        let subjects: Vec<Subject> = valid.iter().map(|(_, s)| s.clone()).collect();
        match desired_policies(&self.heimdall, &subjects).await {
            Ok(policies) => {
                for ((item, subject), policy) in valid.into_iter().zip(policies) {
                    match policy {
                        Some(policy) => puts.push((item, policy)),
                        None => deletes.push((item, pdp::policy_id(&subject))),
                    }
                }
            }
            Err(e) => {
                for (item, _) in &valid {
                    self.retry(lease, item, &e, Failure::Transient, &mut report).await;
                }
                return report;
            }
        }
        // Never overwrite or delete a policy Heimdall did not write.
        let ids: Vec<String> = puts
            .iter()
            .filter_map(|(_, p)| policy_id_of(p))
            .chain(deletes.iter().map(|(_, id)| id.clone()))
            .collect();
        if !ids.is_empty() {
            let foreign = match self.foreign_ids(&ids).await {
                Ok(foreign) => foreign,
                Err(e) => {
                    for item in puts.iter().map(|(i, _)| i).chain(deletes.iter().map(|(i, _)| i)) {
                        self.retry(lease, item, &e, Failure::Transient, &mut report).await;
                    }
                    return report;
                }
            };
            if !foreign.is_empty() {
                let conflict = crate::Error::conflict(
                    "a principal policy Heimdall did not write holds this user's policy id; left alone",
                );
                let is_foreign = |id: Option<String>| id.is_some_and(|id| foreign.contains(&id));
                let (bad, good): (Vec<_>, Vec<_>) = puts.into_iter().partition(|(_, p)| is_foreign(policy_id_of(p)));
                puts = good;
                let (bad_deletes, good_deletes): (Vec<_>, Vec<_>) =
                    deletes.into_iter().partition(|(_, id)| foreign.contains(id));
                deletes = good_deletes;
                for item in bad.iter().map(|(i, _)| i).chain(bad_deletes.iter().map(|(i, _)| i)) {
                    self.retry(lease, item, &conflict, Failure::Foreign, &mut report).await;
                }
            }
        }
        let mut done = Vec::new();
        if !puts.is_empty() {
            self.put(lease, puts, &mut done, &mut report).await;
        }
        let mut deletes = deletes.into_iter().peekable();
        while deletes.peek().is_some() {
            let chunk: Vec<_> = deletes.by_ref().take(MAX_DELETE_BATCH).collect();
            self.delete(lease, chunk, &mut done, &mut report).await;
        }
        if report.pushed + report.deleted > 0 {
            // The PDPs sharing the store reload before the pushes count as done: the pushed version moves only
            // then, and followers in Cerbos mode take it as the word that any PDP now answers with the change.
            self.reload_pdps(true).await;
            let done: Vec<&OutboxItem> = done.iter().collect();
            self.complete(lease, &done, &mut report).await;
        }
        report
    }

    /// Pushes until no user is due (users waiting for a retry stay queued), at most 1000 rounds; returns the
    /// rounds' sum. What `heimdall reconcile` runs after a reconciliation.
    pub async fn push_due(&self) -> Result<PushReport> {
        let mut total = PushReport::default();
        for _ in 0..1000 {
            let r = self.run_once().await?;
            if r.claimed == 0 {
                break;
            }
            total.claimed += r.claimed;
            total.pushed += r.pushed;
            total.deleted += r.deleted;
            total.retrying += r.retrying;
            total.rejected += r.rejected;
            total.foreign += r.foreign;
            total.lease_lost += r.lease_lost;
            total.last_error = r.last_error.or(total.last_error);
        }
        Ok(total)
    }

    /// Pushes until `shutdown` completes: at once when this process changes something or (on PostgreSQL)
    /// another process commits a change that put users into the outbox (`LISTEN heimdall_outbox`), and
    /// otherwise every `poll_interval`, which also covers a lost notification. Errors are logged and the loop
    /// goes on.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut wakeups = self.listen().await;
        // When the channel is lost (the database restarted or failed over), it is opened again at most once a
        // second; meanwhile the poll goes on.
        let mut listened = tokio::time::Instant::now();
        loop {
            if wakeups.is_none() && listened.elapsed() >= LISTEN_AGAIN_AFTER {
                listened = tokio::time::Instant::now();
                wakeups = self.listen().await;
            }
            let busy = match self.run_once().await {
                Ok(r) => r.claimed > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "push round failed");
                    false
                }
            };
            if busy {
                continue;
            }
            let notified = async {
                match wakeups.as_mut() {
                    Some(w) => w.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.heimdall.outbox_signal().notified() => {}
                woke = notified => {
                    if let Err(e) = woke {
                        tracing::warn!(error = %e, "lost the outbox notification channel; polling until it is back");
                        wakeups = None;
                        listened = tokio::time::Instant::now();
                    }
                }
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    /// Opens the outbox notification channel (PostgreSQL's `LISTEN`), if the store has one.
    async fn listen(&self) -> Option<Box<dyn crate::store::OutboxWakeups>> {
        match self.heimdall.store().outbox_wakeups().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for outbox notifications; polling until it can");
                None
            }
        }
    }
}

/// Longest wait for one PDP's reload in a round: a hung PDP delays the round's pushes by this much at most.
const RELOAD_WAIT: Duration = Duration::from_secs(2);

/// How long a worker that lost its notification channel polls before it opens the channel again.
const LISTEN_AGAIN_AFTER: Duration = Duration::from_secs(1);

impl Heimdall {
    /// [`Heimdall::reconcile`] on a caller's request: authorized as `reconcile` (superadmins, by the pack)
    /// and audited.
    pub async fn reconcile_as(
        &self,
        caller: &crate::model::Caller,
        admin: &dyn PolicyAdmin,
    ) -> Result<ReconcileReport> {
        self.authorized_system(caller, pdp::pack::action::RECONCILE, "reconcile", async {
            self.reconcile(admin).await
        })
        .await
    }

    /// Compares the principal policies `admin` holds as Heimdall's with what the database implies, and queues
    /// every user whose policy is missing, different or no longer implied for the push worker, which recomputes
    /// it from the database when it pushes. Reconciliation itself never writes to Cerbos, so it can never put
    /// back an older state than the worker wrote. Users whose push Cerbos had rejected for good are handed back
    /// to the worker too. A policy id held by a policy Heimdall did not write is reported, not touched.
    pub async fn reconcile(&self, admin: &dyn PolicyAdmin) -> Result<ReconcileReport> {
        // Pushes Cerbos rejected for good get another chance through the worker (their users may have
        // changed since, or Cerbos been fixed); one that fails again is marked failed again.
        let revived = self.store().outbox_revive_failed(self.now()).await?;
        if revived > 0 {
            tracing::info!(revived, "retrying pushes that had failed for good");
        }
        let (report, due) = self.compare_policies(admin).await?;
        self.store().outbox_enqueue(&due, self.now()).await?;
        if revived > 0 || !due.is_empty() {
            self.outbox_signal().notify_one();
        }
        tracing::info!(?report, "reconciliation done");
        Ok(report)
    }

    /// What [`Heimdall::reconcile`] would find, without queueing anything: the differences between the
    /// principal policies `admin` holds as Heimdall's and what the database implies (`heimdall reconcile
    /// --dry-run`).
    pub async fn reconcile_dry_run(&self, admin: &dyn PolicyAdmin) -> Result<ReconcileReport> {
        Ok(self.compare_policies(admin).await?.0)
    }

    /// The comparison behind reconciliation: its report, and the users whose policy is to be pushed or
    /// deleted.
    async fn compare_policies(&self, admin: &dyn PolicyAdmin) -> Result<(ReconcileReport, Vec<String>)> {
        let mut report = ReconcileReport::default();
        let held: BTreeSet<String> = admin.list_heimdall_policy_ids().await?.into_iter().collect();
        let mut desired: Vec<(String, String, Value)> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store().subjects(after.as_deref(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.as_str().to_owned());
            report.users_checked += page.len();
            for (subject, policy) in page.iter().zip(desired_policies(self, &page).await?) {
                if let Some(policy) = policy {
                    desired.push((subject.as_str().to_owned(), pdp::policy_id(subject), policy));
                }
            }
        }
        let wanted: BTreeSet<String> = desired.iter().map(|(_, id, _)| id.clone()).collect();

        // What Cerbos holds for the users who should have a policy: Heimdall's (to compare), or a foreign one.
        let ids: Vec<String> = desired.iter().map(|(_, id, _)| id.clone()).collect();
        let mut current: HashMap<String, BTreeSet<(String, String, String)>> = HashMap::new();
        let mut foreign: BTreeSet<String> = BTreeSet::new();
        for chunk in ids.chunks(MAX_PUT_BATCH) {
            for policy in admin.get_policies(chunk).await? {
                let Some(id) = policy_id_of(&policy) else { continue };
                if has_heimdall_mark(&policy, PRINCIPAL_POLICY_MARK) {
                    current.insert(id, rules_of(&policy));
                } else {
                    foreign.insert(id);
                }
            }
        }
        let mut due: Vec<String> = Vec::new();
        for (subject, id, policy) in &desired {
            if foreign.contains(id) {
                report.foreign += 1;
                tracing::error!(policy = %id, "a policy Heimdall did not write holds a user's policy id: not touching it");
            } else if current.get(id) != Some(&rules_of(policy)) {
                report.to_push += 1;
                due.push(subject.clone());
            }
        }
        for id in held.difference(&wanted) {
            match pdp::subject_from_policy_id(id) {
                Ok(subject) => {
                    report.to_delete += 1;
                    due.push(subject.as_str().to_owned());
                }
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(policy = %id, error = %e, "a Heimdall policy names no valid subject");
                }
            }
        }
        Ok((report, due))
    }
}

impl Heimdall {
    /// Reconciles every `interval` until `shutdown` completes (the spec's `RECONCILE_INTERVAL_SECONDS`).
    /// A failed round is logged and the next one runs on time.
    pub async fn run_reconciler(
        &self,
        admin: &dyn PolicyAdmin,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticks.tick() => {
                    if let Err(e) = self.reconcile(admin).await {
                        tracing::warn!(error = %e, "reconciliation failed; trying again at the next interval");
                    }
                }
            }
        }
    }
}

/// The id Cerbos gives a principal policy (`principal.<principal>.v<version>`).
fn policy_id_of(policy: &Value) -> Option<String> {
    let p = policy.get("principalPolicy")?;
    let principal = p.get("principal")?.as_str()?;
    let version = p.get("version").and_then(Value::as_str).unwrap_or("default");
    Some(format!("principal.{principal}.v{version}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Claims, Subject};
    use crate::store::OutboxStats;
    use crate::test_utils::TestDatabase;
    use crate::{Config, Heimdall};
    use serde_json::json;

    /// A change to a user whose push is under way must wait for that push, so that an older policy can never
    /// land after a newer one.
    #[tokio::test]
    async fn a_claimed_user_changed_again_waits_for_the_running_push() {
        for db in TestDatabase::all().await {
            let h = Heimdall::builder(Config {
                database_url: db.url.clone(),
                bootstrap_superadmins: vec!["root".into()],
                ..Config::default()
            })
            .build()
            .await
            .unwrap();
            let root = h
                .provision(
                    Claims {
                        subject: Subject::parse("root").unwrap(),
                        display_name: None,
                        email: None,
                    },
                    &[],
                )
                .await
                .unwrap();
            h.create_group(&root, "go:a", None).await.unwrap();
            let now = h.now();
            let lease = now + chrono::Duration::seconds(30);
            let first = h.store().outbox_claim(now, lease, 100).await.unwrap();
            assert_eq!(first.len(), 1, "{}: root, from the bootstrap", db.backend);

            // Worker A holds root's lease; root changes.
            h.add_member(&root, "go:a", "root").await.unwrap();
            let later = h.now();
            let second = h
                .store()
                .outbox_claim(later, later + chrono::Duration::seconds(30), 100)
                .await
                .unwrap();
            assert!(
                second.is_empty(),
                "{}: root is still leased to the first worker",
                db.backend
            );

            // A finishes its (older) push: the newer generation stays and is due at once.
            assert_eq!(
                h.store()
                    .outbox_complete(std::slice::from_ref(&first[0]), later)
                    .await
                    .unwrap()[0],
                Completion::Done
            );
            let third = h
                .store()
                .outbox_claim(later, later + chrono::Duration::seconds(30), 100)
                .await
                .unwrap();
            assert_eq!(third.len(), 1, "{}", db.backend);
            assert!(third[0].generation > first[0].generation, "{}", db.backend);
            let done = h
                .store()
                .outbox_complete(std::slice::from_ref(&third[0]), later)
                .await
                .unwrap();
            assert_eq!(done, [Completion::Done], "{}", db.backend);
            assert_eq!(
                h.outbox_stats().await.unwrap(),
                OutboxStats::default(),
                "{}",
                db.backend
            );
            drop(h);
            db.drop_database().await;
        }
    }

    /// A push that outlives its lease may land after the push of the worker that took the user over: the
    /// late completion makes the user due again, so that the current state is pushed last.
    #[tokio::test]
    async fn a_push_that_outlived_its_lease_is_pushed_again() {
        for db in TestDatabase::all().await {
            let h = Heimdall::builder(Config {
                database_url: db.url.clone(),
                bootstrap_superadmins: vec!["root".into()],
                ..Config::default()
            })
            .build()
            .await
            .unwrap();
            let t0 = h.now();
            let secs = chrono::Duration::seconds;
            // Worker A claims root for one second, and is slow.
            let a = h.store().outbox_claim(t0, t0 + secs(1), 10).await.unwrap();
            assert_eq!(a.len(), 1, "{}", db.backend);
            // Its lease expires; worker B takes root over and finishes first.
            let b = h.store().outbox_claim(t0 + secs(2), t0 + secs(32), 10).await.unwrap();
            assert_eq!(b.len(), 1, "{}: the expired lease is taken over", db.backend);
            assert_eq!(
                h.store()
                    .outbox_complete(std::slice::from_ref(&b[0]), t0 + secs(3))
                    .await
                    .unwrap()[0],
                Completion::Done
            );
            assert_eq!(h.outbox_stats().await.unwrap().pending, 0);
            // A's push lands last: root is due again.
            let late = h
                .store()
                .outbox_complete(std::slice::from_ref(&a[0]), t0 + secs(4))
                .await
                .unwrap()[0];
            assert_eq!(late, Completion::LeaseLost, "{}", db.backend);
            let again = h.store().outbox_claim(t0 + secs(4), t0 + secs(34), 10).await.unwrap();
            assert_eq!(
                again.len(),
                1,
                "{}: pushed once more, with the current state",
                db.backend
            );

            // The same while the worker that took over is still pushing: the late completion keeps that
            // worker's lease and leaves a newer generation, so its completion leaves root due once more.
            let d = h.store().outbox_claim(t0 + secs(35), t0 + secs(65), 10).await.unwrap();
            assert_eq!(d.len(), 1, "{}: `again`'s lease expired and is taken over", db.backend);
            let late = h
                .store()
                .outbox_complete(std::slice::from_ref(&again[0]), t0 + secs(36))
                .await
                .unwrap()[0];
            assert_eq!(late, Completion::LeaseLost, "{}", db.backend);
            assert!(
                h.store()
                    .outbox_claim(t0 + secs(36), t0 + secs(66), 10)
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert_eq!(
                h.store()
                    .outbox_complete(std::slice::from_ref(&d[0]), t0 + secs(37))
                    .await
                    .unwrap()[0],
                Completion::Done
            );
            let last = h.store().outbox_claim(t0 + secs(37), t0 + secs(67), 10).await.unwrap();
            assert_eq!(last.len(), 1, "{}", db.backend);
            assert!(last[0].generation > d[0].generation, "{}", db.backend);
            drop(h);
            db.drop_database().await;
        }
    }

    #[test]
    fn rules_compare_regardless_of_names_and_order() {
        let a = json!({"principalPolicy": {"principal": "bob", "version": "default", "rules": [
            {"resource": "course", "actions": [
                {"action": "course:create", "effect": "EFFECT_ALLOW", "name": "r1"},
                {"action": "course:delete", "effect": "EFFECT_DENY", "name": "r2"}]}]}});
        let b = json!({"principalPolicy": {"principal": "bob", "version": "default", "rules": [
            {"resource": "course", "actions": [
                {"action": "course:delete", "effect": "EFFECT_DENY", "name": "x"},
                {"action": "course:create", "effect": "EFFECT_ALLOW", "name": "y"}]}]}});
        assert_eq!(rules_of(&a), rules_of(&b));
        let c = json!({"principalPolicy": {"principal": "bob", "rules": [
            {"resource": "course", "actions": [{"action": "course:create", "effect": "EFFECT_DENY"}]}]}});
        assert_ne!(rules_of(&a), rules_of(&c));
        assert_eq!(policy_id_of(&a).as_deref(), Some("principal.bob.vdefault"));
    }
}
