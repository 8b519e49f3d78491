//! The configurations of the reload tests: services on `127.B.0.V:80` with real servers
//! `127.B.10.I:8080` as an rvs TOML file, the answer a reload between two of them must give,
//! and readers of the listings that must (or must not) change.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use super::director::Director;
use super::listing;

/// Grace period of a removed real server (`drain_grace`).
pub const GRACE: Duration = Duration::from_secs(3);
/// Real servers listen on `127.B.10.I:RS_PORT`, services on `127.B.0.V:80`.
pub const RS_PORT: u16 = 8080;

/// One declared virtual service: `127.B.0.vip:80`, its scheduler, persistence and real
/// servers `(I, weight)` at `127.B.10.I`.
#[derive(Clone, Debug, PartialEq)]
pub struct Svc {
    /// `127.B.0.vip:80`
    pub vip: u8,
    /// the scheduler
    pub sched: &'static str,
    /// persistence timeout, seconds
    pub persist: Option<u32>,
    /// real servers `(I, weight)`
    pub reals: Vec<(u8, u32)>,
}

pub fn svc(vip: u8, sched: &'static str, persist: Option<u32>, reals: &[(u8, u32)]) -> Svc {
    Svc {
        vip,
        sched,
        persist,
        reals: reals.to_vec(),
    }
}

/// The rvs TOML file declaring `conf`.
pub fn toml(b: u8, conf: &[Svc]) -> String {
    let mut t = format!("[director]\ndrain_grace = \"{}s\"\n", GRACE.as_secs());
    for s in conf {
        t += &format!(
            "\n[[service]]\naddress = \"127.{b}.0.{}:80\"\nscheduler = \"{}\"\ndelay_loop = \"1s\"\nconnect_timeout = \"1s\"\n",
            s.vip, s.sched
        );
        if let Some(p) = s.persist {
            t += &format!("persistence = {{ timeout = \"{p}s\" }}\n");
        }
        for (i, w) in &s.reals {
            t += &format!(
                "\n[[service.server]]\naddress = \"127.{b}.10.{i}:{RS_PORT}\"\nweight = {w}\n\n[[service.server.check]]\nkind = \"tcp\"\n"
            );
        }
    }
    t
}

/// The answer a reload from `old` to `new` must give: services matched by address, changed
/// when their scheduler or persistence differ; real servers kept and draining counted in the
/// services declared before and after, added ones also in the services added.
pub fn summary(old: &[Svc], new: &[Svc]) -> String {
    let (mut s, mut r) = ([0usize; 4], [0usize; 3]);
    for n in new {
        let Some(o) = old.iter().find(|o| o.vip == n.vip) else {
            s[2] += 1;
            r[1] += n.reals.len();
            continue;
        };
        s[usize::from((o.sched, o.persist) != (n.sched, n.persist))] += 1;
        let has = |x: &Svc, i: u8| x.reals.iter().any(|(j, _)| *j == i);
        r[0] += n.reals.iter().filter(|(i, _)| has(o, *i)).count();
        r[1] += n.reals.iter().filter(|(i, _)| !has(o, *i)).count();
        r[2] += o.reals.iter().filter(|(i, _)| !has(n, *i)).count();
    }
    s[3] = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.vip == o.vip))
        .count();
    format!(
        "reloaded: services {} unchanged, {} changed, {} added, {} removed; real servers {} kept, {} added, {} draining\n",
        s[0], s[1], s[2], s[3], r[0], r[1], r[2]
    )
}

/// `PROTO SOURCE VIRTUAL DEST` of the persistence templates in `-Lnc` (client port 0).
pub fn templates(lnc: &str) -> BTreeSet<String> {
    listing::conns(lnc)
        .into_iter()
        .filter(|c| c.source.ends_with(":0"))
        .map(|c| format!("{} {} {} {}", c.proto, c.source, c.virt, c.dest))
        .collect()
}

/// `-Ln` must list exactly `conf`'s services with their schedulers, each declared real
/// server with its weight; any other real server is draining (weight 0) or `drained` of
/// them must be gone already.
pub fn check_listing(b: u8, ln: &str, conf: &[Svc], step: usize) {
    let services: Vec<&str> = ln.lines().filter(|l| l.starts_with("TCP")).collect();
    let want: Vec<String> = conf
        .iter()
        .map(|s| {
            let p = s
                .persist
                .map_or(String::new(), |p| format!(" persistent {p}"));
            format!("TCP  127.{b}.0.{}:80 {}{p}", s.vip, s.sched)
        })
        .collect();
    let got: Vec<String> = services.iter().map(|l| l.trim_end().to_string()).collect();
    let (mut got_sorted, mut want_sorted) = (got.clone(), want.clone());
    got_sorted.sort();
    want_sorted.sort();
    assert_eq!(
        got_sorted, want_sorted,
        "services after reload {step}:\n{ln}"
    );
    for row in listing::dests(ln) {
        let s = conf
            .iter()
            .find(|s| row.service == format!("TCP 127.{b}.0.{}:80", s.vip))
            .expect("a declared service");
        let declared = s
            .reals
            .iter()
            .find(|(i, _)| row.addr == format!("127.{b}.10.{i}:{RS_PORT}"));
        match declared {
            Some((_, w)) => assert_eq!(row.weight, i64::from(*w), "{row:?} after {step}"),
            None => assert_eq!(row.weight, 0, "undeclared {row:?} after {step} drains"),
        }
    }
    for s in conf {
        for (i, _) in &s.reals {
            let addr = format!("127.{b}.10.{i}:{RS_PORT}");
            let svc = format!("TCP 127.{b}.0.{}:80", s.vip);
            assert!(
                listing::dests(ln)
                    .iter()
                    .any(|r| r.service == svc && r.addr == addr),
                "{addr} of {svc} missing after reload {step}:\n{ln}"
            );
        }
    }
}

pub fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `-Lnc` with the expiry column blanked (it counts down between two listings).
pub fn without_expiry(lnc: &str) -> String {
    lnc.lines()
        .map(|l| match l.split_once(' ') {
            Some((p @ ("TCP" | "UDP"), rest)) => {
                let rest = rest.trim_start();
                let after = rest.split_once(' ').map_or("", |(_, r)| r);
                format!("{p} --:-- {after}\n")
            }
            _ => format!("{l}\n"),
        })
        .collect()
}

/// The state a refused reload must leave exactly as it was.
pub fn snapshot(d: &Director) -> [String; 3] {
    [
        d.text("-Ln"),
        without_expiry(&d.text("-Lnc")),
        d.text("-Ln --stats"),
    ]
}
