//! `ipvsadm -L -c [-n] [--persistent-conn]` (`ipvsadm.c: list_conn, print_conn`), from the
//! core's listing of `/proc/net/ip_vs_conn`.

use rvs_core::conn::ListedConn;
use rvs_core::ipvs::Ipvs;
use rvs_core::time::Tick;

use super::addrport;
use crate::{ListOpts, Names};

/// The connection table: two header lines, then one line per entry in table order.
pub fn list_conns(ipvs: &Ipvs, now: Tick, names: &dyn Names, opts: &ListOpts) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if opts.persistent_conn {
        out.push_str(&format!(
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} {}\n",
            "state", "source", "virtual", "destination", "pe name", "pe_data"
        ));
    } else {
        out.push_str(&format!(
            "pro expire {:<11} {:<18} {:<18} {}\n",
            "state", "source", "virtual", "destination"
        ));
    }
    for c in ipvs.conn_listing(now) {
        let pe = ipvs
            .conn_pe(c.id)
            .map(|p| (p.engine.name().to_string(), pe_token(&p.data)));
        out.push_str(&conn_line(&c, pe, names, opts));
    }
    out
}

/// What `sscanf("%s")` keeps of the engine data: up to the first blank.
fn pe_token(data: &[u8]) -> String {
    let end = data
        .iter()
        .position(|b| b.is_ascii_whitespace())
        .unwrap_or(data.len());
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// `MM:SS`, minutes unbounded.
pub(crate) fn expire_text(secs: u64) -> String {
    format!("{:02}:{:02}", secs / 60, secs % 60)
}

fn conn_line(
    c: &ListedConn,
    pe: Option<(String, String)>,
    names: &dyn Names,
    opts: &ListOpts,
) -> String {
    let n = opts.numeric;
    let cname = addrport(&c.client.0, c.client.1, c.proto, names, n);
    let vname = addrport(&c.virt.0, c.virt.1, c.proto, names, n);
    let dname = addrport(&c.dest.0, c.dest.1, c.proto, names, n);
    let head = format!(
        "{:<3} {:<6} {:<11} {cname:<18} {vname:<18}",
        c.proto.name(),
        expire_text(c.expire_secs),
        c.state
    );
    match pe {
        Some((name, data)) if opts.persistent_conn && !data.is_empty() => {
            format!("{head} {dname:<16} {name:<18} {data}\n")
        }
        _ => format!("{head} {dname}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_core::conn::ConnId;
    use rvs_core::model::Protocol;
    use std::net::IpAddr;

    struct Svc;
    impl Names for Svc {
        fn host(&self, a: &IpAddr) -> Option<String> {
            (a.to_string() == "10.0.0.1").then(|| "vip".to_string())
        }
        fn service(&self, port: u16, proto: &str) -> Option<String> {
            (port == 80).then(|| format!("http-{proto}"))
        }
    }

    fn row(proto: Protocol, v: &str) -> ListedConn {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        ListedConn {
            id: ConnId(0),
            proto,
            expire_secs: 65,
            state: "ESTABLISHED",
            client: (ip("192.168.0.2"), 40000),
            virt: (ip(v), 80),
            dest: (ip("10.1.0.1"), 80),
            flags: 0,
        }
    }

    #[test]
    fn expire_minutes_unbounded() {
        assert_eq!(expire_text(0), "00:00");
        assert_eq!(expire_text(59), "00:59");
        assert_eq!(expire_text(899), "14:59");
        assert_eq!(expire_text(6000), "100:00");
    }

    #[test]
    fn names_follow_the_protocol() {
        let o = ListOpts::default();
        assert_eq!(
            conn_line(&row(Protocol::Udp, "10.0.0.1"), None, &Svc, &o),
            "UDP 01:05  ESTABLISHED 192.168.0.2:40000  vip:http-udp       10.1.0.1:http-udp\n"
        );
        // protocol IP (fwmark templates): ports stay numbers
        assert_eq!(
            conn_line(&row(Protocol::Ip, "0.0.0.1"), None, &Svc, &o),
            "IP  01:05  ESTABLISHED 192.168.0.2:40000  0.0.0.1:80         10.1.0.1:80\n"
        );
    }

    #[test]
    fn pe_columns_swap_the_header_widths() {
        let o = ListOpts {
            numeric: true,
            persistent_conn: true,
            ..ListOpts::default()
        };
        let pe = Some(("sip".to_string(), pe_token(b"abc@host more")));
        assert_eq!(
            conn_line(&row(Protocol::Udp, "10.0.0.1"), pe.clone(), &Svc, &o),
            "UDP 01:05  ESTABLISHED 192.168.0.2:40000  10.0.0.1:80        10.1.0.1:80      sip                abc@host\n"
        );
        // without --persistent-conn the engine columns are not printed
        let plain = ListOpts {
            numeric: true,
            ..ListOpts::default()
        };
        assert!(conn_line(&row(Protocol::Udp, "10.0.0.1"), pe, &Svc, &plain)
            .ends_with(" 10.1.0.1:80\n"));
    }
}
