//! Consistency checks of a whole engine, for the simulator, tests and debug assertions of the
//! data planes. Each check is what the kernel maintains by construction; a violation means a
//! counter drifted or an entry leaked.

use std::collections::HashMap;

use crate::conn::{conn_flags, ConnId};
use crate::dest::DestId;
use crate::ipvs::Ipvs;
use crate::model::Forward;
use crate::pe::PEDATA_MAXLEN;
use crate::time::Tick;

#[derive(Default, Debug, PartialEq, Eq)]
struct Tally {
    active: u32,
    inact: u32,
    persist: u32,
    refs: u32,
}

/// Check every invariant of `ipvs` at `now` (call after `advance(now)`).
pub fn check(ipvs: &Ipvs, now: Tick) -> Result<(), String> {
    check_conns(ipvs, now)?;
    check_lists(ipvs)?;
    check_rs_table(ipvs)?;
    Ok(())
}

fn check_conns(ipvs: &Ipvs, now: Tick) -> Result<(), String> {
    let table = &ipvs.conns;
    if table.len() > table.capacity() {
        return Err(format!(
            "{} entries above capacity {}",
            table.len(),
            table.capacity()
        ));
    }
    let mut tally: HashMap<DestId, Tally> = HashMap::new();
    let mut controls: HashMap<ConnId, u32> = HashMap::new();
    for (id, c) in table.iter() {
        // an entry expired "now" by a packet (`ip_vs_conn_expire_now`) is due at the next
        // advance; anything older has outlived its timer
        if c.expires < now {
            return Err(format!(
                "entry {id:?} due at {:?} still present at {now:?}",
                c.expires
            ));
        }
        let limit = now.0.saturating_add(c.st.timeout);
        if c.expires.0 > limit {
            return Err(format!(
                "entry {id:?} expires at {:?}, beyond now + its timeout ({limit})",
                c.expires
            ));
        }
        if let Some(t) = c.st.control {
            let tc = table
                .state(t)
                .ok_or(format!("entry {id:?} controlled by a freed {t:?}"))?;
            if !tc.is_template() {
                return Err(format!("entry {id:?} controlled by a non-template"));
            }
            *controls.entry(t).or_default() += 1;
        }
        if let Some(did) = c.st.dest {
            let t = tally.entry(did).or_default();
            t.refs += 1;
            if c.is_template() {
                t.persist += 1;
            } else if c.st.flags & conn_flags::INACTIVE != 0 {
                t.inact += 1;
            } else {
                t.active += 1;
            }
        }
    }
    let mut pe_templates = 0;
    for (id, c) in table.iter() {
        if let Some(pe) = table.pe_data(id) {
            if !c.is_template() || pe.data.is_empty() || pe.data.len() > PEDATA_MAXLEN {
                return Err(format!("entry {id:?} carries bad engine data {pe:?}"));
            }
            pe_templates += 1;
        }
        let want = controls.get(&id).copied().unwrap_or(0);
        if c.st.n_control != want {
            return Err(format!(
                "entry {id:?} n_control {} but controls {want}",
                c.st.n_control
            ));
        }
    }
    if pe_templates != table.pe_entries() {
        return Err(format!(
            "{} engine data records for {pe_templates} live templates",
            table.pe_entries()
        ));
    }
    for d in ipvs.dests.iter() {
        let t = tally.remove(&d.id).unwrap_or_default();
        let got = Tally {
            active: d.activeconns,
            inact: d.inactconns,
            persist: d.persistconns,
            refs: d.refs,
        };
        if got != t {
            return Err(format!(
                "destination {} {}:{} counters {got:?} but entries say {t:?}",
                d.id.0, d.addr, d.port
            ));
        }
        if d.u_threshold == 0 && d.is_overloaded() {
            return Err(format!(
                "destination {}:{} OVERLOAD without a threshold",
                d.addr, d.port
            ));
        }
    }
    if let Some((did, _)) = tally.into_iter().next() {
        return Err(format!("entries bound to freed destination {did:?}"));
    }
    Ok(())
}

fn check_lists(ipvs: &Ipvs) -> Result<(), String> {
    let mut seen = HashMap::new();
    for svc in ipvs.services.iter() {
        for (pos, did) in svc.dests.iter().enumerate() {
            let d = ipvs
                .dests
                .get(*did)
                .ok_or("service lists a freed destination")?;
            if !d.is_available() || d.pos != pos || d.svc != svc.id {
                return Err(format!(
                    "destination {}:{} of {} has pos {} svc {:?} available {}",
                    d.addr,
                    d.port,
                    svc.key,
                    d.pos,
                    d.svc,
                    d.is_available()
                ));
            }
            if seen.insert(*did, ()).is_some() {
                return Err("a destination is in two lists".into());
            }
        }
    }
    for d in ipvs.trash() {
        if d.is_available() || seen.insert(d.id, ()).is_some() {
            return Err(format!("trashed destination {}:{} is live", d.addr, d.port));
        }
    }
    if let Some(d) = ipvs.dests.iter().find(|d| !seen.contains_key(&d.id)) {
        return Err(format!(
            "destination {}:{} is in no list and not in the trash",
            d.addr, d.port
        ));
    }
    Ok(())
}

/// The real-server table holds exactly the live NAT destinations, each once, under its own
/// address and port.
fn check_rs_table(ipvs: &Ipvs) -> Result<(), String> {
    let mut hashed = HashMap::new();
    for (addr, port, did) in ipvs.rs_table.entries() {
        let d = ipvs
            .dests
            .get(did)
            .ok_or("real-server table holds a freed destination")?;
        if !d.is_available() || d.fwd != Forward::Masq || (d.addr, d.port) != (addr, port) {
            return Err(format!(
                "real-server table holds {}:{} wrongly",
                d.addr, d.port
            ));
        }
        if hashed.insert(did, ()).is_some() {
            return Err(format!("{}:{} hashed twice", d.addr, d.port));
        }
    }
    let live_nat = ipvs
        .dests
        .iter()
        .filter(|d| d.is_available() && d.fwd == Forward::Masq)
        .count();
    if live_nat != hashed.len() {
        return Err(format!(
            "{live_nat} live NAT destinations, {} hashed",
            hashed.len()
        ));
    }
    Ok(())
}
