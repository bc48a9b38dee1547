//! `Resolver`: core's compiled mapping snapshot, loaded from heimdall-http's export or from dicts.

use std::sync::Arc;
use std::time::Duration;

use heimdall_core::authorizer::{ListedMapping, MappingExport, RemoteMappings, fetch_export};
use heimdall_core::mapping::{Resolution, Snapshot};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::errors::{self, to_py};
use crate::runtime::block;

/// What a request resolved to.
#[pyclass(frozen, module = "heimdall._heimdall")]
pub(crate) struct Match {
    #[pyo3(get)]
    mapping_id: i64,
    #[pyo3(get)]
    action: String,
    #[pyo3(get)]
    path_pattern: String,
    #[pyo3(get)]
    owner_group: Option<String>,
    params: Vec<(String, String)>,
}

#[pymethods]
impl Match {
    /// The parameters the pattern captured, by name.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        params_dict(py, &self.params)
    }

    fn __repr__(&self) -> String {
        format!(
            "Match(mapping_id={}, action={:?}, path_pattern={:?})",
            self.mapping_id, self.action, self.path_pattern
        )
    }
}

pub(crate) fn params_dict<'py>(py: Python<'py>, params: &[(String, String)]) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (k, v) in params {
        dict.set_item(k, v)?;
    }
    Ok(dict)
}

/// A compiled mapping snapshot (see the stub for the Python surface).
#[pyclass(frozen, module = "heimdall._heimdall")]
pub(crate) struct Resolver {
    snapshot: Arc<Snapshot>,
}

#[pymethods]
impl Resolver {
    /// Compiles `mappings` (dicts with `method`, `path_pattern`, `action`, and optionally `id` (default: the
    /// position, from 1), `owner_group`, `priority`).
    #[new]
    #[pyo3(signature = (mappings, version = 0))]
    fn new(mappings: &Bound<'_, PyList>, version: i64) -> PyResult<Self> {
        let listed: Vec<ListedMapping> = pythonize::depythonize(mappings.as_any())
            .map_err(|e| errors::InvalidInput::new_err(format!("not a list of mappings: {e}")))?;
        let snapshot = MappingExport::numbered(version, listed)
            .into_snapshot()
            .map_err(to_py)?;
        Ok(Resolver {
            snapshot: Arc::new(snapshot),
        })
    }

    /// Reads heimdall-http's export body (`GET /api/v1/mappings/export`).
    #[staticmethod]
    fn from_export_json(body: &Bound<'_, PyAny>) -> PyResult<Self> {
        let bytes: Vec<u8> = match body.extract::<String>() {
            Ok(text) => text.into_bytes(),
            Err(_) => body.extract::<Vec<u8>>()?,
        };
        let snapshot = MappingExport::from_json(&bytes)
            .and_then(MappingExport::into_snapshot)
            .map_err(to_py)?;
        Ok(Resolver {
            snapshot: Arc::new(snapshot),
        })
    }

    /// Fetches heimdall-http's export (`credential`: an API key with `mappings:read`, or the static token).
    #[staticmethod]
    #[pyo3(signature = (base_url, credential, timeout = 10.0))]
    fn from_export(py: Python<'_>, base_url: String, credential: String, timeout: f64) -> PyResult<Self> {
        let remote = RemoteMappings {
            timeout: seconds("timeout", timeout)?,
            ..RemoteMappings::new(base_url.trim_end_matches('/'), credential)
        };
        let snapshot = block(py, async move { fetch_export(&remote).await })?.map_err(to_py)?;
        Ok(Resolver { snapshot })
    }

    /// The mapping version the snapshot shows.
    #[getter]
    fn version(&self) -> i64 {
        self.snapshot.version()
    }

    fn __len__(&self) -> usize {
        self.snapshot.len()
    }

    /// The mapping `(method, path)` resolves to, or `None`; `InvalidInput` for a path that is not canonical
    /// (it is never rewritten). `path` is the raw, percent-encoded path; a query string is ignored.
    fn resolve(&self, method: &str, path: &str) -> PyResult<Option<Match>> {
        match self.snapshot.resolve(method, path) {
            Resolution::Matched(m) => Ok(Some(Match {
                mapping_id: m.id(),
                action: m.action().to_string(),
                path_pattern: m.pattern().as_str().to_owned(),
                owner_group: m.owner_group().map(ToString::to_string),
                params: m.params().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            })),
            Resolution::NoMatch => Ok(None),
            Resolution::Rejected(why) => Err(errors::InvalidInput::new_err(format!(
                "path rejected: {}",
                why.as_str()
            ))),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Resolver(version={}, mappings={})",
            self.snapshot.version(),
            self.snapshot.len()
        )
    }
}

/// A positive, finite number of seconds.
pub(crate) fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| errors::InvalidInput::new_err(format!("{name} must be a positive number of seconds")))
}
