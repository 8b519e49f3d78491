//! `sh` — source hashing (`net/netfilter/ipvs/ip_vs_sh.c`, kernel 6.1), with the service
//! flags `sh-fallback` (`IP_VS_SVC_F_SCHED1`) and `sh-port` (`IP_VS_SVC_F_SCHED2`).
//!
//! A static table of 256 buckets (`CONFIG_IP_VS_SH_TAB_BITS` = 8) maps the hash of the
//! client (source) address to a real server, so a client keeps reaching the same server.
//!
//! * **Table.** Walk the list cyclically from the head, giving each destination `weight`
//!   consecutive buckets before moving to the next one. The kernel moves on once its
//!   per-destination counter reaches the weight, so a weight-0 destination still takes
//!   **one** bucket on every pass over the list (the counter reaches 1 ≥ 0 at once); its
//!   clients then find no destination (or fall back). Rebuilt on init, add,
//!   delete and **edit** (the weights shape the table). An empty list leaves every bucket
//!   empty.
//! * **Key.** `v = port + folded source address` (32-bit wrapping), where `port` is the
//!   packet's source port if `sh-port` is set and the packet is TCP, UDP or SCTP, else 0;
//!   `ihash = hash_32(v, 8)`.
//! * **Pick without `sh-fallback`.** The bucket's destination unless it is unavailable
//!   (`is_unavailable`: weight ≤ 0 or OVERLOAD) — then no destination.
//! * **Pick with `sh-fallback`.** If bucket `ihash` is empty → none; if its destination is
//!   available → it. Otherwise probe offsets `o = 0..256`: `r = (o + ihash) mod 256`,
//!   bucket `(r + ihash) & 255`. The kernel adds the original hash twice, so the probe
//!   starts at bucket `2·ihash mod 256` (not at `ihash + 1`) and then walks consecutive
//!   buckets — reproduced as is. The first available destination wins; an empty bucket
//!   ends the search.
//!
//! Decisions are O(1) (at most 256 probes with `sh-fallback`, as in the kernel).

use super::hash::{fold_addr, hash_32, is_unavailable, sched_port};
use super::{DestChange, SchedCtx, SchedPacket, Scheduler};
use crate::dest::DestList;
use crate::model::svc_flags::{SCHED_SH_FALLBACK, SCHED_SH_PORT};

/// Bits of the bucket index (`CONFIG_IP_VS_SH_TAB_BITS` default).
pub const SH_TAB_BITS: u32 = 8;
/// Number of buckets.
pub const SH_TAB_SIZE: usize = 1 << SH_TAB_BITS;
const SH_TAB_MASK: usize = SH_TAB_SIZE - 1;

/// Marks an empty bucket.
const EMPTY: u32 = u32::MAX;

/// `sh` scheduler state: the bucket table, holding list positions.
#[derive(Debug)]
pub struct Sh {
    buckets: Vec<u32>,
}

impl Default for Sh {
    fn default() -> Sh {
        Sh {
            buckets: vec![EMPTY; SH_TAB_SIZE],
        }
    }
}

impl Sh {
    /// The bucket a packet hashes to (`ihash`) for the service flags `svc_flags`.
    pub fn bucket_of(pkt: &SchedPacket, svc_flags: u32) -> usize {
        let port = sched_port(svc_flags & SCHED_SH_PORT != 0, pkt.proto, pkt.sport);
        let v = u32::from(port).wrapping_add(fold_addr(&pkt.saddr));
        hash_32(v, SH_TAB_BITS) as usize
    }

    /// The list position held by bucket `i` (`None` when the list is empty).
    pub fn bucket(&self, i: usize) -> Option<usize> {
        let p = self.buckets[i];
        (p != EMPTY).then_some(p as usize)
    }

    /// Refill the table: each destination takes `weight` consecutive buckets (at least one).
    fn reassign(&mut self, list: DestList<'_>) {
        let n = list.len();
        if n == 0 {
            self.buckets.fill(EMPTY);
            return;
        }
        let (mut pos, mut count) = (0usize, 0i64);
        for b in self.buckets.iter_mut() {
            *b = pos as u32;
            count += 1;
            if count >= i64::from(list.get(pos).weight) {
                pos = (pos + 1) % n;
                count = 0;
            }
        }
    }

    /// `ip_vs_sh_get_fallback`: probe from `2·ihash` when the hashed bucket is unavailable.
    fn pick_fallback(&self, list: DestList<'_>, ihash: usize) -> Option<usize> {
        let first = self.bucket(ihash)?;
        if !is_unavailable(list.get(first)) {
            return Some(first);
        }
        for offset in 0..SH_TAB_SIZE {
            let roffset = (offset + ihash) % SH_TAB_SIZE;
            let pos = self.bucket((roffset + ihash) & SH_TAB_MASK)?;
            if !is_unavailable(list.get(pos)) {
                return Some(pos);
            }
        }
        None
    }
}

impl Scheduler for Sh {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn dests_changed(&mut self, list: DestList<'_>, _change: DestChange) {
        self.reassign(list);
    }

    fn table(&self) -> Option<Vec<Option<usize>>> {
        Some((0..SH_TAB_SIZE).map(|i| self.bucket(i)).collect())
    }

    fn schedule(
        &mut self,
        list: DestList<'_>,
        pkt: &SchedPacket,
        ctx: &mut SchedCtx<'_>,
    ) -> Option<usize> {
        let ihash = Self::bucket_of(pkt, ctx.svc_flags);
        if ctx.svc_flags & SCHED_SH_FALLBACK != 0 {
            self.pick_fallback(list, ihash)
        } else {
            let pos = self.bucket(ihash)?;
            (!is_unavailable(list.get(pos))).then_some(pos)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::hash::testing::{pkt, pkt_proto, replay, with_ctx, Fixture, KernelCase};
    use super::*;
    use crate::model::Protocol;
    use proptest::prelude::*;

    fn built(f: &Fixture) -> Sh {
        let mut sh = Sh::default();
        sh.dests_changed(f.list(), DestChange::Init);
        sh
    }

    fn layout(sh: &Sh, f: &Fixture, upto: usize) -> Vec<String> {
        (0..upto).map(|i| f.addr(sh.bucket(i).unwrap())).collect()
    }

    /// A source address whose bucket is `want` (searching 10.200.x.y).
    fn src_for_bucket(want: usize) -> String {
        (0u32..65536)
            .map(|i| format!("10.200.{}.{}", i >> 8, i & 255))
            .find(|s| Sh::bucket_of(&pkt(s, 0, "192.0.2.1"), 0) == want)
            .expect("every bucket is reachable")
    }

    #[test]
    fn each_destination_takes_weight_consecutive_buckets() {
        // added A(w2), B(w3), C(w1) → list C, B, A
        let f = Fixture::added(&[
            ("10.0.0.1", 80, 2),
            ("10.0.0.2", 80, 3),
            ("10.0.0.3", 80, 1),
        ]);
        let sh = built(&f);
        let c = "10.0.0.3";
        let b = "10.0.0.2";
        let a = "10.0.0.1";
        assert_eq!(layout(&sh, &f, 8), [c, b, b, b, a, a, c, b]);
        // 256 = 42 cycles of 6 + 4: the table ends C B B B
        let tail: Vec<_> = (252..256).map(|i| f.addr(sh.bucket(i).unwrap())).collect();
        assert_eq!(tail, [c, b, b, b]);
    }

    #[test]
    fn weight_zero_still_takes_one_bucket_per_pass() {
        let f = Fixture::added(&[("10.0.0.1", 80, 2), ("10.0.0.2", 80, 0)]);
        let sh = built(&f);
        assert_eq!(
            layout(&sh, &f, 6),
            ["10.0.0.2", "10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.1"]
        );
    }

    #[test]
    fn source_address_selects_the_bucket() {
        let f = Fixture::added(&[
            ("10.0.0.1", 80, 1),
            ("10.0.0.2", 80, 1),
            ("10.0.0.3", 80, 1),
        ]);
        let mut sh = built(&f);
        // 172.16.0.1 = 0xAC100001
        let h = (0xAC10_0001u32.wrapping_mul(0x61C8_8647) >> 24) as usize;
        let p = pkt("172.16.0.1", 4321, "192.168.50.100");
        assert_eq!(Sh::bucket_of(&p, 0), h);
        assert_eq!(
            with_ctx(0, |ctx| sh.schedule(f.list(), &p, ctx)),
            Some(h % 3)
        );
    }

    #[test]
    fn sh_port_adds_the_source_port_for_tcp_udp_sctp_only() {
        let p = pkt("172.16.0.1", 4321, "192.168.50.100");
        let with_port = hash_32(0xAC10_0001 + 4321, 8) as usize;
        assert_eq!(Sh::bucket_of(&p, SCHED_SH_PORT), with_port);
        for proto in [Protocol::Udp, Protocol::Sctp] {
            let q = pkt_proto(proto, "172.16.0.1", 4321, "192.168.50.100");
            assert_eq!(Sh::bucket_of(&q, SCHED_SH_PORT), with_port);
        }
        let other = pkt_proto(Protocol::Ip, "172.16.0.1", 4321, "192.168.50.100");
        assert_eq!(
            Sh::bucket_of(&other, SCHED_SH_PORT),
            hash_32(0xAC10_0001, 8) as usize
        );
        // without the flag the port is ignored
        assert_eq!(Sh::bucket_of(&p, 0), hash_32(0xAC10_0001, 8) as usize);
    }

    #[test]
    fn ipv6_source_is_folded() {
        let f = Fixture::added(&[("2001:db8::1", 80, 1), ("2001:db8::2", 80, 1)]);
        let mut sh = built(&f);
        let p = pkt("2001:db8::aa:0:0:7", 1, "2001:db8::100");
        let fold = 0x2001_0db8u32 ^ 0x00aa_0000 ^ 0x0000_0007;
        let h = hash_32(fold, 8) as usize;
        assert_eq!(
            with_ctx(0, |ctx| sh.schedule(f.list(), &p, ctx)),
            Some(h % 2)
        );
    }

    #[test]
    fn unavailable_bucket_gives_none_without_fallback() {
        let mut f = Fixture::added(&[("10.0.0.1", 80, 1), ("10.0.0.2", 80, 1)]);
        let mut sh = built(&f);
        let src = src_for_bucket(10); // bucket 10 → position 0
        let p = pkt(&src, 0, "192.0.2.1");
        f.set_overload(0, true);
        assert_eq!(with_ctx(0, |ctx| sh.schedule(f.list(), &p, ctx)), None);
        f.set_overload(0, false);
        f.set_weight(0, 0);
        sh.dests_changed(f.list(), DestChange::Updated { pos: 0 });
        // weight 0 still owns one bucket per pass: the table alternates 0, 1, 0, 1, …
        assert_eq!(sh.bucket(10), Some(0));
        assert_eq!(sh.bucket(11), Some(1));
        assert_eq!(with_ctx(0, |ctx| sh.schedule(f.list(), &p, ctx)), None);
        let p11 = pkt(&src_for_bucket(11), 0, "192.0.2.1");
        assert_eq!(with_ctx(0, |ctx| sh.schedule(f.list(), &p11, ctx)), Some(1));
    }

    #[test]
    fn fallback_probes_from_twice_the_hash() {
        // 4 servers of weight 1: bucket i → position i % 4
        let mut f = Fixture::default();
        for i in 1..=4 {
            f.add(&format!("10.0.0.{i}"), 80, 1);
        }
        let mut sh = built(&f);
        let p = pkt(&src_for_bucket(6), 0, "192.0.2.1");
        let ask = |sh: &mut Sh, f: &Fixture| {
            with_ctx(SCHED_SH_FALLBACK, |ctx| sh.schedule(f.list(), &p, ctx))
        };
        assert_eq!(ask(&mut sh, &f), Some(2));
        // ihash 6 → position 2, unavailable: the probe starts at bucket 12 (position 0),
        // not at bucket 7 (position 3)
        f.set_overload(2, true);
        assert_eq!(ask(&mut sh, &f), Some(0));
        // then bucket 13 → position 1
        f.set_overload(0, true);
        assert_eq!(ask(&mut sh, &f), Some(1));
        // then 14 (position 2, unavailable) and 15 → position 3
        f.set_overload(1, true);
        assert_eq!(ask(&mut sh, &f), Some(3));
        f.set_overload(3, true);
        assert_eq!(ask(&mut sh, &f), None);
        // without the flag the unavailable hashed server gives none at once
        f.set_overload(0, false);
        let plain = with_ctx(0, |ctx| sh.schedule(f.list(), &p, ctx));
        assert_eq!(plain, None);
        assert_eq!(ask(&mut sh, &f), Some(0));
    }

    #[test]
    fn fallback_walks_consecutive_buckets_across_a_weighted_run() {
        // added A(w200), B(w56) → list B, A: buckets 0..=55 → B (0), 56..=255 → A (1)
        let mut f = Fixture::added(&[("10.0.0.1", 80, 200), ("10.0.0.2", 80, 56)]);
        let mut sh = built(&f);
        assert_eq!(sh.bucket(55), Some(0));
        assert_eq!(sh.bucket(56), Some(1));
        // ihash 20 → B unavailable; probe starts at 40 (B, unavailable) and walks to 56 → A
        f.set_overload(0, true);
        let p = pkt(&src_for_bucket(20), 0, "192.0.2.1");
        let got = with_ctx(SCHED_SH_FALLBACK, |ctx| sh.schedule(f.list(), &p, ctx));
        assert_eq!(got, Some(1));
        // ihash 150 → A unavailable; probe starts at 300 mod 256 = 44 → B
        f.set_overload(0, false);
        f.set_overload(1, true);
        let p = pkt(&src_for_bucket(150), 0, "192.0.2.1");
        let got = with_ctx(SCHED_SH_FALLBACK, |ctx| sh.schedule(f.list(), &p, ctx));
        assert_eq!(got, Some(0));
    }

    #[test]
    fn fallback_on_empty_service_is_none() {
        let f = Fixture::default();
        let mut sh = built(&f);
        let p = pkt("10.1.1.1", 0, "192.0.2.1");
        assert_eq!(
            with_ctx(SCHED_SH_FALLBACK, |ctx| sh.schedule(f.list(), &p, ctx)),
            None
        );
    }

    // Recorded from Debian 12's kernel 6.1.0 (ipvs-oracle): UDP NAT services, one
    // datagram per client, choices read back with `ipvsadm -Lcn`.
    #[test]
    fn matches_kernel_6_1_recordings() {
        let ws = |port: u16, w: [i32; 5]| -> Vec<(&'static str, u16, i32)> {
            let a = ["10.1.1.2", "10.1.2.2", "10.1.3.2", "10.1.4.2", "10.1.5.2"];
            a.iter().zip(w).map(|(&a, w)| (a, port, w)).collect()
        };
        let vip = "192.168.50.100";
        // weights 2, 3, 1, 0, 5 (10.1.4.2 has weight 0: its buckets give no destination)
        replay(
            &mut Sh::default(),
            &KernelCase {
                flags: 0,
                added: &ws(1000, [2, 3, 1, 0, 5]),
                edits: &[],
                clients: &[
                    ("172.16.165.77", 35875, vip, Some("10.1.5.2")),
                    ("172.16.24.37", 45119, vip, Some("10.1.2.2")),
                    ("172.16.29.109", 12457, vip, Some("10.1.3.2")),
                    ("172.16.96.190", 16385, vip, None),
                    ("172.16.175.77", 42044, vip, None),
                ],
            },
        );
        replay(
            &mut Sh::default(),
            &KernelCase {
                flags: SCHED_SH_PORT,
                added: &ws(1001, [1, 2, 1, 3, 1]),
                edits: &[],
                clients: &[
                    ("172.16.201.157", 55071, vip, Some("10.1.4.2")),
                    ("172.16.110.117", 32459, vip, Some("10.1.2.2")),
                    ("172.16.177.27", 18507, vip, Some("10.1.5.2")),
                    ("172.16.7.36", 50989, vip, Some("10.1.3.2")),
                ],
            },
        );
        // sh-fallback, 10.1.2.2 edited to weight 0: these clients hashed to its buckets
        replay(
            &mut Sh::default(),
            &KernelCase {
                flags: SCHED_SH_FALLBACK,
                added: &ws(1002, [1, 1, 1, 1, 1]),
                edits: &[("10.1.2.2", 0)],
                clients: &[
                    ("172.16.1.33", 11589, vip, Some("10.1.4.2")),
                    ("172.16.220.252", 18697, vip, Some("10.1.5.2")),
                    ("172.16.235.185", 49040, vip, Some("10.1.5.2")),
                    ("172.16.166.82", 37954, vip, Some("10.1.4.2")),
                    ("172.16.17.237", 14101, vip, Some("10.1.1.2")),
                ],
            },
        );
        let v6 = "fd00::100";
        replay(
            &mut Sh::default(),
            &KernelCase {
                flags: 0,
                added: &[
                    ("fd00:1:1::2", 3001, 1),
                    ("fd00:1:2::2", 3001, 2),
                    ("fd00:1:3::2", 3001, 3),
                    ("fd00:1:4::2", 3001, 4),
                ],
                edits: &[],
                clients: &[
                    ("fd00:aaaa::107e:77da:ff7c", 53545, v6, Some("fd00:1:3::2")),
                    ("fd00:aaaa::4752:ba9e:4a42", 35385, v6, Some("fd00:1:2::2")),
                    ("fd00:aaaa::1262:9201:e0c6", 19206, v6, Some("fd00:1:4::2")),
                ],
            },
        );
    }

    proptest! {
        /// A client keeps its server while the list is unchanged, however often the table is
        /// rebuilt from that same list, and whatever the packet's destination or (without
        /// sh-port) source port.
        #[test]
        fn same_client_same_server(
            weights in prop::collection::vec(1i32..20, 1..10),
            clients in prop::collection::vec((any::<u32>(), any::<u16>(), any::<u16>()), 1..64),
        ) {
            let mut f = Fixture::default();
            for (i, &w) in weights.iter().enumerate() {
                f.add(&format!("10.0.0.{}", i + 1), 80, w);
            }
            let mut sh = built(&f);
            for &(a, p1, p2) in &clients {
                let src = std::net::Ipv4Addr::from(a).to_string();
                let one = pkt(&src, p1, "192.0.2.1");
                let mut two = pkt(&src, p2, "192.0.2.9");
                two.dport = p2;
                let x = with_ctx(0, |ctx| sh.schedule(f.list(), &one, ctx));
                sh.dests_changed(f.list(), DestChange::Updated { pos: 0 });
                let y = with_ctx(0, |ctx| sh.schedule(f.list(), &two, ctx));
                prop_assert!(x.is_some());
                prop_assert_eq!(x, y);
            }
        }

        /// Bucket counts follow the weights exactly: full cycles of Σw buckets, then a
        /// partial cycle in list order.
        #[test]
        fn bucket_counts_follow_weights(weights in prop::collection::vec(0i32..40, 1..10)) {
            let mut f = Fixture::default();
            for (i, &w) in weights.iter().enumerate() {
                f.add(&format!("10.0.0.{}", i + 1), 80, w);
            }
            let sh = built(&f);
            let n = weights.len();
            let eff: Vec<usize> = (0..n).map(|p| f.list().get(p).weight.max(1) as usize).collect();
            let cycle: usize = eff.iter().sum();
            let mut expect: Vec<usize> = eff.iter().map(|w| w * (SH_TAB_SIZE / cycle)).collect();
            let mut rest = SH_TAB_SIZE % cycle;
            for (p, e) in expect.iter_mut().enumerate() {
                let take = rest.min(eff[p]);
                *e += take;
                rest -= take;
            }
            let mut got = vec![0usize; n];
            for i in 0..SH_TAB_SIZE {
                got[sh.bucket(i).unwrap()] += 1;
            }
            prop_assert_eq!(got, expect);
        }
    }
}
