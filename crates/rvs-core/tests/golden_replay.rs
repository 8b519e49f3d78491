//! Replays the transcripts recorded from the real kernel IPVS (`tests/golden/*.golden`, made by
//! the job scripts in `tests/golden/jobs/`) through `rvs_core::ipvs::Ipvs` and requires the
//! same scheduling choices, the same per-server counters (weight, ActiveConn, InActConn,
//! PersistConn) and the same connection-table states.
//!
//! Each `conn` event is turned into the packet exchange the kernel saw: for NAT both
//! directions (handshake, one answer from the server, the client's close), for DR only the
//! client's packets (the input-only table). See `tests/golden/README.md` for the format.
//! A UDP conn line with `callid=TEXT` carries a SIP OPTIONS request with that Call-ID
//! (`callid=-`: the same request without a Call-ID header) in every datagram the client sends.

#[path = "support/ipvsadm.rs"]
mod ipvsadm;
#[path = "support/replay.rs"]
mod replay;

use std::fs;

use replay::{addr_port, fmt_ap, golden_files, Checks, Replay, EXPIRE_SLACK};
use rvs_core::model::ServiceKey;
use rvs_core::time::Tick;

/// The core's comparisons: per-server counters, connection entries, engine columns, Conns.
struct KernelChecks;

impl Checks for KernelChecks {
    fn check(&mut self, r: &mut Replay, line: usize, now: Tick, extra: &[&str]) {
        r.check(line, now, extra);
    }
    fn stats(&mut self, r: &mut Replay, line: usize, now: Tick, extra: &[&str]) {
        r.stats(line, now, extra);
    }
}

impl Replay {
    fn check(&mut self, line: usize, now: Tick, extra: &[&str]) {
        self.ipvs.advance(now);
        let mut kernel_conns = Vec::new();
        for l in extra {
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.first() {
                Some(&"dest") => self.check_dest(line, &w[1..]),
                Some(&"conn") => kernel_conns.push(w[1..].iter().map(|s| s.to_string()).collect()),
                _ => {}
            }
        }
        self.check_conns(line, now, kernel_conns);
        self.check_pe_columns(line, now, extra);
    }

    /// The `pe name` / `pe_data` columns of `ipvsadm -Lnc --persistent-conn` (`raw-Lcp`
    /// lines), for the rows that have them: source, virtual, destination, engine, data.
    fn check_pe_columns(&mut self, line: usize, now: Tick, extra: &[&str]) {
        let raw: Vec<&str> = extra
            .iter()
            .filter_map(|l| l.trim_start().strip_prefix("raw-Lcp |"))
            .collect();
        // nothing to compare when ipvsadm printed nothing or crashed (`raw-Lcp-status`: 1.31
        // overflows its line buffer on a 255-byte Call-ID)
        let crashed = extra
            .iter()
            .any(|l| l.trim_start().starts_with("raw-Lcp-status"));
        if raw.is_empty() || crashed {
            return;
        }
        let mut want: Vec<String> = raw
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|w| w.len() == 8 && w[0] != "pro")
            .map(|w| w[3..].join(" "))
            .collect();
        let mut got: Vec<String> = self
            .ipvs
            .conn_listing(now)
            .into_iter()
            .filter_map(|r| {
                let pe = self.ipvs.conn_pe(r.id)?;
                Some(format!(
                    "{} {} {} {} {}",
                    fmt_ap(&r.client.0, r.client.1),
                    fmt_ap(&r.virt.0, r.virt.1),
                    fmt_ap(&r.dest.0, r.dest.1),
                    pe.engine.name(),
                    String::from_utf8_lossy(&pe.data)
                ))
            })
            .collect();
        want.sort();
        got.sort();
        if want != got {
            self.fail(
                line,
                format!("persistence-engine columns differ:\n  kernel {want:?}\n  core   {got:?}"),
            );
        }
    }

    /// `stats` (recorded after the kernel's estimator sampled everything): each
    /// `  stats VSPEC... [RADDR:RPORT] conns=N` line is the Conns column of
    /// `ipvsadm -Ln --stats --exact` for a service or one of its real servers.
    fn stats(&mut self, line: usize, now: Tick, extra: &[&str]) {
        self.ipvs.advance(now);
        for l in extra {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.first() != Some(&"stats") {
                continue;
            }
            let want: u64 = w[w.len() - 1]
                .strip_prefix("conns=")
                .expect("conns=N")
                .parse()
                .expect("number");
            let body = &w[1..w.len() - 1];
            // a service line is VSPEC alone; a real-server line adds RADDR:RPORT
            let (vspec, rs) = match self.find_service(body) {
                Some(_) => (body, None),
                None => (&body[..body.len() - 1], body.last().copied()),
            };
            let got = self.find_service(vspec).and_then(|k| {
                let svc = self.ipvs.service(&k)?;
                match rs {
                    None => Some(svc.stats.shown().conns),
                    Some(r) => {
                        let (a, p) = addr_port(r);
                        let d = self
                            .ipvs
                            .service_dests(svc)
                            .find(|d| d.addr == a && d.port == p)?;
                        Some(d.stats.shown().conns)
                    }
                }
            });
            if got != Some(want) {
                self.fail(
                    line,
                    format!("{}: kernel conns {want}, core {got:?}", body.join(" ")),
                );
            }
        }
    }

    /// `dest VSPEC... RADDR:RPORT FWD weight=W active=A inact=I persist=P`
    fn check_dest(&mut self, line: usize, w: &[&str]) {
        let n = w.len();
        let vspec = &w[..n - 6];
        let (raddr, rport) = addr_port(w[n - 6]);
        let kv = |s: &str| {
            s.split_once('=')
                .expect("k=v")
                .1
                .parse::<i64>()
                .expect("num")
        };
        let want = (kv(w[n - 4]), kv(w[n - 3]), kv(w[n - 2]), kv(w[n - 1]));
        let Some(key) = self.find_service(vspec) else {
            self.fail(line, format!("no service {}", vspec.join(" ")));
            return;
        };
        let svc = self.ipvs.service(&key).expect("found");
        let got = self
            .ipvs
            .service_dests(svc)
            .find(|d| d.addr == raddr && d.port == rport)
            .map(|d| {
                (
                    i64::from(d.weight),
                    i64::from(d.activeconns),
                    i64::from(d.inactconns),
                    i64::from(d.persistconns),
                )
            });
        if got != Some(want) {
            self.fail(
                line,
                format!(
                    "{} {}: kernel (weight, active, inact, persist) = {want:?}, core {got:?}",
                    vspec.join(" "),
                    w[n - 6]
                ),
            );
        }
    }

    /// Compare the connection entries of this scenario's services.
    fn check_conns(&mut self, line: usize, now: Tick, kernel: Vec<Vec<String>>) {
        let ours_vip = |v: &str| -> bool {
            let (a, p) = addr_port(v);
            let mark = self.mark_for(&a);
            self.services.iter().any(|k| match k {
                ServiceKey::Addr { addr, port, .. } => *addr == a && (*port == p || *port == 0),
                ServiceKey::Fwmark { mark: m, .. } => {
                    *m == mark || rvs_core::datapath::mark_addr(k.family(), *m) == a
                }
            })
        };
        let mut want: Vec<(String, i64)> = kernel
            .iter()
            .filter(|w| ours_vip(&w[4]))
            .map(|w| {
                (
                    format!("{} {} {} {} {}", w[0], w[1], w[3], w[4], w[5]),
                    w[2].parse().unwrap_or(0),
                )
            })
            .collect();
        let mut got: Vec<(String, i64)> = self
            .ipvs
            .conn_listing(now)
            .into_iter()
            .filter(|r| ours_vip(&fmt_ap(&r.virt.0, r.virt.1)))
            .map(|r| {
                (
                    format!(
                        "{} {} {} {} {}",
                        r.proto.name(),
                        r.state,
                        fmt_ap(&r.client.0, r.client.1),
                        fmt_ap(&r.virt.0, r.virt.1),
                        fmt_ap(&r.dest.0, r.dest.1)
                    ),
                    r.expire_secs as i64,
                )
            })
            .collect();
        want.sort();
        got.sort();
        let same = want.len() == got.len()
            && want
                .iter()
                .zip(&got)
                .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() <= EXPIRE_SLACK);
        if !same {
            self.fail(
                line,
                format!("connections differ:\n  kernel {want:?}\n  core   {got:?}"),
            );
        }
    }
}

#[test]
fn kernel_transcripts_replay_identically() {
    let files = golden_files();
    assert!(!files.is_empty(), "no golden transcripts found");
    let mut failures = Vec::new();
    let mut decisions = 0;
    for f in &files {
        let text = fs::read_to_string(f).expect("read golden");
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let mut r = Replay::new(&name);
        r.run(&text, &mut KernelChecks);
        decisions += r.decisions;
        failures.extend(r.failures);
    }
    assert!(decisions > 0, "transcripts hold no decisions");
    eprintln!(
        "replayed {decisions} kernel decisions from {} transcripts",
        files.len()
    );
    assert!(
        failures.is_empty(),
        "{} mismatches against the kernel ({} decisions replayed):\n{}",
        failures.len(),
        decisions,
        failures.join("\n")
    );
}
