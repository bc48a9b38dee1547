//! heimdall-py: the Python module `heimdall._heimdall` (wheel `heimdall`, built with maturin).
//!
//! Thin bindings over heimdall-core — nothing is decided here: `Resolver` is core's compiled mapping snapshot,
//! `Authorizer` core's per-request decision (what heimdall-adapter's tower Layer runs), `Heimdall` and
//! `AsyncHeimdall` core's embedded facade. Errors become one exception class per core error kind. Blocking
//! calls release the GIL; `async` forms return asyncio awaitables; the runtime and every live object are made
//! per process, so they survive `fork()` (see `runtime`). The ASGI middleware is Python
//! (`python/heimdall/asgi.py`) over `Authorizer.authorize_asgi`, which reads the scope here (`asgi`).

mod asgi;
mod authorizer;
mod errors;
mod facade;
mod resolver;
mod runtime;

use pyo3::prelude::*;

#[pymodule]
fn _heimdall(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    runtime::register(m)?;
    m.add_function(wrap_pyfunction!(asgi::bearer_token, m)?)?;
    m.add_class::<resolver::Resolver>()?;
    m.add_class::<resolver::Match>()?;
    m.add_class::<authorizer::Authorizer>()?;
    m.add_class::<authorizer::Grant>()?;
    m.add_class::<facade::Caller>()?;
    m.add_class::<facade::Heimdall>()?;
    m.add_class::<facade::AsyncHeimdall>()?;
    Ok(())
}
