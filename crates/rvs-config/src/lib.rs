//! # rvs-config: the operator-facing formats of rvs, pure
//!
//! - [`ipvsadm`]: the ipvsadm 1.31 command line: every command and option, its defaults, its
//!   error texts and exit statuses, `-h`/`-v`, and the `-R` line reader.
//! - [`render`]: what ipvsadm prints for a state: `-L` in all its modes, `-S`, `-Lc`,
//!   `--timeout`, `--daemon`, and the `--json` extension.
//! - [`keepalived`]: keepalived.conf read as it is (virtual servers, groups, real servers,
//!   checkers, includes) into a [`spec::Config`].
//! - [`ldirectord`]: ldirectord.cf read as it is, into a [`spec::Config`].
//! - [`spec`]: the declarative configuration (services, real servers, checks, sorry server,
//!   quorum) that the rvs TOML format, keepalived.conf and ldirectord.cf are read into.
//! - [`rvsconf`]: the rvs configuration file (TOML), read and validated into a [`spec::Config`].
//!
//! No I/O: name resolution (`-L` without `-n`) goes through the [`Names`] trait, which the
//! binaries implement with `/etc/services` and reverse DNS.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::net::IpAddr;

pub mod ipvsadm;
pub mod keepalived;
pub mod ldirectord;
pub mod render;
pub mod rvsconf;
pub mod spec;

/// The listing options of `-L` (and of `-S`'s `-n` and `--extended`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOpts {
    /// `-n`: numeric addresses and ports
    pub numeric: bool,
    /// `-c`: the connection table
    pub connection: bool,
    /// `--timeout`
    pub timeout: bool,
    /// `--daemon`
    pub daemon: bool,
    /// `--stats`
    pub stats: bool,
    /// `--rate`
    pub rate: bool,
    /// `--thresholds`
    pub thresholds: bool,
    /// `--persistent-conn`
    pub persistent_conn: bool,
    /// `--tun-info`
    pub tun_info: bool,
    /// `--exact` / `-X`
    pub exact: bool,
    /// `--nosort`
    pub nosort: bool,
    /// extension: `--json`
    pub json: bool,
    /// extension: `--extended` (with `-S`): rules also carry rvs's extension options
    pub extended: bool,
}

/// Name lookups for listings without `-n` (`gethostbyaddr`, `getservbyport`).
pub trait Names {
    /// The primary host name of an address, if it has one.
    fn host(&self, addr: &IpAddr) -> Option<String>;
    /// The service name of a port for `tcp`, `udp` or `sctp`, if `/etc/services` has one.
    fn service(&self, port: u16, proto: &str) -> Option<String>;
}

/// Names that never resolve (what `-n` prints).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNames;

impl Names for NoNames {
    fn host(&self, _addr: &IpAddr) -> Option<String> {
        None
    }
    fn service(&self, _port: u16, _proto: &str) -> Option<String> {
        None
    }
}
