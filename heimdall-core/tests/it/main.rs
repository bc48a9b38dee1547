//! heimdall-core's integration tests: one binary, one module per area.

mod concurrency;
mod pdp;
mod store_suite;
mod support;
mod sync;
