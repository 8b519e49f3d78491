//! # rvs-proxy: the userspace data plane
//!
//! Placeholder while the crate is built up; see ARCHITECTURE.md.
