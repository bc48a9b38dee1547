//! Test support: throwaway Heimdalls, a real Cerbos per test, and a fake one for faults the real one
//! cannot show.

// Tests (and their helpers) may unwrap: a panic is a test failure with a message.
#![allow(clippy::unwrap_used)]

pub(crate) use heimdall_core::test_utils::cerbos;
pub(crate) mod fake_cerbos;
pub(crate) mod jwks;

use heimdall_core::model::{Caller, Claims, Subject};
use heimdall_core::test_utils::TestDatabase;
use heimdall_core::{Config, Heimdall};

/// A Heimdall on `db` with the built-in PDP.
pub(crate) async fn heimdall(db: &TestDatabase) -> Heimdall {
    Heimdall::builder(Config {
        database_url: db.url.clone(),
        ..Config::default()
    })
    .build()
    .await
    .unwrap_or_else(|e| panic!("{}: {e}", db.backend))
}

/// Provisions `subject` as if they had presented a valid token.
pub(crate) async fn caller(h: &Heimdall, subject: &str) -> Caller {
    h.provision(claims(subject), &[]).await.unwrap()
}

pub(crate) fn claims(subject: &str) -> Claims {
    Claims {
        subject: Subject::parse(subject).unwrap(),
        display_name: None,
        email: None,
    }
}

pub(crate) use heimdall_core::test_utils::root;
