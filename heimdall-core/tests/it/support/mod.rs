//! Test support: a real Cerbos per test, and a fake one for faults the real one cannot show.

// Tests (and their helpers) may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

pub(crate) mod cerbos;
pub(crate) mod fake_cerbos;
