//! Shared helpers of the listing tests.
pub mod transcript;
