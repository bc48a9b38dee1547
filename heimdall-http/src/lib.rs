//! heimdall-http: the `heimdall` command, and (with the HTTP issue) the axum REST server.
//!
//! Configuration comes from the environment variables of the reference spec (`DB_DSN`, `CERBOS_CHECK_URL`,
//! `CERBOS_ADMIN_URL`, ...) or the matching flags; see [`settings::Settings`].

pub mod settings;
