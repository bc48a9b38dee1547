//! Endpoint → action mappings: the pattern language and the compiled resolver.
