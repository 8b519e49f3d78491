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
    use super::expire_text;

    #[test]
    fn expire_minutes_unbounded() {
        assert_eq!(expire_text(0), "00:00");
        assert_eq!(expire_text(59), "00:59");
        assert_eq!(expire_text(899), "14:59");
        assert_eq!(expire_text(6000), "100:00");
    }
}
