//! Scaffolding; filled in by the issue that builds this crate.
