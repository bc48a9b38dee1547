//! heimdall-core's integration tests: one binary, one module per area.

// Tests and their helpers may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

mod api_keys;
mod concurrency;
mod convergence;
mod deltas;
mod escalation;
mod explain;
mod failures;
mod grants_changes;
mod identity;
mod local_pdp;
mod pdp;
mod scope;
mod store_suite;
mod support;
mod sync;
mod versions;
