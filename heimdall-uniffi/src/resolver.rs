//! [`Resolver`]: core's compiled mapping snapshot, from mappings or from heimdall-http's export.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use heimdall_core::authorizer::{ListedMapping, MappingExport, RemoteMappings, fetch_export};
use heimdall_core::mapping::{Resolution, Snapshot};

use crate::errors::HeimdallError;
use crate::runtime::block;

/// One endpoint→action mapping, as given to [`Resolver::new`].
#[derive(Debug, Clone, uniffi::Record)]
pub struct Mapping {
    /// Its id; `None`: its position in the list, from 1.
    #[uniffi(default = None)]
    pub id: Option<i64>,
    /// The HTTP method (upper case), or `*`.
    pub method: String,
    /// The path pattern (`/orders/{id}`, or a regex after `~`).
    pub path_pattern: String,
    /// The action the endpoint needs (`orders:read`).
    pub action: String,
    /// The group that owns it.
    #[uniffi(default = None)]
    pub owner_group: Option<String>,
    /// Lower wins among mappings that match the same request.
    #[uniffi(default = 0)]
    pub priority: i32,
}

/// What a request resolved to.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Match {
    /// The mapping's id.
    pub mapping_id: i64,
    /// The action it maps to.
    pub action: String,
    /// Its pattern.
    pub path_pattern: String,
    /// The group that owns it.
    pub owner_group: Option<String>,
    /// What the pattern captured, by name.
    pub params: HashMap<String, String>,
}

/// A compiled mapping snapshot: resolves `(method, path)` to the mapping that covers it.
#[derive(Debug, uniffi::Object)]
pub struct Resolver {
    snapshot: Arc<Snapshot>,
    /// The id of the fast path's registration (`crate::fast`), once asked for.
    fast_id: std::sync::OnceLock<u64>,
}

impl Resolver {
    fn of(snapshot: Arc<Snapshot>) -> Arc<Self> {
        Arc::new(Resolver {
            snapshot,
            fast_id: std::sync::OnceLock::new(),
        })
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        if let Some(id) = self.fast_id.get() {
            crate::fast::unregister_resolver(*id);
        }
    }
}

#[uniffi::export]
impl Resolver {
    /// Compiles `mappings` at `version`; an invalid pattern or a conflict is `InvalidInput`.
    #[uniffi::constructor]
    pub fn new(mappings: Vec<Mapping>, version: i64) -> Result<Arc<Self>, HeimdallError> {
        let listed = mappings.into_iter().map(|m| ListedMapping {
            id: m.id,
            method: m.method,
            path_pattern: m.path_pattern,
            action: m.action,
            owner_group: m.owner_group,
            priority: m.priority,
        });
        let snapshot = MappingExport::numbered(version, listed).into_snapshot()?;
        Ok(Resolver::of(Arc::new(snapshot)))
    }

    /// Reads heimdall-http's export body (`GET /api/v1/mappings/export`).
    #[uniffi::constructor]
    pub fn from_export_json(body: String) -> Result<Arc<Self>, HeimdallError> {
        let snapshot = MappingExport::from_json(body.as_bytes()).and_then(MappingExport::into_snapshot)?;
        Ok(Resolver::of(Arc::new(snapshot)))
    }

    /// Fetches heimdall-http's export (`credential`: an API key with `mappings:read`, or the static token),
    /// waiting at most `timeout` seconds.
    #[uniffi::constructor]
    pub fn from_export(base_url: String, credential: String, timeout: f64) -> Result<Arc<Self>, HeimdallError> {
        let timeout = Duration::try_from_secs_f64(timeout)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| HeimdallError::InvalidInput("timeout must be a positive number of seconds".to_owned()))?;
        let remote = RemoteMappings {
            timeout,
            ..RemoteMappings::new(base_url.trim_end_matches('/'), credential)
        };
        let snapshot = block(async move { fetch_export(&remote).await })??;
        Ok(Resolver::of(snapshot))
    }

    /// The id under which this resolver answers `heimdall_jvm_resolve` (the frontends' hot path, see
    /// `fast.rs`), registered on first use until the resolver is freed.
    pub fn fast_id(&self) -> u64 {
        *self
            .fast_id
            .get_or_init(|| crate::fast::register_resolver(self.snapshot.clone()))
    }

    /// The mapping version the snapshot shows.
    pub fn version(&self) -> i64 {
        self.snapshot.version()
    }

    /// How many mappings it holds.
    pub fn size(&self) -> u32 {
        u32::try_from(self.snapshot.len()).unwrap_or(u32::MAX)
    }

    /// The mapping `(method, path)` resolves to, or `None`; `InvalidInput` for a method or path that is not
    /// canonical (it is never rewritten). `path` is the raw, percent-encoded path; a query string is ignored.
    pub fn resolve(&self, method: &str, path: &str) -> Result<Option<Match>, HeimdallError> {
        match self.snapshot.resolve(method, path) {
            Resolution::Matched(m) => Ok(Some(Match {
                mapping_id: m.id(),
                action: m.action().to_string(),
                path_pattern: m.pattern().as_str().to_owned(),
                owner_group: m.owner_group().map(ToString::to_string),
                params: m.params().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            })),
            Resolution::NoMatch => Ok(None),
            Resolution::Rejected(why) => Err(HeimdallError::InvalidInput(format!("path rejected: {}", why.as_str()))),
        }
    }
}
