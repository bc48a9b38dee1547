//! heimdall-uniffi: heimdall-core for JVM services, through UniFFI (proc-macros, no UDL).
//!
//! Thin bindings, like heimdall-py — nothing is decided here: [`Resolver`] is core's compiled mapping snapshot,
//! [`Authorizer`] core's per-request decision (what heimdall-adapter's tower Layer and heimdall-py's ASGI
//! middleware run), so a JVM service decides exactly as they do. Refused requests are answers
//! ([`Decision::Refused`], with the status, code and message the other frontends send), not errors; errors
//! ([`HeimdallError`], one exception hierarchy in Kotlin) are for configuration mistakes and closed objects.
//!
//! Every call runs on one Tokio runtime per process ([`runtime`]): a blocking call answers at once when the
//! answer needs nothing to wait for (a cached decision), else waits on the runtime; the `async` forms (Kotlin
//! `suspend`) run the rest on the runtime and are resumed when it ends. heimdall-jvm (Maven) packs the built
//! library with the generated Kotlin and adds the Servlet filter and the Ktor plugin.

uniffi::setup_scaffolding!();

mod authorizer;
mod errors;
pub mod fast;
mod resolver;
mod runtime;
mod settings;

pub use authorizer::{Authorizer, AuthorizerStats, Decision, Grant, Refusal};
pub use errors::HeimdallError;
pub use resolver::{Mapping, Match, Resolver};
pub use settings::{AuthorizerSettings, settings_from_env};
