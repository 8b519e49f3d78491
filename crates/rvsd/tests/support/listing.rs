//! Readers of rvsadm's listings (`-Ln`, `-Lnc`, `-Ln --stats`): the rows the tests compare.

/// One real server of `-Ln`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DestRow {
    /// the service as `PROTO ADDR:PORT` (padding collapsed)
    pub service: String,
    /// `ADDR:PORT`
    pub addr: String,
    /// `Masq`, `Route`, `Tunnel`, `Local` (empty in a `--persistent-conn` listing)
    pub fwd: String,
    /// weight
    pub weight: i64,
    /// ActiveConn
    pub active: u64,
    /// InActConn
    pub inact: u64,
    /// PersistConn (listed with `--persistent-conn`)
    pub persist: Option<u64>,
}

/// Real-server rows of a `-Ln` listing (also with `--persistent-conn`), in listing order.
pub fn dests(listing: &str) -> Vec<DestRow> {
    let mut service = String::new();
    let mut rows = Vec::new();
    for line in listing.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["->", "RemoteAddress:Port", ..] => {}
            ["->", addr, rest @ ..] if rest.len() == 4 => {
                let n = |w: &str| -> u64 { w.parse().expect("a count") };
                // `--persistent-conn` lists Weight PersistConn ActiveConn InActConn and no
                // forwarding method
                let (fwd, persist) = match rest[0].parse::<i64>() {
                    Ok(_) => (String::new(), Some(n(rest[1]))),
                    Err(_) => (rest[0].to_string(), None),
                };
                let at = usize::from(persist.is_none());
                rows.push(DestRow {
                    service: service.clone(),
                    addr: addr.to_string(),
                    fwd,
                    weight: rest[at].parse().expect("weight"),
                    active: n(rest[2]),
                    inact: n(rest[3]),
                    persist,
                });
            }
            [proto @ ("TCP" | "UDP" | "SCTP"), addr, ..] => service = format!("{proto} {addr}"),
            ["FWM", ..] => service = w[..2].join(" "),
            _ => {}
        }
    }
    rows
}

/// One row of `-Lnc`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConnRow {
    /// `TCP`, `UDP`, `IP`
    pub proto: String,
    /// `MM:SS`
    pub expire: String,
    /// state (`ESTABLISHED`, `TIME_WAIT`, `UDP`, `NONE`, `ASSURED`, …)
    pub state: String,
    /// client `ADDR:PORT`
    pub source: String,
    /// virtual `ADDR:PORT`
    pub virt: String,
    /// real server `ADDR:PORT`
    pub dest: String,
}

/// The rows of a `-Lnc` listing.
pub fn conns(listing: &str) -> Vec<ConnRow> {
    listing
        .lines()
        .filter_map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                [proto @ ("TCP" | "UDP" | "SCTP" | "IP"), expire, state, s, v, d, ..]
                    if expire.contains(':') =>
                {
                    Some(ConnRow {
                        proto: proto.to_string(),
                        expire: expire.to_string(),
                        state: state.to_string(),
                        source: s.to_string(),
                        virt: v.to_string(),
                        dest: d.to_string(),
                    })
                }
                _ => None,
            }
        })
        .collect()
}

/// One counter row of `-Ln --stats`: a service (`dest` None) or one of its real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatRow {
    /// `PROTO ADDR:PORT`
    pub service: String,
    /// the real server's `ADDR:PORT`
    pub dest: Option<String>,
    /// the Conns column
    pub conns: u64,
}

fn number(word: &str) -> u64 {
    let (digits, mult) = match word.chars().last() {
        Some('K') => (&word[..word.len() - 1], 1_000),
        Some('M') => (&word[..word.len() - 1], 1_000_000),
        Some('G') => (&word[..word.len() - 1], 1_000_000_000),
        _ => (word, 1),
    };
    digits.parse::<u64>().expect("a count") * mult
}

/// The Conns column of a `-Ln --stats` listing.
pub fn stats(listing: &str) -> Vec<StatRow> {
    let mut service = String::new();
    let mut rows = Vec::new();
    for line in listing.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["->", "RemoteAddress:Port", ..] => {}
            ["->", addr, conns, ..] => rows.push(StatRow {
                service: service.clone(),
                dest: Some(addr.to_string()),
                conns: number(conns),
            }),
            [proto @ ("TCP" | "UDP" | "SCTP"), addr, conns, ..] => {
                service = format!("{proto} {addr}");
                rows.push(StatRow {
                    service: service.clone(),
                    dest: None,
                    conns: number(conns),
                });
            }
            _ => {}
        }
    }
    rows
}

/// The Conns of `service` (`dest` None) or of one of its real servers.
pub fn conns_of(listing: &str, service: &str, dest: Option<&str>) -> u64 {
    stats(listing)
        .into_iter()
        .find(|r| r.service == service && r.dest.as_deref() == dest)
        .unwrap_or_else(|| panic!("no stats row {service} {dest:?} in\n{listing}"))
        .conns
}

/// A TCP state in which the connection is over (either side closed).
pub fn is_closing(state: &str) -> bool {
    matches!(
        state,
        "FIN_WAIT" | "TIME_WAIT" | "CLOSE" | "CLOSE_WAIT" | "LAST_ACK"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LN: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  127.250.0.1:80 rr persistent 60
  -> 127.250.10.1:8080            Masq    3      1          8         
UDP  [::1]:53 wlc
  -> [::1]:5353                   Route   0      0          2         
";
    const PERSIST: &str = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn 
  -> RemoteAddress:Port
TCP  127.250.0.1:80 rr persistent 60
  -> 127.250.10.1:8080            3         5           1          8         
";

    #[test]
    fn dest_rows_with_and_without_persistent_conn() {
        let rows = dests(LN);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].service.as_str(),
                rows[0].addr.as_str(),
                rows[0].fwd.as_str()
            ),
            ("TCP 127.250.0.1:80", "127.250.10.1:8080", "Masq")
        );
        assert_eq!((rows[0].weight, rows[0].active, rows[0].inact), (3, 1, 8));
        assert_eq!(
            (rows[1].service.as_str(), rows[1].inact),
            ("UDP [::1]:53", 2)
        );
        let p = dests(PERSIST);
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].weight, p[0].persist, p[0].active, p[0].inact),
            (3, Some(5), 1, 8)
        );
    }

    #[test]
    fn connection_and_stats_rows() {
        let lnc = "IPVS connection entries
pro expire state       source             virtual            destination
TCP 14:59  ESTABLISHED 127.1.50.2:5123    127.1.0.100:80     127.1.10.1:80
UDP 04:59  UDP         127.1.50.7:40000   127.1.0.100:53     127.1.10.3:53
";
        let rows = conns(lnc);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].state.as_str(),
                rows[0].source.as_str(),
                rows[1].dest.as_str()
            ),
            ("ESTABLISHED", "127.1.50.2:5123", "127.1.10.3:53")
        );
        let st = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  127.250.0.1:80                     12        0        0        0        0
  -> 127.250.10.1:8080                  2K        0        0        0        0
";
        assert_eq!(conns_of(st, "TCP 127.250.0.1:80", None), 12);
        assert_eq!(
            conns_of(st, "TCP 127.250.0.1:80", Some("127.250.10.1:8080")),
            2000
        );
    }
}
