//! Persistence-engine templates in the connection table (`ip_vs_conn.c` with `cp->pe`,
//! `cp->pe_data`; `ip_vs_pe_sip.c: ip_vs_sip_ct_match, ip_vs_sip_hashkey_raw`).
//!
//! Plain entries carry no engine data, so the table keeps it beside them: a map from slot to
//! [`PeData`], filled only for templates of services with a persistence engine and emptied
//! when such a template is removed. A slot with data has the `PE` kind bit. Like the kernel,
//! such a template is hashed by its engine data alone (the kernel's `jhash` of the Call-ID,
//! here the table's seeded mixer), so every template of one call sits in one chain whatever
//! the client, and a lookup compares the engine and the exact bytes besides the usual
//! template fields.

use std::collections::BTreeMap;

use super::{mix, ConnTable, TableFull, NIL, PE};
use crate::conn::entry::{Conn, ConnId, TemplateKey};
use crate::pe::{Engine, PeData};
use crate::time::Tick;

/// Engine data by slot id.
#[derive(Clone, Debug, Default)]
pub(super) struct PeSide {
    by_slot: BTreeMap<u32, PeData>,
}

impl PeSide {
    pub(super) fn store(&mut self, id: u32, pe: PeData) {
        self.by_slot.insert(id, pe);
    }

    pub(super) fn get(&self, id: u32) -> &PeData {
        self.by_slot.get(&id).expect("PE slot has data")
    }

    pub(super) fn remove(&mut self, id: u32) {
        self.by_slot.remove(&id);
    }
}

/// Seeded hash of engine data (8 bytes at a time through the table's mixer).
fn hash_bytes(seed: u64, data: &[u8]) -> u64 {
    let mut h = mix(seed ^ 0x9e37_79b9_7f4a_7c15 ^ data.len() as u64);
    for chunk in data.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    h
}

impl ConnTable {
    pub(super) fn pe_hash(&self, data: &[u8]) -> u64 {
        hash_bytes(self.seed, data)
    }

    /// Add a persistence-engine template (a [`Conn::template`]) carrying `pe`, as
    /// [`insert`](Self::insert) does for other entries.
    pub fn insert_pe_template(
        &mut self,
        conn: Conn,
        pe: PeData,
        now: Tick,
    ) -> Result<ConnId, TableFull> {
        debug_assert!(conn.is_template(), "only templates carry engine data");
        self.insert_entry(conn, Some(pe), now)
    }

    /// Template lookup with a persistence engine (`ip_vs_ct_in_get` with `pe->ct_match`): a
    /// template of the same engine with identical data and the key's protocol, client network,
    /// virtual address and port. Plain templates never match.
    pub fn find_template_pe(
        &self,
        key: &TemplateKey,
        engine: Engine,
        data: &[u8],
    ) -> Option<ConnId> {
        let mut id = self.first(self.pe_hash(data));
        while id != NIL {
            let s = self.store.slot(id);
            if s.kind & PE != 0 && self.template_matches(s, key) {
                let pe = self.pe.get(id);
                if pe.engine == engine && *pe.data == *data {
                    return Some(ConnId(id));
                }
            }
            id = s.hnext;
        }
        None
    }

    /// The engine and data of a persistence-engine template (what the `pe name` and `pe_data`
    /// columns of `ipvsadm -Lnc --persistent-conn` show); `None` for any other entry.
    pub fn pe_data(&self, id: ConnId) -> Option<&PeData> {
        let s = self.live(id)?;
        (s.kind & PE != 0).then(|| self.pe.get(id.0))
    }

    /// Number of entries carrying engine data.
    pub fn pe_entries(&self) -> usize {
        self.pe.by_slot.len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::conn::conn_flags;
    use crate::model::Protocol;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(client: &str) -> TemplateKey {
        TemplateKey::service(Protocol::Udp, ip(client), ip("10.0.0.1"), 5060)
    }

    fn sip(data: &str) -> PeData {
        PeData {
            engine: Engine::Sip,
            data: data.as_bytes().into(),
        }
    }

    fn template(client: &str) -> Conn {
        let flags = conn_flags::MASQ | conn_flags::INACTIVE;
        Conn::template(&key(client), (ip("10.1.0.1"), 5060), flags, 300_000)
    }

    #[test]
    fn engine_templates_match_on_data_and_the_usual_fields_only() {
        // a small table, so both clients' templates of one call share a bucket
        let mut t = ConnTable::with_buckets(16, 256, 7);
        let a = t
            .insert_pe_template(template("10.9.0.5"), sip("c1"), Tick(0))
            .unwrap();
        let b = t
            .insert_pe_template(template("10.9.0.6"), sip("c1"), Tick(0))
            .unwrap();
        let plain = t.insert(template("10.9.0.5"), Tick(0)).unwrap();
        let find = |t: &ConnTable, c: &str, d: &str| {
            t.find_template_pe(&key(c), Engine::Sip, d.as_bytes())
        };
        assert_eq!(find(&t, "10.9.0.5", "c1"), Some(a));
        assert_eq!(find(&t, "10.9.0.6", "c1"), Some(b));
        assert_eq!(find(&t, "10.9.0.5", "c2"), None);
        assert_eq!(find(&t, "10.9.0.5", "c1x"), None);
        assert_eq!(find(&t, "10.9.0.5", "C1"), None, "bytes compare exactly");
        // plain lookups see only the plain template, and the other way round
        assert_eq!(t.find_template(&key("10.9.0.5")), Some(plain));
        assert_eq!(t.find_template(&key("10.9.0.6")), None);
        assert_eq!(t.pe_data(a), Some(&sip("c1")));
        assert_eq!(t.pe_data(plain), None);
        // invalidated: never found again, still listed with its data
        assert!(t.invalidate_template(a));
        assert_eq!(find(&t, "10.9.0.5", "c1"), None);
        assert_eq!(find(&t, "10.9.0.6", "c1"), Some(b));
        assert_eq!(t.get(a).unwrap().vport, 0xffff);
        assert_eq!(t.pe_data(a), Some(&sip("c1")));
        assert_eq!(t.listing(Tick(0)).count(), 3);
        // removal frees the data; a reused slot carries none
        t.remove(a).unwrap();
        assert_eq!(t.pe_entries(), 1);
        let reused = t.insert(template("10.9.0.7"), Tick(0)).unwrap();
        assert_eq!(reused, a);
        assert_eq!(t.pe_data(reused), None);
        t.remove(b).unwrap();
        assert_eq!(t.pe_entries(), 0);
        assert_eq!(find(&t, "10.9.0.6", "c1"), None);
    }

    #[test]
    fn many_calls_of_one_client_spread_over_buckets() {
        let t = ConnTable::with_buckets(1 << 16, 1 << 17, 3);
        let mut seen = std::collections::HashSet::new();
        for n in 0..1000 {
            seen.insert(
                t.pe_hash(format!("call-{n}@pbx.example").as_bytes()) as usize
                    & (t.bucket_count() - 1),
            );
        }
        assert!(seen.len() > 950, "{} buckets for 1000 calls", seen.len());
    }
}
