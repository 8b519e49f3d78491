//! What ipvsadm 1.31 prints for a state (`ipvsadm.c`: `list_all`, `list_service`,
//! `print_title`, `print_service_entry`, `print_largenum`, `list_conn`, `print_conn`,
//! `list_timeout`, `list_daemon`; `libipvs.c`: `ipvs_cmp_services`, `ipvs_cmp_dests`).
//!
//! Every function is pure: it takes the core's [`Ipvs`], the listing options, and a [`Names`]
//! resolver, and returns the exact text (newlines included). The caller writes it out.
//!
//! ```
//! use rvs_config::{render, ListOpts, NoNames};
//! use rvs_core::ipvs::{Config, Ipvs};
//! let ipvs = Ipvs::new(Config::default());
//! let opts = ListOpts { numeric: true, ..ListOpts::default() };
//! let text = render::list_all(&ipvs, &NoNames, &opts);
//! assert!(text.starts_with("IP Virtual Server version 1.2.1 (size=4096)\n"));
//! ```
//!
//! Quirks reproduced on purpose (each recorded from the real ipvsadm, see
//! `tests/golden/listing/`):
//! - sorting compares host-order 32-bit words (and fwmarks) by *wrapping subtraction read as a
//!   signed int*, so 200.0.0.1 sorts before 10.0.0.1 and fwmark 4294967295 before fwmark 1;
//!   glibc's `qsort` (a top-down merge sort in Debian 12's glibc 2.36) is replayed so that the
//!   order is the same even where that comparison is not transitive;
//! - fwmarks are printed as signed ints (`FWM  -1`, `-f -1`);
//! - IPv4 service names are cut at 33 bytes, IPv4 destination names at 28, any name at 59;
//! - the persistence engine is listed only for persistent services (but always saved);
//! - `--rate` prints the destinations' CPS/InPPS/OutPPS plainly, ignoring `--exact`;
//! - `-Lc --persistent-conn` data lines swap the 18/16 widths of its header;
//! - thresholds are not saved by `-S`.
#![allow(clippy::module_name_repetitions)]

mod conns;
mod json;
mod num;
mod services;
mod sort;

use std::net::IpAddr;

use rvs_core::ipvs::Ipvs;
use rvs_core::model::{Protocol, ServiceKey};

use crate::{ListOpts, Names};

pub use conns::list_conns;
pub use json::{conns_json, daemons_json, services_json, timeout_json};
pub use num::largenum;
pub use services::{list_all, list_all_from, list_service, save, save_from};
pub use sort::{cmp_words, glibc_msort};

/// One connection-synchronisation daemon, as `--daemon` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Daemon {
    /// `true` for the master daemon, `false` for the backup
    pub master: bool,
    /// multicast interface name
    pub mcast_ifn: String,
    /// sync id
    pub syncid: u32,
    /// maximum sync message length (0: not reported)
    pub maxlen: u16,
    /// multicast group (`None`: not reported)
    pub group: Option<IpAddr>,
    /// UDP port (0: not reported)
    pub port: u16,
    /// multicast TTL (0: not reported)
    pub ttl: u8,
}

/// `ipvsadm -L --timeout`: `Timeout (tcp tcpfin udp): 900 120 300`.
pub fn list_timeout(ipvs: &Ipvs) -> String {
    let (tcp, fin, udp) = ipvs.timeouts();
    format!("Timeout (tcp tcpfin udp): {tcp} {fin} {udp}\n")
}

/// `ipvsadm -L --daemon`: one line per daemon, masters first; nothing when none runs.
pub fn list_daemons(daemons: &[Daemon]) -> String {
    let mut out = String::new();
    for master in [true, false] {
        for d in daemons.iter().filter(|d| d.master == master) {
            out.push_str(&daemon_line(d));
        }
    }
    out
}

fn daemon_line(d: &Daemon) -> String {
    let kind = if d.master { "master" } else { "backup" };
    let mut s = format!(
        "{kind} sync daemon (mcast={}, syncid={}",
        d.mcast_ifn, d.syncid
    );
    if d.maxlen != 0 {
        s.push_str(&format!(", maxlen={}", d.maxlen));
    }
    if let Some(g) = d.group {
        s.push_str(&format!(", group={g}"));
    }
    if d.port != 0 {
        s.push_str(&format!(", port={}", d.port));
    }
    if d.ttl != 0 {
        s.push_str(&format!(", ttl={}", d.ttl));
    }
    s.push_str(")\n");
    s
}

/// Everything `ipvsadm -L` prints, chosen as ipvsadm chooses: `-c` first, then the one
/// service `service` (`-L -t …`), then `--timeout`, then `--daemon`, else the whole table;
/// with `--json` the JSON document of the same choice. `now` is the connection table's clock
/// (only `-c` uses it). `None`: the service does not exist (ipvsadm prints `No such service`
/// on stderr and exits 1). Option conflicts (`-c --stats`, …) are the parser's business.
pub fn listing(
    ipvs: &Ipvs,
    now: rvs_core::time::Tick,
    names: &dyn Names,
    opts: &ListOpts,
    service: Option<&ServiceKey>,
    daemons: &[Daemon],
) -> Option<String> {
    if opts.json {
        return Some(if opts.connection {
            conns_json(ipvs, now)
        } else if service.is_some() {
            services_json(ipvs, service, opts.nosort)?
        } else if opts.timeout {
            timeout_json(ipvs)
        } else if opts.daemon {
            daemons_json(daemons)
        } else {
            services_json(ipvs, None, opts.nosort)?
        });
    }
    Some(if opts.connection {
        list_conns(ipvs, now, names, opts)
    } else if let Some(key) = service {
        list_service(ipvs, key, names, opts)?
    } else if opts.timeout {
        list_timeout(ipvs)
    } else if opts.daemon {
        list_daemons(daemons)
    } else {
        list_all(ipvs, names, opts)
    })
}

/// `addrport_to_anyname`: `addr:port` (IPv6 in brackets), names looked up unless numeric;
/// the port name is looked up for TCP, UDP and SCTP only. Cut at 59 bytes (ipvsadm's
/// 60-byte buffer).
pub(crate) fn addrport(
    addr: &IpAddr,
    port: u16,
    proto: Protocol,
    names: &dyn Names,
    numeric: bool,
) -> String {
    let (host, serv) = if numeric {
        (addr.to_string(), port.to_string())
    } else {
        let host = names.host(addr).unwrap_or_else(|| addr.to_string());
        let serv = proto_lookup_name(proto)
            .and_then(|p| names.service(port, p))
            .unwrap_or_else(|| port.to_string());
        (host, serv)
    };
    let s = match addr {
        IpAddr::V4(_) => format!("{host}:{serv}"),
        IpAddr::V6(_) => format!("[{host}]:{serv}"),
    };
    cut(s, 59)
}

fn proto_lookup_name(proto: Protocol) -> Option<&'static str> {
    match proto {
        Protocol::Tcp => Some("tcp"),
        Protocol::Udp => Some("udp"),
        Protocol::Sctp => Some("sctp"),
        Protocol::Ip => None,
    }
}

/// The first `max` bytes of `s` (at a character boundary).
pub(crate) fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemons_masters_first_and_optional_fields() {
        let b = Daemon {
            master: false,
            mcast_ifn: "eth1".into(),
            syncid: 3,
            ..Daemon::default()
        };
        let m = Daemon {
            master: true,
            mcast_ifn: "eth0".into(),
            syncid: 0,
            maxlen: 1472,
            group: Some("224.0.0.81".parse().unwrap()),
            port: 8848,
            ttl: 1,
        };
        assert_eq!(
            list_daemons(&[b, m]),
            "master sync daemon (mcast=eth0, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
             backup sync daemon (mcast=eth1, syncid=3)\n"
        );
        assert_eq!(list_daemons(&[]), "");
    }

    #[test]
    fn names_are_cut_at_59_bytes() {
        struct Long;
        impl Names for Long {
            fn host(&self, _: &IpAddr) -> Option<String> {
                Some("h".repeat(70))
            }
            fn service(&self, _: u16, _: &str) -> Option<String> {
                Some("http".into())
            }
        }
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(addrport(&a, 80, Protocol::Tcp, &Long, false).len(), 59);
        assert_eq!(
            addrport(&a, 80, Protocol::Ip, &NoNamesProbe, false),
            "10.0.0.1:80"
        );
    }

    struct NoNamesProbe;
    impl Names for NoNamesProbe {
        fn host(&self, _: &IpAddr) -> Option<String> {
            None
        }
        fn service(&self, _: u16, _: &str) -> Option<String> {
            panic!("protocol IP never looks a port up")
        }
    }
}
