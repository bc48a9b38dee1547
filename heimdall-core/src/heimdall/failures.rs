//! The audit of failed attempts, bounded per actor and minute.
//!
//! Every failed attempt is audited (a refusal above all: a refused credential, a forbidden operation; but
//! also invalid input, an unknown target, a conflict), and a caller decides how often he fails. So that no
//! caller can grow the audit table at will, each actor (a user's subject, `api_key:<name>`, or
//! `unauthenticated:<source>` for a credential refused before anyone was known) gets
//! [`FAILURE_AUDIT_ROWS`] rows of its own per [`FAILURE_AUDIT_INTERVAL`], written as before, one per attempt.
//! Past that, its failures are coalesced: the first failure of an operation with an outcome writes one row
//! whose result carries `"coalesced": true` and `"count": 1` (the target and message are that first
//! failure's), and each later failure of the same operation and outcome in the same interval adds one to
//! that row's `count` (and sets `last_at`), written at most once per [`FAILURE_AUDIT_COUNT_DELAY`] (so the
//! database sees one update a second per coalesced row, not one per failure). So an actor writes at most
//! [`FAILURE_AUDIT_ROWS`] rows plus one per operation and outcome in an interval, whatever it sends, and the
//! counts add up to every failure (within [`FAILURE_AUDIT_COUNT_DELAY`]; a process that stops loses at most
//! that last second's count).
//!
//! The window is this process's: each replica keeps its own, so the bound is per replica. The memory is a
//! moka cache of at most [`FAILURE_AUDIT_ACTORS`] actors; an actor pushed out early starts a new window.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Heimdall, UNAUTHENTICATED_ACTOR_PREFIX, bounded_str, failure_result};
use crate::error::{Error, Result};
use crate::model::ApiKeyPrincipal;
use crate::store::{Audit, Write};

/// How long one window of an actor's failures lasts, from its first failure.
pub const FAILURE_AUDIT_INTERVAL: Duration = Duration::from_secs(60);
/// Failures of one actor audited one row each per window; later ones are coalesced.
pub const FAILURE_AUDIT_ROWS: u32 = 20;
/// How long at most a coalesced row's count lags behind: it is written at most once in this time.
pub const FAILURE_AUDIT_COUNT_DELAY: Duration = Duration::from_secs(1);
/// Most actors whose windows are remembered.
const FAILURE_AUDIT_ACTORS: u64 = 10_000;

/// One actor's window.
#[derive(Default)]
struct Window {
    /// Failures seen in this window.
    seen: AtomicU32,
    /// The coalesced row of each (operation, outcome), once written.
    coalesced: std::sync::Mutex<HashMap<(&'static str, String), Arc<Coalesced>>>,
}

/// A coalesced row.
#[derive(Default)]
struct Coalesced {
    /// The row's id and its result as last written, once written. The lock orders the writes of one row.
    row: tokio::sync::Mutex<Option<(i64, Value)>>,
    /// The failures it stands for.
    count: AtomicU64,
    /// When the latest of them was.
    last_at: std::sync::Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    /// Set while a write of the count is scheduled.
    scheduled: AtomicBool,
}

/// Every actor's current window.
pub(crate) struct FailureAudit {
    windows: moka::sync::Cache<String, Arc<Window>>,
}

impl Default for FailureAudit {
    fn default() -> Self {
        FailureAudit {
            windows: moka::sync::Cache::builder()
                .max_capacity(FAILURE_AUDIT_ACTORS)
                .time_to_live(FAILURE_AUDIT_INTERVAL)
                .build(),
        }
    }
}

impl std::fmt::Debug for FailureAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureAudit")
            .field("actors", &self.windows.entry_count())
            .finish()
    }
}

impl Heimdall {
    /// Audits a request refused for its credential before anyone was known (missing, malformed, unknown,
    /// expired or revoked): actor `unauthenticated:<source>` (`source`: where the request came from as the
    /// frontend sees it, such as the client's address), operation `authenticate`, target `request` (what was
    /// asked, such as a route template; cut like every audited string), and `error`'s outcome and message.
    /// Bounded per source like every failure (see [`FAILURE_AUDIT_ROWS`]). The credential itself is never
    /// audited: pass none in `request`.
    pub async fn audit_refused_credential(&self, source: &str, request: &str, error: &Error) -> Result<()> {
        let actor = format!("{UNAUTHENTICATED_ACTOR_PREFIX}{}", bounded_str(source));
        self.audit_refusal(actor, request, error).await
    }

    /// Audits a request of API key `key` refused before it reached an operation (the key lacks the scope the
    /// request needs): actor `api_key:<name>`, operation `authenticate`, target `request`. Bounded like
    /// every failure.
    pub async fn audit_api_key_refusal(&self, key: &ApiKeyPrincipal, request: &str, error: &Error) -> Result<()> {
        self.audit_refusal(key.actor(), request, error).await
    }

    async fn audit_refusal(&self, actor: String, request: &str, error: &Error) -> Result<()> {
        let w = Write {
            now: self.now(),
            audit: Audit {
                actor: None,
                actor_name: Some(actor),
                operation: "authenticate",
                target_type: "api".to_owned(),
                target_id: bounded_str(request),
                request: json!({}),
            },
            guard: Vec::new(),
            notes: serde_json::Map::new(),
        };
        self.audit_failure(&w, &failure_result(error)).await
    }

    /// Audits a failed attempt (`w` its context, `result` its outcome), within the actor's bound (see the
    /// module's documentation).
    pub(super) async fn audit_failure(&self, w: &Write, result: &Value) -> Result<()> {
        let actor = w
            .audit
            .actor
            .as_ref()
            .map(|c| c.subject().as_str().to_owned())
            .or_else(|| w.audit.actor_name.clone())
            .unwrap_or_default();
        let window = self.inner.failures.windows.get_with(actor, Arc::default);
        if window.seen.fetch_add(1, Ordering::AcqRel) < FAILURE_AUDIT_ROWS {
            return self.store().write_audit(w, result, false).await;
        }
        let outcome = result
            .get("outcome")
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_owned();
        let coalesced = {
            let mut rows = window
                .coalesced
                .lock()
                .map_err(|_| crate::Error::unexpected("poisoned lock"))?;
            rows.entry((w.audit.operation, outcome)).or_default().clone()
        };
        coalesced.count.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut last) = coalesced.last_at.lock() {
            *last = Some(w.now);
        }
        let mut row = coalesced.row.lock().await;
        if row.is_none() {
            let mut first = result.clone();
            if let Some(o) = first.as_object_mut() {
                o.insert("coalesced".to_owned(), json!(true));
                o.insert("count".to_owned(), json!(coalesced.count.load(Ordering::Acquire)));
            }
            let id = self.store().insert_failure_audit(w, &first).await?;
            *row = Some((id, first));
            return Ok(());
        }
        drop(row);
        // The count is written at most once per FAILURE_AUDIT_COUNT_DELAY: the first failure after a write
        // schedules the next one, which writes the count as it is then.
        if !coalesced.scheduled.swap(true, Ordering::AcqRel) {
            let heimdall = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(FAILURE_AUDIT_COUNT_DELAY).await;
                coalesced.scheduled.store(false, Ordering::Release);
                if let Err(e) = heimdall.write_count(&coalesced).await {
                    tracing::warn!(error = %e, "could not update a coalesced audit row");
                }
            });
        }
        Ok(())
    }

    /// Writes a coalesced row's count (and the time of its latest failure) when it moved.
    async fn write_count(&self, coalesced: &Coalesced) -> Result<()> {
        let mut row = coalesced.row.lock().await;
        let Some((id, written)) = &mut *row else {
            return Ok(());
        };
        let count = coalesced.count.load(Ordering::Acquire);
        if written.get("count").and_then(Value::as_u64) == Some(count) {
            return Ok(());
        }
        let last_at = coalesced.last_at.lock().ok().and_then(|l| *l);
        let mut next = written.clone();
        if let Some(o) = next.as_object_mut() {
            o.insert("count".to_owned(), json!(count));
            if let Some(last_at) = last_at {
                o.insert("last_at".to_owned(), json!(last_at.to_rfc3339()));
            }
        }
        self.store().update_audit_result(*id, &next).await?;
        *written = next;
        Ok(())
    }
}
