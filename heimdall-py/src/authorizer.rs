//! `Authorizer` and `Grant`: core's per-request decision (the same code as heimdall-adapter's tower Layer).

use std::sync::Arc;
use std::time::{Duration, Instant};

use heimdall_core::authorizer::{self as core, AuthorizerConfig, RemoteMappings, Source, Unmapped};
use heimdall_core::identity::{IdentityConfig, TokenVerifier};
use heimdall_core::pdp::{CerbosClient, CerbosConfig, Pdp};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::asgi;
use crate::errors::{self, to_py};
use crate::facade::Heimdall;
use crate::resolver::{params_dict, seconds};
use crate::runtime::{PerProcess, awaitable, block, runtime, value_or_awaitable};

/// A request the authorizer let through.
#[pyclass(frozen, module = "heimdall._heimdall")]
pub(crate) struct Grant {
    #[pyo3(get)]
    subject: String,
    #[pyo3(get)]
    action: Option<String>,
    #[pyo3(get)]
    mapping_id: Option<i64>,
    params: Vec<(String, String)>,
}

#[pymethods]
impl Grant {
    /// The parameters the mapping's pattern captured, by name.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        params_dict(py, &self.params)
    }

    fn __repr__(&self) -> String {
        format!(
            "Grant(subject={:?}, action={:?}, mapping_id={:?})",
            self.subject, self.action, self.mapping_id
        )
    }
}

fn grant(py: Python<'_>, g: core::Grant) -> PyResult<Py<PyAny>> {
    let grant = Grant {
        subject: g.subject.to_string(),
        action: g.action.map(|a| a.to_string()),
        mapping_id: g.mapping_id,
        params: g.params,
    };
    Ok(Bound::new(py, grant)?.into_any().unbind())
}

/// The authorizer of this process and its follower task (aborted on `close`).
#[derive(Clone)]
struct Live {
    authorizer: core::Authorizer,
    follower: Option<tokio::task::AbortHandle>,
}

/// The per-request decision (see the stub and the module docs).
#[pyclass(frozen, module = "heimdall._heimdall")]
pub(crate) struct Authorizer {
    live: PerProcess<Live>,
}

#[pymethods]
impl Authorizer {
    #[new]
    #[pyo3(signature = (
        *, jwks_url, heimdall_url = None, credential = None, embedded = None, cerbos_url = None, issuer = None,
        audience = None, unmapped = "deny", allow_before_snapshot = false, before_snapshot_deadline = 30.0,
        poll_interval = 30.0, decision_ttl = 5.0, allow_plain_http = false, grants_cache_capacity = None
    ))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn new(
        jwks_url: String,
        heimdall_url: Option<String>,
        credential: Option<String>,
        embedded: Option<Py<Heimdall>>,
        cerbos_url: Option<String>,
        issuer: Option<String>,
        audience: Option<String>,
        unmapped: &str,
        allow_before_snapshot: bool,
        before_snapshot_deadline: f64,
        poll_interval: f64,
        decision_ttl: f64,
        allow_plain_http: bool,
        grants_cache_capacity: Option<u64>,
    ) -> PyResult<Self> {
        let unmapped = match unmapped {
            "deny" => Unmapped::Deny,
            "allow" => Unmapped::AllowAndCount,
            other => {
                return Err(errors::config(format!(
                    "unmapped must be \"deny\" or \"allow\", not {other:?}"
                )));
            }
        };
        let config = AuthorizerConfig {
            unmapped,
            allow_before_snapshot,
            before_snapshot_deadline: seconds("before_snapshot_deadline", before_snapshot_deadline)?,
            decision_ttl: seconds("decision_ttl", decision_ttl)?,
            grants_on_demand: grants_cache_capacity,
            ..AuthorizerConfig::default()
        };
        let poll_interval = seconds("poll_interval", poll_interval)?;
        let remote = match (heimdall_url, credential, &embedded) {
            (Some(url), Some(credential), None) => Some(RemoteMappings {
                poll_interval,
                allow_plain_http,
                ..RemoteMappings::new(url.trim_end_matches('/'), credential)
            }),
            (None, None, Some(_)) => None,
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(errors::config("heimdall_url and credential go together"));
            }
            (None, None, None) => {
                return Err(errors::config(
                    "give the mappings' source: heimdall_url and credential, or embedded=Heimdall(...)",
                ));
            }
            (Some(_), Some(_), Some(_)) => {
                return Err(errors::config("heimdall_url and embedded exclude each other"));
            }
        };
        let identity = IdentityConfig {
            issuer,
            audience,
            allow_plain_http,
            ..IdentityConfig::new(jwks_url)
        };
        let build = move |inherited: Option<&Live>| -> PyResult<Live> {
            let verifier = TokenVerifier::new(identity.clone()).map_err(to_py)?;
            let pdp = match &cerbos_url {
                Some(url) => {
                    Some(Arc::new(CerbosClient::new(CerbosConfig::new(url.clone())).map_err(to_py)?) as Arc<dyn Pdp>)
                }
                None => None,
            };
            let source = match (&remote, &embedded) {
                (Some(remote), _) => Source::Follow(remote.clone()),
                (None, Some(h)) => Source::Embedded(Python::attach(|py| h.get().core(py))?),
                (None, None) => return Err(errors::config("no source of mappings")),
            };
            let _inside = runtime()?.enter();
            let (authorizer, task) = core::Authorizer::start(verifier, source, pdp, config.clone()).map_err(to_py)?;
            if let Some(parent) = inherited {
                // A forked child: decide on what the parent held until this process's follower catches up.
                authorizer.adopt(&parent.authorizer);
            }
            Ok(Live {
                authorizer,
                follower: task.map(|t| t.abort_handle()),
            })
        };
        Ok(Authorizer {
            live: PerProcess::new(build)?,
        })
    }

    /// Decides one request (blocking only when it must wait: a key fetch, a PDP call).
    #[pyo3(signature = (method, path, token))]
    fn authorize(&self, py: Python<'_>, method: String, path: String, token: Option<String>) -> PyResult<Py<PyAny>> {
        let live = self.live.get()?;
        let out = block(py, async move {
            live.authorizer
                .authorize(&method, &path, token.as_deref())
                .await
                .map_err(errors::refusal)
        })?;
        grant(py, out?)
    }

    /// Decides one request without blocking the event loop: an awaitable of the `Grant`.
    #[pyo3(signature = (method, path, token))]
    fn authorize_async<'py>(
        &self,
        py: Python<'py>,
        method: String,
        path: String,
        token: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let live = self.live.get()?;
        awaitable(
            py,
            async move {
                live.authorizer
                    .authorize(&method, &path, token.as_deref())
                    .await
                    .map_err(errors::refusal)
            },
            grant,
        )
    }

    /// Decides the request an ASGI `http` or `websocket` scope describes, read in one call (what
    /// `heimdall.asgi.HeimdallMiddleware` does): the `Grant` itself when the answer is known at once (a cached
    /// decision), else an awaitable of it; a refusal known at once is raised.
    #[pyo3(signature = (scope, token = None))]
    fn authorize_asgi<'py>(
        &self,
        py: Python<'py>,
        scope: &Bound<'py, PyAny>,
        token: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let asgi::Request { method, path, token } = asgi::request(scope, token)?;
        let live = self.live.get()?;
        value_or_awaitable(
            py,
            async move {
                live.authorizer
                    .authorize(&method, &path, token.as_deref())
                    .await
                    .map_err(errors::refusal)
            },
            grant,
        )
    }

    /// Waits (at most `timeout` seconds) for the first mapping snapshot; whether one is loaded.
    #[pyo3(signature = (timeout = 10.0))]
    fn wait_ready(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let live = self.live.get()?;
        let deadline = Instant::now() + seconds("timeout", timeout)?;
        block(py, async move {
            while !live.authorizer.is_ready()
                && live.authorizer.credential_refused().is_none()
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            live.authorizer.is_ready()
        })
    }

    /// The version of the mapping snapshot requests are resolved on, `None` before the first.
    #[getter]
    fn snapshot_version(&self) -> PyResult<Option<i64>> {
        Ok(self.live.get()?.authorizer.snapshot().map(|s| s.version()))
    }

    /// Why the follower gave up (heimdall-http refused its credential), `None` while it follows.
    #[getter]
    fn credential_refused(&self) -> PyResult<Option<String>> {
        Ok(self.live.get()?.authorizer.credential_refused())
    }

    /// Seconds since the snapshot was last confirmed against its source, `None` before the first.
    #[getter]
    fn snapshot_age(&self) -> PyResult<Option<f64>> {
        Ok(self.live.get()?.authorizer.snapshot_age().map(|d| d.as_secs_f64()))
    }

    /// What this process's authorizer counted: allowed, denied, unmapped_allowed, pdp_errors, no_snapshot.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.live.get()?.authorizer.stats();
        let dict = PyDict::new(py);
        dict.set_item("allowed", s.allowed)?;
        dict.set_item("denied", s.denied)?;
        dict.set_item("unmapped_allowed", s.unmapped_allowed)?;
        dict.set_item("pdp_errors", s.pdp_errors)?;
        dict.set_item("no_snapshot", s.no_snapshot)?;
        Ok(dict)
    }

    /// Stops following heimdall-http; later calls raise `Unavailable`.
    fn close(&self) {
        if let Some(live) = self.live.close()
            && let Some(follower) = live.follower
        {
            follower.abort();
        }
    }

    fn __repr__(&self) -> String {
        match self.live.get() {
            Ok(live) => format!("Authorizer({:?})", live.authorizer),
            Err(_) => "Authorizer(<unavailable>)".to_owned(),
        }
    }
}

impl Drop for Authorizer {
    fn drop(&mut self) {
        self.close();
    }
}
