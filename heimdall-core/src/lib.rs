#![doc = include_str!("../README.md")]

pub mod clock;
pub mod error;
pub mod mapping;
pub mod model;
pub mod pdp;

pub use crate::clock::{Clock, SystemClock};
pub use crate::error::{Error, ErrorKind, Result};
mod store;
