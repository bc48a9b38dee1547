//! Publishing snapshots to request handlers.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use super::resolver::Snapshot;

/// The current [`Snapshot`], shared by request handlers and replaced atomically when mappings change.
///
/// Readers never block and never see a half-built snapshot: they [`load`](Self::load) the current one
/// (a few atomic operations, no lock) and resolve against it; a writer builds a new snapshot off to the
/// side and [`store`](Self::store)s it.
///
/// ```
/// use heimdall_core::mapping::{Resolution, SharedResolver, Snapshot};
/// let shared = SharedResolver::default();
/// assert!(matches!(shared.load().resolve("GET", "/x"), Resolution::NoMatch));
/// assert!(shared.store_if_newer(Snapshot::build([], 3)?));
/// assert!(!shared.store_if_newer(Snapshot::build([], 2)?));
/// assert_eq!(shared.load().version(), 3);
/// # Ok::<(), heimdall_core::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct SharedResolver {
    current: ArcSwap<Snapshot>,
}

impl SharedResolver {
    /// Starts with `snapshot`.
    pub fn new(snapshot: Snapshot) -> Self {
        SharedResolver {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The current snapshot, for a short borrow (one request). Cheaper than
    /// [`snapshot`](Self::snapshot); do not hold the guard for long.
    pub fn load(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot, as an `Arc` that may be kept.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the snapshot, whatever its version; returns the previous one.
    pub fn store(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        self.current.swap(Arc::new(snapshot))
    }

    /// Replaces the snapshot only if `snapshot` is newer than the current one (by
    /// [`Snapshot::version`]), so that a late, stale refresh cannot roll back a newer one. Returns
    /// whether it was stored.
    pub fn store_if_newer(&self, snapshot: Snapshot) -> bool {
        let new = Arc::new(snapshot);
        let mut current = self.current.load_full();
        loop {
            if current.version() >= new.version() {
                return false;
            }
            let previous = self.current.compare_and_swap(&current, Arc::clone(&new));
            if Arc::ptr_eq(&previous, &current) {
                return true;
            }
            current = Guard::into_inner(previous);
        }
    }
}
