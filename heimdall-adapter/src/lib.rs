//! heimdall-adapter: a tower Layer that authorizes requests to another Rust service.
//!
//! Not built yet: the adapter issue fills this crate (token verification, a local mapping snapshot from
//! [`heimdall_core::mapping`], a PDP check, 401/403).
