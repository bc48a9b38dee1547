//! heimdall-http: the REST server and the `heimdall` command.
//!
//! Configuration comes from the environment variables of the reference spec (`DB_DSN`, `CERBOS_CHECK_URL`,
//! `CERBOS_ADMIN_URL`, ...) or the matching flags; see [`settings::Settings`]. The server lives in
//! [`server`]: a handler parses, makes one call into heimdall-core, and converts the answer.

pub mod demo;
pub mod server;
pub mod settings;
pub mod telemetry;
