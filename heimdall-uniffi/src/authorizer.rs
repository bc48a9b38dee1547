//! [`Authorizer`]: core's per-request decision for a JVM service (the same code as the tower Layer and the
//! ASGI middleware), and what it answers: a [`Decision`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use heimdall_core::authorizer::{self as core, AuthorizerConfig, RemoteMappings, Source, Unmapped};
use heimdall_core::identity::{IdentityConfig, TokenVerifier, bearer_token};
use heimdall_core::pdp::{CerbosClient, CerbosConfig, Pdp};

use crate::errors::{HeimdallError, config};
use crate::runtime::{block, run, runtime};
use crate::settings::AuthorizerSettings;

/// A request the authorizer let through.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Grant {
    /// Who: the token's subject.
    pub subject: String,
    /// The action the request needs; `None` for an unmapped request let through (`unmapped = "allow"`).
    pub action: Option<String>,
    /// The mapping that decided.
    pub mapping_id: Option<i64>,
    /// What the mapping's pattern captured, by name.
    pub params: HashMap<String, String>,
}

/// A request the authorizer refused: what to answer (the other frontends' status and JSON error body).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Refusal {
    /// 400, 401, 403 or 503.
    pub status: i32,
    /// `invalid_input`, `unauthenticated`, `forbidden` or `unavailable`.
    pub code: String,
    /// For humans (never holds the token).
    pub message: String,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Decision {
    /// Let it through.
    Allowed {
        /// Who and what.
        grant: Grant,
    },
    /// Refuse it.
    Refused {
        /// With what.
        refusal: Refusal,
    },
}

impl From<Result<core::Grant, core::Refusal>> for Decision {
    fn from(outcome: Result<core::Grant, core::Refusal>) -> Self {
        match outcome {
            Ok(g) => Decision::Allowed {
                grant: Grant {
                    subject: g.subject.to_string(),
                    action: g.action.map(|a| a.to_string()),
                    mapping_id: g.mapping_id,
                    params: g.params.into_iter().collect(),
                },
            },
            Err(r) => Decision::Refused {
                refusal: Refusal {
                    status: i32::from(r.status),
                    code: r.code.to_owned(),
                    message: r.message,
                },
            },
        }
    }
}

/// What an authorizer counted since it started (for the host's metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct AuthorizerStats {
    /// Requests let through.
    pub allowed: i64,
    /// Requests refused by the policy or as unmapped.
    pub denied: i64,
    /// Unmapped requests let through (`unmapped = "allow"`).
    pub unmapped_allowed: i64,
    /// Requests refused because the PDP could not decide.
    pub pdp_errors: i64,
    /// Requests that came before the first snapshot.
    pub no_snapshot: i64,
}

/// The per-request decision (see the crate docs). Thread-safe: one per service, shared by every request.
#[derive(uniffi::Object)]
pub struct Authorizer {
    authorizer: core::Authorizer,
    follower: Option<tokio::task::AbortHandle>,
    closed: AtomicBool,
    /// The id of the fast path's registration (`crate::fast`), once asked for.
    fast_id: std::sync::OnceLock<u64>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("authorizer", &self.authorizer)
            .field("closed", &self.closed)
            .finish()
    }
}

/// A positive, finite number of seconds.
fn seconds(name: &str, value: f64) -> Result<Duration, HeimdallError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| HeimdallError::InvalidInput(format!("{name} must be a positive number of seconds")))
}

#[uniffi::export]
impl Authorizer {
    /// Builds an authorizer and starts following its source; a configuration mistake is an error naming it.
    #[uniffi::constructor]
    pub fn new(settings: AuthorizerSettings) -> Result<Arc<Self>, HeimdallError> {
        let unmapped = match settings.unmapped.as_str() {
            "deny" => Unmapped::Deny,
            "allow" => Unmapped::AllowAndCount,
            other => return Err(config(format!("unmapped must be \"deny\" or \"allow\", not {other:?}"))),
        };
        let authorizer_config = AuthorizerConfig {
            unmapped,
            allow_before_snapshot: settings.allow_before_snapshot,
            before_snapshot_deadline: seconds("before_snapshot_deadline", settings.before_snapshot_deadline)?,
            decision_ttl: seconds("decision_ttl", settings.decision_ttl)?,
            grants_on_demand: settings.grants_cache_capacity,
            ..AuthorizerConfig::default()
        };
        let poll_interval = seconds("poll_interval", settings.poll_interval)?;
        let rt = runtime()?;
        let source = match (settings.heimdall_url, settings.credential, settings.database_url) {
            (Some(url), Some(credential), None) => Source::Follow(RemoteMappings {
                poll_interval,
                allow_plain_http: settings.allow_plain_http,
                ..RemoteMappings::new(url.trim_end_matches('/'), credential)
            }),
            (None, None, Some(database_url)) => {
                let heimdall_config = heimdall_core::Config {
                    database_url,
                    ..heimdall_core::Config::default()
                };
                Source::Embedded(rt.block_on(heimdall_core::Heimdall::builder(heimdall_config).build())?)
            }
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(config("heimdall_url and credential go together"));
            }
            (None, None, None) => {
                return Err(config(
                    "give the mappings' source: heimdall_url and credential, or database_url",
                ));
            }
            (Some(_), Some(_), Some(_)) => return Err(config("heimdall_url and database_url exclude each other")),
        };
        let verifier = TokenVerifier::new(IdentityConfig {
            issuer: settings.issuer,
            audience: settings.audience,
            allow_plain_http: settings.allow_plain_http,
            ..IdentityConfig::new(settings.jwks_url)
        })?;
        let pdp = match settings.cerbos_url {
            Some(url) => Some(Arc::new(CerbosClient::new(CerbosConfig::new(url))?) as Arc<dyn Pdp>),
            None => None,
        };
        let _inside = rt.enter();
        let (authorizer, task) = core::Authorizer::start(verifier, source, pdp, authorizer_config)?;
        Ok(Arc::new(Authorizer {
            authorizer,
            follower: task.map(|t| t.abort_handle()),
            closed: AtomicBool::new(false),
            fast_id: std::sync::OnceLock::new(),
        }))
    }

    /// Decides one request: `method` as received (upper case), `target` the raw request target (path and
    /// query, percent-encoded, exactly as on the request line), `token` the bearer token without `Bearer `.
    /// Blocks only when it must wait (a key fetch, a PDP call).
    pub fn authorize(&self, method: &str, target: &str, token: Option<String>) -> Result<Decision, HeimdallError> {
        self.check_open()?;
        block(self.authorizer.authorize(method, target, token.as_deref())).map(Decision::from)
    }

    /// [`Authorizer::authorize`] with the token read from the request's `Authorization` header value (`Bearer
    /// <token>`, as every frontend reads it): what the Servlet filter and the Ktor plugin call.
    pub fn authorize_request(
        &self,
        method: &str,
        target: &str,
        authorization: Option<String>,
    ) -> Result<Decision, HeimdallError> {
        self.check_open()?;
        let token = authorization.as_deref().and_then(bearer_token);
        block(self.authorizer.authorize(method, target, token)).map(Decision::from)
    }

    /// [`Authorizer::authorize_request`] without blocking the caller's thread (Kotlin: `suspend`).
    pub async fn authorize_request_async(
        &self,
        method: String,
        target: String,
        authorization: Option<String>,
    ) -> Result<Decision, HeimdallError> {
        self.check_open()?;
        let authorizer = self.authorizer.clone();
        run(async move {
            let token = authorization.as_deref().and_then(bearer_token);
            authorizer.authorize(&method, &target, token).await
        })
        .await
        .map(Decision::from)
    }

    /// [`Authorizer::authorize`] without blocking the caller's thread (Kotlin: `suspend`).
    pub async fn authorize_async(
        &self,
        method: String,
        target: String,
        token: Option<String>,
    ) -> Result<Decision, HeimdallError> {
        self.check_open()?;
        let authorizer = self.authorizer.clone();
        run(async move { authorizer.authorize(&method, &target, token.as_deref()).await })
            .await
            .map(Decision::from)
    }

    /// Waits at most `timeout` seconds for the first mapping snapshot; whether one is loaded.
    pub fn wait_ready(&self, timeout: f64) -> Result<bool, HeimdallError> {
        self.check_open()?;
        let deadline = Instant::now() + seconds("timeout", timeout)?;
        let authorizer = self.authorizer.clone();
        block(async move {
            while !authorizer.is_ready() && authorizer.credential_refused().is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            authorizer.is_ready()
        })
    }

    /// Whether requests can be decided now (a snapshot is loaded, the credential was not refused).
    pub fn is_ready(&self) -> bool {
        !self.closed.load(Ordering::Acquire) && self.authorizer.is_ready()
    }

    /// The version of the mapping snapshot requests are resolved on, `None` before the first.
    pub fn snapshot_version(&self) -> Option<i64> {
        self.authorizer.snapshot().map(|s| s.version())
    }

    /// Seconds since the snapshot was last confirmed against its source, `None` before the first.
    pub fn snapshot_age(&self) -> Option<f64> {
        self.authorizer.snapshot_age().map(|d| d.as_secs_f64())
    }

    /// Why the follower gave up (heimdall-http refused its credential), `None` while it follows.
    pub fn credential_refused(&self) -> Option<String> {
        self.authorizer.credential_refused()
    }

    /// What this authorizer counted.
    pub fn stats(&self) -> AuthorizerStats {
        let s = self.authorizer.stats();
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        AuthorizerStats {
            allowed: n(s.allowed),
            denied: n(s.denied),
            unmapped_allowed: n(s.unmapped_allowed),
            pdp_errors: n(s.pdp_errors),
            no_snapshot: n(s.no_snapshot),
        }
    }

    /// Stops following heimdall-http; later calls fail with `Unavailable`. (Kotlin's `close()` also frees the
    /// object, which does this too.)
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        if let Some(id) = self.fast_id.get() {
            crate::fast::unregister_authorizer(*id);
        }
        if let Some(follower) = &self.follower {
            follower.abort();
        }
    }

    /// The id under which this authorizer answers `heimdall_jvm_authorize` (the frontends' hot path, see
    /// `fast.rs`), registered on first use; `Unavailable` once shut down.
    pub fn fast_id(&self) -> Result<u64, HeimdallError> {
        self.check_open()?;
        let id = *self
            .fast_id
            .get_or_init(|| crate::fast::register_authorizer(self.authorizer.clone()));
        // A shutdown racing the registration above must not leave it registered.
        if self.closed.load(Ordering::Acquire) {
            crate::fast::unregister_authorizer(id);
        }
        Ok(id)
    }
}

impl Authorizer {
    fn check_open(&self) -> Result<(), HeimdallError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(HeimdallError::Unavailable(
                "closed: this authorizer was shut down".to_owned(),
            ));
        }
        Ok(())
    }
}

impl Drop for Authorizer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
