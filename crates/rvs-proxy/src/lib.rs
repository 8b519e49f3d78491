//! # rvs-proxy: the userspace data plane
//!
//! Placeholder while the crate is built up; see ARCHITECTURE.md.

#[allow(unsafe_code)] // splice(2), pipe2(2), fcntl(2)
pub mod pipe;
pub mod proxy_header;
pub mod relay;
#[allow(unsafe_code)] // getsockopt(TCP_INFO)
pub mod tcpinfo;
