//! Readers of rvsadm's listings (`-Ln`, `-Lnc`, `-Ln --stats`): the rows the tests compare.

/// One real server of `-Ln`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DestRow {
    /// the service as `PROTO ADDR:PORT` (padding collapsed)
    pub service: String,
    /// `ADDR:PORT`
    pub addr: String,
    /// `Masq`, `Route`, `Tunnel`, `Local`
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
            ["->", addr, fwd, weight, counts @ ..] if matches!(counts.len(), 2 | 3) => {
                let n: Vec<u64> = counts.iter().map(|c| c.parse().expect("count")).collect();
                let (persist, active, inact) = match n.as_slice() {
                    [p, a, i] => (Some(*p), *a, *i),
                    [a, i] => (None, *a, *i),
                    _ => unreachable!(),
                };
                rows.push(DestRow {
                    service: service.clone(),
                    addr: addr.to_string(),
                    fwd: fwd.to_string(),
                    weight: weight.parse().expect("weight"),
                    active,
                    inact,
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
