#![doc = include_str!("../README.md")]

pub mod authorizer;
mod authz;
pub mod clock;
pub mod config;
pub mod error;
mod heimdall;
pub mod identity;
pub mod mapping;
pub mod model;
pub mod pdp;
mod store;
pub mod sync;
#[cfg(any(test, feature = "testing"))]
pub mod test_utils;

pub use crate::clock::{Clock, SystemClock};
pub use crate::config::Config;
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::heimdall::{
    API_KEY_CACHE_TTL, API_KEY_PREFIX, API_KEY_USE_AUDIT_INTERVAL, AdminScope, FAILURE_AUDIT_COUNT_DELAY,
    FAILURE_AUDIT_INTERVAL, FAILURE_AUDIT_ROWS, Heimdall, HeimdallBuilder, MappingFilter,
};
pub use crate::store::{ChangeRecord, OutboxStats};
