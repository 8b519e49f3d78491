//! # rvs-core: the IPVS engine, pure
//!
//! The model (virtual services, real servers, flags, validation), every IPVS scheduler,
//! persistence templates (and the `sip` persistence engine), the connection table with the
//! TCP/UDP state machines, and the statistics with the kernel's rate estimator. No sockets, no
//! clock reads, no global state: time ([`time::Tick`]) and randomness ([`rng::Rng`]) are
//! arguments, so every decision replays exactly.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod conn;
pub mod datapath;
pub mod dest;
pub mod error;
pub mod invariants;
pub mod ipvs;
pub mod model;
pub mod pe;
pub mod rng;
pub mod sched;
pub mod service;
pub mod stats;
pub mod time;

pub use error::IpvsError;
