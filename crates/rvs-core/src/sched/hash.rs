//! Hash primitives of the hashing schedulers (placeholder until implemented).
