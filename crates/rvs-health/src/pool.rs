//! The IPVS side of a service: the real servers the engine has put in the table, and the
//! changes that take it to the table the current state calls for.
//!
//! keepalived applies each decision as one `ipvs_cmd`; here each decision recomputes the whole
//! wanted table of the service and applies the difference, which gives the same commands
//! (removals first, so on a quorum change the real servers leave before the sorry server
//! comes, and the sorry server leaves before they return) and cannot drift.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rvs_config::spec::VirtualService;
use rvs_core::model::{DestConf, ServiceKey, SockAddr};

use crate::Action;

/// Real servers in the table by (address, port), with the settings given to IPVS.
pub(crate) type Table = BTreeMap<(IpAddr, u16), DestConf>;

/// Emit the changes from `cur` to `want` for every key of the service, and make `want`
/// current.
pub(crate) fn apply(keys: &[ServiceKey], cur: &mut Table, want: Table, out: &mut Vec<Action>) {
    for (&(addr, port), old) in cur.iter() {
        if !want.contains_key(&(addr, port)) {
            for key in keys {
                let d = old.port_for(key);
                out.push(Action::DelDest {
                    service: *key,
                    addr: d.addr,
                    port: d.port,
                });
            }
        }
    }
    for (k, new) in want.iter() {
        let Some(old) = cur.get(k).filter(|old| *old != new) else {
            continue;
        };
        for key in keys {
            let (was, dest) = (old.port_for(key), new.port_for(key));
            if was.port == dest.port {
                out.push(Action::EditDest {
                    service: *key,
                    dest,
                });
            } else {
                // a new forwarding method moves it in IPVS (direct routing takes the
                // service's port): the old entry goes, the new one comes
                out.push(Action::DelDest {
                    service: *key,
                    addr: was.addr,
                    port: was.port,
                });
                out.push(Action::AddDest {
                    service: *key,
                    dest,
                });
            }
        }
    }
    for (k, new) in want.iter() {
        if !cur.contains_key(k) {
            for key in keys {
                out.push(Action::AddDest {
                    service: *key,
                    dest: new.port_for(key),
                });
            }
        }
    }
    *cur = want;
}

/// How log lines name a service: `TCP 192.0.2.10:80`, and for a group its first member and
/// how many more.
pub(crate) fn service_label(vs: &VirtualService) -> String {
    match vs.keys.as_slice() {
        [] => "(no service)".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (+{} in group)", rest.len()),
    }
}

/// How log lines name a real server: `10.0.0.2:80`.
pub(crate) fn dest_label(d: &DestConf) -> String {
    SockAddr(d.addr, d.port).to_string()
}

/// The arguments ldirectord gives its `fallbackcommand` after `start`/`stop`: the virtual
/// service (`vip:port`, or the mark) and its protocol.
pub(crate) fn fallback_args(key: &ServiceKey) -> [String; 2] {
    match key {
        ServiceKey::Addr { proto, addr, port } => [
            SockAddr(*addr, *port).to_string(),
            proto.name().to_ascii_lowercase(),
        ],
        ServiceKey::Fwmark { mark, .. } => [mark.to_string(), "fwm".to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_core::model::{Forward, Protocol};

    fn key(port: u16) -> ServiceKey {
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: "192.0.2.10".parse().unwrap(),
            port,
        }
    }

    fn dest(last: u8, w: i32) -> DestConf {
        DestConf::new(IpAddr::from([10, 0, 0, last]), 8080)
            .fwd(Forward::Masq)
            .weight(w)
    }

    #[test]
    fn removals_come_before_edits_and_additions_for_every_key() {
        let keys = [key(80), key(81)];
        let mut cur = Table::new();
        cur.insert((dest(1, 1).addr, 8080), dest(1, 1));
        cur.insert((dest(2, 1).addr, 8080), dest(2, 1));
        let mut want = Table::new();
        want.insert((dest(2, 1).addr, 8080), dest(2, 5));
        want.insert((dest(3, 1).addr, 8080), dest(3, 1));
        let mut out = Vec::new();
        apply(&keys, &mut cur, want.clone(), &mut out);
        let text: Vec<String> = out.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            text,
            [
                "delete 10.0.0.1:8080 from TCP 192.0.2.10:80",
                "delete 10.0.0.1:8080 from TCP 192.0.2.10:81",
                "edit 10.0.0.2:8080 of TCP 192.0.2.10:80 weight 5",
                "edit 10.0.0.2:8080 of TCP 192.0.2.10:81 weight 5",
                "add 10.0.0.3:8080 to TCP 192.0.2.10:80 weight 1",
                "add 10.0.0.3:8080 to TCP 192.0.2.10:81 weight 1",
            ]
        );
        assert_eq!(cur, want);
        let mut again = Vec::new();
        apply(&keys, &mut cur, want, &mut again);
        assert!(again.is_empty());
    }

    #[test]
    fn direct_routing_takes_the_service_port() {
        let mut cur = Table::new();
        let mut want = Table::new();
        let d = DestConf::new(IpAddr::from([10, 0, 0, 1]), 8080);
        want.insert((d.addr, d.port), d);
        let mut out = Vec::new();
        apply(&[key(80)], &mut cur, want, &mut out);
        assert!(matches!(&out[0], Action::AddDest { dest, .. } if dest.port == 80));
    }
}
