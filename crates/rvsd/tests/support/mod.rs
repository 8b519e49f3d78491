//! Helpers of the data-plane tests: an rvsd with its log ([`director`]), loopback
//! addresses and clients ([`net`]), real servers ([`servers`]),
//! HTTP-ish servers and clients ([`http`]), the reload
//! tests' configurations ([`reloadconf`]), the PROXY header reader
//! ([`proxyhdr`]), listing readers ([`listing`]), rvs-core as the expected decision
//! ([`model`]), kernel transcripts replayed through the data plane ([`golden`]), network
//! namespaces ([`netns`]), bounded waits ([`wait`]) and the health-checking tests' servers,
//! scripts and pool waits ([`hc`]).
#![allow(dead_code)]

pub mod director;
pub mod golden;
pub mod hc;
pub mod http;
pub mod listing;
pub mod model;
pub mod net;
pub mod netns;
pub mod proxyhdr;
pub mod reloadconf;
pub mod servers;
pub mod wait;
