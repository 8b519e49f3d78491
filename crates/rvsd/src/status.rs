//! `rvsadm --health`: what the checker knows of every service and real server, as a table or
//! as JSON (`--health --json`).

use std::fmt::Write;

use rvs_config::spec::Config;
use rvs_core::model::SockAddr;
use rvs_core::time::Tick;
use rvs_health::{kind_name, Health, RealId};
use serde::Serialize;

/// One service.
#[derive(Debug, Serialize)]
pub struct Service {
    /// `TCP 192.0.2.10:80` (every key of a group)
    pub service: Vec<String>,
    /// where the configuration declares it
    pub declared: String,
    /// holds its quorum
    pub quorum_up: bool,
    /// the sorry server is in service
    pub sorry_active: bool,
    /// the sorry server, if any
    pub sorry: Option<String>,
    /// its real servers
    pub reals: Vec<Real>,
}

/// One real server.
#[derive(Debug, Serialize)]
pub struct Real {
    /// `10.0.0.1:80`
    pub address: String,
    /// every check passes
    pub healthy: bool,
    /// each check: its kind and whether it passes
    pub checks: Vec<(String, bool)>,
    /// the weight the checks give it
    pub weight: i32,
    /// its weight in IPVS (`None`: not in the table)
    pub ipvs_weight: Option<i32>,
    /// ejected by passive health for this many more milliseconds
    pub ejected_ms: Option<u64>,
    /// slow start in progress
    pub ramping: bool,
}

/// The checker's state now.
pub fn collect(h: &Health, cfg: &Config, now: Tick) -> Vec<Service> {
    cfg.services
        .iter()
        .enumerate()
        .map(|(si, vs)| Service {
            service: vs.keys.iter().map(ToString::to_string).collect(),
            declared: vs.loc.to_string(),
            quorum_up: h.quorum_up(si),
            sorry_active: h.sorry_active(si),
            sorry: vs
                .sorry
                .as_ref()
                .map(|s| SockAddr(s.dest.addr, s.dest.port).to_string()),
            reals: vs
                .reals
                .iter()
                .enumerate()
                .filter_map(|(ri, r)| {
                    let st = h.real_status(RealId { svc: si, real: ri })?;
                    Some(Real {
                        address: SockAddr(r.dest.addr, r.dest.port).to_string(),
                        healthy: st.healthy,
                        checks: r
                            .checks
                            .iter()
                            .zip(&st.checks_up)
                            .map(|(c, up)| (kind_name(&c.kind).to_string(), *up))
                            .collect(),
                        weight: st.weight,
                        ipvs_weight: st.ipvs_weight,
                        ejected_ms: st.ejected_until.map(|t| t.since(now)),
                        ramping: st.ramping,
                    })
                })
                .collect(),
        })
        .collect()
}

/// As JSON (one document).
pub fn json(st: &[Service]) -> String {
    serde_json::to_string(st).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// As a table: one line per service, then one per real server.
pub fn text(st: &[Service]) -> String {
    let mut out = String::new();
    for s in st {
        let quorum = if s.quorum_up {
            "quorum up"
        } else {
            "quorum lost"
        };
        let sorry = match (&s.sorry, s.sorry_active) {
            (Some(a), true) => format!(", sorry server {a} in service"),
            (Some(a), false) => format!(", sorry server {a} standing by"),
            (None, _) => String::new(),
        };
        let _ = writeln!(
            out,
            "{} ({}): {quorum}{sorry}",
            s.service.join(", "),
            s.declared
        );
        for r in &s.reals {
            let state = if r.healthy { "up" } else { "down" };
            let ipvs = r
                .ipvs_weight
                .map_or_else(|| "absent".to_string(), |w| format!("weight {w}"));
            let mut extra = String::new();
            if let Some(ms) = r.ejected_ms {
                let _ = write!(extra, ", ejected for {}s more", ms.div_ceil(1000));
            }
            if r.ramping {
                extra.push_str(", slow start");
            }
            let checks: Vec<String> = r
                .checks
                .iter()
                .map(|(k, up)| format!("{k} {}", if *up { "up" } else { "down" }))
                .collect();
            let _ = writeln!(
                out,
                "  -> {:<22} {state:<4}  IPVS {ipvs} (configured {}){extra}  [{}]",
                r.address,
                r.weight,
                checks.join(", ")
            );
        }
    }
    out
}
