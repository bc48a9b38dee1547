//! heimdall-core's integration tests: one binary, one module per area.

mod pdp;
mod support;
