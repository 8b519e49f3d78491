//! `dh` — destination hashing (`net/netfilter/ipvs/ip_vs_dh.c`, kernel 6.1).
//!
//! A static table of 256 buckets (`CONFIG_IP_VS_DH_TAB_BITS` = 8) maps the hash of the
//! packet's *destination* address to a real server. Typical use: a cache cluster, where the
//! same origin address should always reach the same cache.
//!
//! * **Table.** Bucket `i` holds the destination at list position `i mod n` (list order,
//!   newest first); weights play no part. The table is rebuilt when a destination is added
//!   or deleted and at service init, **not** when one is edited: `ip_vs_dh.c` registers no
//!   `upd_dest` callback, and an edit does not reorder the list, so the layout is unchanged.
//!   An empty list leaves every bucket empty.
//! * **Pick.** bucket = `hash_32(folded destination address, 8)` (IPv4 in host order, IPv6
//!   as the XOR of its four words). The bucket's destination is returned only if it is
//!   AVAILABLE, has weight > 0 and no OVERLOAD flag; otherwise there is no destination —
//!   `dh` never falls back to another bucket.
//!
//! Decisions are O(1): one multiply and one table read.

use super::hash::{fold_addr, hash_32, is_unavailable};
use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::DestList;

/// Bits of the bucket index (`CONFIG_IP_VS_DH_TAB_BITS` default).
pub const DH_TAB_BITS: u32 = 8;
/// Number of buckets.
pub const DH_TAB_SIZE: usize = 1 << DH_TAB_BITS;

/// Marks an empty bucket.
const EMPTY: u32 = u32::MAX;

/// `dh` scheduler state: the bucket table, holding list positions.
#[derive(Debug)]
pub struct Dh {
    buckets: Vec<u32>,
}

impl Default for Dh {
    fn default() -> Dh {
        Dh {
            buckets: vec![EMPTY; DH_TAB_SIZE],
        }
    }
}

impl Dh {
    /// The bucket a destination address hashes to.
    pub fn bucket_of(daddr: &std::net::IpAddr) -> usize {
        hash_32(fold_addr(daddr), DH_TAB_BITS) as usize
    }

    /// The list position held by bucket `i` (`None` when the list is empty).
    pub fn bucket(&self, i: usize) -> Option<usize> {
        let p = self.buckets[i];
        (p != EMPTY).then_some(p as usize)
    }

    /// Refill the table round-robin over the list.
    fn reassign(&mut self, list: DestList<'_>) {
        let n = list.len();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            *b = if n == 0 { EMPTY } else { (i % n) as u32 };
        }
    }
}

impl Scheduler for Dh {
    fn name(&self) -> &'static str {
        "dh"
    }

    fn table(&self) -> Option<Vec<Option<usize>>> {
        Some((0..DH_TAB_SIZE).map(|i| self.bucket(i)).collect())
    }

    fn dests_changed(&mut self, list: DestList<'_>, change: DestChange) {
        match change {
            // no upd_dest callback in ip_vs_dh.c: an edit keeps the table
            DestChange::Updated { .. } => {}
            DestChange::Init | DestChange::Added { .. } | DestChange::Removed { .. } => {
                self.reassign(list)
            }
        }
    }

    fn schedule(
        &mut self,
        list: DestList<'_>,
        pkt: &SchedPacket,
        _ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let pos = self.bucket(Self::bucket_of(&pkt.daddr))?;
        let d = list.get(pos);
        (d.is_available() && !is_unavailable(d)).then_some(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::super::hash::testing::{pkt, with_ctx, Fixture, KernelCase};
    use super::*;
    use proptest::prelude::*;

    fn built(f: &Fixture) -> Dh {
        let mut dh = Dh::default();
        dh.dests_changed(f.list(), DestChange::Init);
        dh
    }

    fn pick(dh: &mut Dh, f: &Fixture, dst: &str) -> Option<String> {
        with_ctx(0, |ctx| {
            dh.schedule(f.list(), &pkt("192.0.2.7", 1000, dst), ctx)
        })
        .map(|p| f.addr(p))
    }

    #[test]
    fn buckets_round_robin_over_list_order_ignoring_weights() {
        // added A, B, C → list C, B, A
        let f = Fixture::added(&[
            ("10.0.0.1", 80, 5),
            ("10.0.0.2", 80, 1),
            ("10.0.0.3", 80, 9),
        ]);
        let dh = built(&f);
        let layout: Vec<_> = (0..6).map(|i| f.addr(dh.bucket(i).unwrap())).collect();
        assert_eq!(
            layout,
            ["10.0.0.3", "10.0.0.2", "10.0.0.1", "10.0.0.3", "10.0.0.2", "10.0.0.1"]
        );
        // 256 = 3·85 + 1: the last bucket wraps to the head again
        assert_eq!(f.addr(dh.bucket(255).unwrap()), "10.0.0.3");
    }

    #[test]
    fn destination_address_selects_the_bucket() {
        let f = Fixture::added(&[
            ("10.0.0.1", 80, 1),
            ("10.0.0.2", 80, 1),
            ("10.0.0.3", 80, 1),
        ]);
        let mut dh = built(&f);
        // 192.168.50.100 = 0xC0A83264; ·0x61C88647 mod 2^32 >> 24 = bucket
        let h = (0xC0A8_3264u32.wrapping_mul(0x61C8_8647) >> 24) as usize;
        assert_eq!(Dh::bucket_of(&"192.168.50.100".parse().unwrap()), h);
        let expect = f.addr(h % 3);
        assert_eq!(pick(&mut dh, &f, "192.168.50.100"), Some(expect));
        // the source address plays no part
        let other = with_ctx(0, |ctx| {
            dh.schedule(f.list(), &pkt("203.0.113.9", 5, "192.168.50.100"), ctx)
        });
        assert_eq!(other, Some(h % 3));
    }

    #[test]
    fn ipv6_destination_is_folded() {
        let f = Fixture::added(&[("2001:db8::1", 80, 1), ("2001:db8::2", 80, 1)]);
        let mut dh = built(&f);
        let dst = "2001:db8:0:0:1:0:0:5";
        let fold = 0x2001_0db8u32 ^ 0x0001_0000 ^ 0x0000_0005;
        let h = hash_32(fold, 8) as usize;
        assert_eq!(pick(&mut dh, &f, dst), Some(f.addr(h % 2)));
    }

    #[test]
    fn weight_zero_or_overload_gives_none_without_fallback() {
        let mut f = Fixture::added(&[("10.0.0.1", 80, 1), ("10.0.0.2", 80, 1)]);
        let mut dh = built(&f);
        let dst = "192.168.50.100";
        let pos = dh.bucket(Dh::bucket_of(&dst.parse().unwrap())).unwrap();
        f.set_weight(pos, 0);
        dh.dests_changed(f.list(), DestChange::Updated { pos });
        assert_eq!(pick(&mut dh, &f, dst), None);
        f.set_weight(pos, 3);
        f.set_overload(pos, true);
        dh.dests_changed(f.list(), DestChange::Updated { pos });
        assert_eq!(pick(&mut dh, &f, dst), None);
        f.set_overload(pos, false);
        assert_eq!(pick(&mut dh, &f, dst), Some(f.addr(pos)));
    }

    #[test]
    fn empty_service_has_no_destination() {
        let f = Fixture::default();
        let mut dh = built(&f);
        assert_eq!(pick(&mut dh, &f, "10.9.9.9"), None);
    }

    #[test]
    fn add_and_delete_rebuild_the_table() {
        let mut f = Fixture::added(&[("10.0.0.1", 80, 1), ("10.0.0.2", 80, 1)]);
        let mut dh = built(&f);
        f.add("10.0.0.3", 80, 1);
        dh.dests_changed(f.list(), DestChange::Added { pos: 0 });
        assert_eq!(f.addr(dh.bucket(0).unwrap()), "10.0.0.3");
        assert_eq!(f.addr(dh.bucket(2).unwrap()), "10.0.0.1");
        let id = f.remove(1);
        dh.dests_changed(f.list(), DestChange::Removed { old_pos: 1, id });
        let layout: Vec<_> = (0..4).map(|i| f.addr(dh.bucket(i).unwrap())).collect();
        assert_eq!(layout, ["10.0.0.3", "10.0.0.1", "10.0.0.3", "10.0.0.1"]);
    }

    // Recorded from Debian 12's kernel 6.1.0 (ipvs-oracle): UDP NAT services, one
    // datagram per client, choices read back with `ipvsadm -Lcn`.
    #[test]
    fn matches_kernel_6_1_recordings() {
        let five: Vec<(&str, u16, i32)> =
            ["10.1.1.2", "10.1.2.2", "10.1.3.2", "10.1.4.2", "10.1.5.2"]
                .iter()
                .map(|&a| (a, 53, 1))
                .collect();
        super::super::hash::testing::replay(
            &mut Dh::default(),
            &KernelCase {
                flags: 0,
                added: &five,
                edits: &[],
                clients: &[
                    ("172.16.9.9", 20001, "192.168.60.1", Some("10.1.4.2")),
                    ("172.16.9.9", 20002, "192.168.60.2", Some("10.1.2.2")),
                    ("172.16.9.9", 20003, "192.168.60.3", Some("10.1.4.2")),
                    ("172.16.9.9", 20004, "192.168.60.4", Some("10.1.1.2")),
                    ("172.16.9.9", 20005, "192.168.60.5", Some("10.1.5.2")),
                    ("172.16.9.9", 20006, "192.168.60.6", Some("10.1.2.2")),
                ],
            },
        );
        // seven servers added with weights 1..=7; 10.5.0.4 edited to weight 0
        let seven: Vec<(String, u16, i32)> = (2..=8)
            .map(|i| (format!("10.5.0.{i}"), 53, i - 1))
            .collect();
        let seven: Vec<(&str, u16, i32)> =
            seven.iter().map(|(a, p, w)| (a.as_str(), *p, *w)).collect();
        super::super::hash::testing::replay(
            &mut Dh::default(),
            &KernelCase {
                flags: 0,
                added: &seven,
                edits: &[("10.5.0.4", 0)],
                clients: &[
                    ("172.28.133.141", 30629, "192.168.60.23", None),
                    ("172.30.247.133", 3102, "192.168.60.31", None),
                    ("172.26.99.65", 33388, "192.168.60.2", Some("10.5.0.3")),
                ],
            },
        );
        // the same seven with 10.5.0.5 deleted (the table is rebuilt over six)
        let mut dh = Dh::default();
        let mut f = Fixture::default();
        for &(a, p, w) in &seven {
            f.add(a, p, w);
        }
        dh.dests_changed(f.list(), DestChange::Init);
        let pos = (0..7).find(|&p| f.addr(p) == "10.5.0.5").unwrap();
        let id = f.remove(pos);
        dh.dests_changed(f.list(), DestChange::Removed { old_pos: pos, id });
        for (vip, want) in [
            ("192.168.60.102", "10.5.0.2"),
            ("192.168.60.103", "10.5.0.7"),
            ("192.168.60.104", "10.5.0.2"),
            ("192.168.60.105", "10.5.0.7"),
        ] {
            assert_eq!(pick(&mut dh, &f, vip).as_deref(), Some(want), "{vip}");
        }
        // IPv6: three servers, every client of fd00::100 goes to one of them
        super::super::hash::testing::replay(
            &mut Dh::default(),
            &KernelCase {
                flags: 0,
                added: &[
                    ("fd00:1:1::2", 3002, 1),
                    ("fd00:1:2::2", 3002, 1),
                    ("fd00:1:3::2", 3002, 1),
                ],
                edits: &[],
                clients: &[
                    (
                        "fd00:aaaa::57db:6ed2:ac0e",
                        36755,
                        "fd00::100",
                        Some("fd00:1:3::2"),
                    ),
                    (
                        "fd00:aaaa::7d80:65d2:7492",
                        20566,
                        "fd00::100",
                        Some("fd00:1:3::2"),
                    ),
                ],
            },
        );
    }

    proptest! {
        /// Same destination address → same server while the list does not change, and weight
        /// edits (other than to 0) never move an address to another server.
        #[test]
        fn stable_under_weight_edits(
            n in 1usize..12,
            addrs in prop::collection::vec(any::<u32>(), 1..64),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 1i32..100), 0..10),
        ) {
            let mut f = Fixture::default();
            for i in 0..n {
                f.add(&format!("10.0.{}.{}", i / 200, i % 200 + 1), 80, 1);
            }
            let mut dh = built(&f);
            let ask = |dh: &mut Dh, f: &Fixture| -> Vec<Option<usize>> {
                addrs.iter().map(|&a| {
                    let dst = std::net::Ipv4Addr::from(a).to_string();
                    with_ctx(0, |ctx| dh.schedule(f.list(), &pkt("192.0.2.1", 9, &dst), ctx))
                }).collect()
            };
            let before = ask(&mut dh, &f);
            prop_assert!(before.iter().all(Option::is_some));
            prop_assert_eq!(&before, &ask(&mut dh, &f));
            for (ix, w) in edits {
                let pos = ix.index(n);
                f.set_weight(pos, w);
                dh.dests_changed(f.list(), DestChange::Updated { pos });
            }
            prop_assert_eq!(before, ask(&mut dh, &f));
        }
    }
}
