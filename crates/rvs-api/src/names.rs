//! Host and service names as ipvsadm looks them up through the C library, read from the
//! hosts and services files (`/etc/hosts`, `/etc/services`).
//!
//! - parsing (`Resolve`): a host name is looked up in the hosts file (first IPv4 address of a
//!   line naming it, canonical name or alias), then through the system resolver
//!   (`getaddrinfo` via std's `ToSocketAddrs`, first IPv4 answer), as `gethostbyname` does;
//!   a service name in the services file (name or alias, for the protocol);
//! - listings (`Names`): an address's name is the canonical name of the first hosts-file line
//!   with that address, else what the system resolver answers for it (`getnameinfo`, which
//!   follows the machine's name-service order, reverse DNS included, as ipvsadm's
//!   `gethostbyaddr` does); an address without a name is printed as a number. A port's name
//!   is the first services entry with that port and protocol (`getservbyport`).
//!
//! [`SystemNames::load`] reads both files once; build one per command so edits are seen.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use rvs_config::ipvsadm::Resolve;
use rvs_config::Names;

/// One hosts-file line: an address and its names (canonical first).
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostLine {
    addr: IpAddr,
    names: Vec<String>,
}

/// One services-file line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ServLine {
    names: Vec<String>,
    port: u16,
    proto: String,
}

/// The hosts and services tables of this machine.
#[derive(Clone, Debug, Default)]
pub struct SystemNames {
    hosts: Vec<HostLine>,
    services: Vec<ServLine>,
    /// also ask the system resolver for host names missing from the hosts file
    dns: bool,
}

fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split('#').next().unwrap_or("").split_whitespace()
}

fn parse_hosts(text: &str) -> Vec<HostLine> {
    text.lines()
        .filter_map(|line| {
            let mut w = words(line);
            let addr = w.next()?.parse().ok()?;
            let names: Vec<String> = w.map(str::to_string).collect();
            (!names.is_empty()).then_some(HostLine { addr, names })
        })
        .collect()
}

fn parse_services(text: &str) -> Vec<ServLine> {
    text.lines()
        .filter_map(|line| {
            let mut w = words(line);
            let name = w.next()?.to_string();
            let (port, proto) = w.next()?.split_once('/')?;
            let mut names = vec![name];
            names.extend(w.map(str::to_string));
            Some(ServLine {
                names,
                port: port.parse().ok()?,
                proto: proto.to_string(),
            })
        })
        .collect()
}

impl SystemNames {
    /// The tables of `/etc/hosts` and `/etc/services` (a missing file is an empty table),
    /// with the system resolver as the fallback for host names.
    pub fn load() -> SystemNames {
        let mut names =
            SystemNames::from_files(Path::new("/etc/hosts"), Path::new("/etc/services"));
        names.dns = true;
        names
    }

    /// The tables of the given files only (no resolver fallback).
    pub fn from_files(hosts: &Path, services: &Path) -> SystemNames {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        SystemNames::from_text(&read(hosts), &read(services))
    }

    /// Tables from the text of a hosts file and of a services file (no resolver fallback).
    pub fn from_text(hosts: &str, services: &str) -> SystemNames {
        SystemNames {
            hosts: parse_hosts(hosts),
            services: parse_services(services),
            dns: false,
        }
    }
}

impl Resolve for SystemNames {
    fn host(&self, name: &str) -> Option<Ipv4Addr> {
        let from_file = self.hosts.iter().find_map(|h| match h.addr {
            IpAddr::V4(a) if h.names.iter().any(|n| n == name) => Some(a),
            _ => None,
        });
        from_file.or_else(|| {
            if !self.dns {
                return None;
            }
            (name, 0u16)
                .to_socket_addrs()
                .ok()?
                .find_map(|sa| match sa {
                    SocketAddr::V4(v4) => Some(*v4.ip()),
                    SocketAddr::V6(_) => None,
                })
        })
    }

    fn service(&self, name: &str, proto: &str) -> Option<u16> {
        self.services
            .iter()
            .find(|s| s.proto == proto && s.names.iter().any(|n| n == name))
            .map(|s| s.port)
    }
}

impl Names for SystemNames {
    fn host(&self, addr: &IpAddr) -> Option<String> {
        let from_file = self
            .hosts
            .iter()
            .find(|h| h.addr == *addr)
            .map(|h| h.names[0].clone());
        from_file.or_else(|| {
            if !self.dns {
                return None;
            }
            // getnameinfo answers the number itself when no name exists
            dns_lookup::lookup_addr(addr)
                .ok()
                .filter(|name| name.parse::<IpAddr>().is_err())
        })
    }

    fn service(&self, port: u16, proto: &str) -> Option<String> {
        self.services
            .iter()
            .find(|s| s.port == port && s.proto == proto)
            .map(|s| s.names[0].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "127.0.0.1 localhost\n# c\n10.0.0.9 web1 web1.lan # x\n\
                         10.0.0.9 other\n::1 localhost ip6-localhost\n";
    const SERVICES: &str = "http 80/tcp www # WWW\nhttp 80/udp\ndomain 53/udp\nbad\n";

    #[test]
    fn forward_lookups_take_names_and_aliases() {
        let n = SystemNames::from_text(HOSTS, SERVICES);
        assert_eq!(
            Resolve::host(&n, "web1.lan"),
            Some("10.0.0.9".parse().unwrap())
        );
        assert_eq!(Resolve::host(&n, "localhost"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(Resolve::host(&n, "nope"), None);
        assert_eq!(Resolve::service(&n, "www", "tcp"), Some(80));
        assert_eq!(Resolve::service(&n, "domain", "tcp"), None);
    }

    #[test]
    fn reverse_lookups_take_the_first_line_and_canonical_name() {
        let n = SystemNames::from_text(HOSTS, SERVICES);
        let a: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(Names::host(&n, &a).as_deref(), Some("web1"));
        assert_eq!(
            Names::host(&n, &"::1".parse().unwrap()).as_deref(),
            Some("localhost")
        );
        assert_eq!(Names::service(&n, 53, "udp").as_deref(), Some("domain"));
        assert_eq!(Names::service(&n, 53, "tcp"), None);
    }
}
