//! End-to-end tests of the REST server: the `heimdall` binary over real HTTP, with PostgreSQL, SQLite and the
//! real Cerbos, and tokens signed by the test with keys whose JWKS it serves on loopback.

// Tests may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

mod adapter;
mod bounds;
mod console;
mod crud;
mod demo;
mod errors;
mod flow;
mod fuzz;
mod keys;
mod on_demand;
mod ops;
mod staleness;
mod support;
mod tokens;
mod walkthrough;
