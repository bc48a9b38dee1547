//! heimdall-py: the Python extension module (`heimdall`, built with maturin).
//!
//! Not built yet: the Python issue fills this crate with PyO3 bindings over [`heimdall_core`].
