//! Hash primitives shared by the hashing schedulers (`dh`, `sh`, `mh`, and the locality
//! schedulers `lblc`/`lblcr`), reproducing the kernel's arithmetic bit for bit.
//!
//! * [`hash_32`]: the multiplicative hash of `include/linux/hash.h`: multiply by
//!   `GOLDEN_RATIO_32` (0x61C88647) modulo 2^32 and keep the top `bits` bits. (IPVS before
//!   Linux 4.7 multiplied by 2654435761 and kept the *low* bits instead; kernel 6.1 uses
//!   `hash_32`, so that is what is reproduced here.)
//! * [`fold_addr`] / [`fold_addr_as`]: the way `ip_vs_dh.c`, `ip_vs_sh.c`, `ip_vs_mh.c` and
//!   `ip_vs_lblc.c` turn an address into one 32-bit number: an IPv4 address is taken in host
//!   byte order, an IPv6 address is reduced to the XOR of its four 32-bit words (the kernel
//!   XORs the network-order words and then byte-swaps; XOR commutes with the swap, so XORing
//!   the host-order words gives the same number).
//! * [`hsiphash_u32`]: the kernel's `hsiphash()` of a 4-byte integer as a 64-bit kernel
//!   computes it (`lib/siphash.c`): on `BITS_PER_LONG == 64` "HalfSipHash" is really
//!   SipHash-1-3 with 64-bit state words, the two key words of `hsiphash_key_t` are `unsigned
//!   long` (64-bit), the 4 bytes of the integer are read little-endian (x86 native order) into
//!   the final block together with the length byte, and the 64-bit result is truncated to its
//!   low 32 bits. `ip_vs_mh.c` hashes `unsigned int` values with two fixed keys,
//!   [`MH_KEY1`] and [`MH_KEY2`].
//! * [`sched_port`]: the source port the `sh-port` / `mh-port` flags feed into the key (only
//!   for TCP, UDP and SCTP packets; 0 otherwise).

use std::net::IpAddr;

use crate::dest::Dest;
use crate::model::{Family, Protocol};

/// `GOLDEN_RATIO_32` of `include/linux/hash.h`.
pub const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// The kernel's `hash_32(val, bits)`: `(val · 0x61C88647 mod 2^32) >> (32 − bits)`.
///
/// `bits` must be in `1..=32`.
#[inline]
pub fn hash_32(val: u32, bits: u32) -> u32 {
    debug_assert!((1..=32).contains(&bits));
    val.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// Fold an address to 32 bits in host byte order, the way IPVS does for a service of the
/// address's own family: IPv4 as is, IPv6 as the XOR of its four 32-bit words.
#[inline]
pub fn fold_addr(addr: &IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(*a),
        IpAddr::V6(a) => {
            let x = u128::from(*a);
            (x as u32) ^ ((x >> 32) as u32) ^ ((x >> 64) as u32) ^ ((x >> 96) as u32)
        }
    }
}

/// Fold an address as the kernel does when it reads the `union nf_inet_addr` with the
/// *service's* family `af` (what `ip_vs_mh.c` does for destination addresses, which may be of
/// the other family in a mixed-family tunnel service):
///
/// * an IPv4 address stored in the union leaves the other three words zero, so under an IPv6
///   service it folds to itself;
/// * an IPv6 address read as IPv4 yields only its first 32-bit word.
#[inline]
pub fn fold_addr_as(af: Family, addr: &IpAddr) -> u32 {
    match (af, addr) {
        (Family::V4, IpAddr::V6(a)) => (u128::from(*a) >> 96) as u32,
        _ => fold_addr(addr),
    }
}

/// The port the `sh-port`/`mh-port` flag adds to the key: the packet's source port for TCP,
/// UDP and SCTP packets when `use_port` is set, otherwise 0.
#[inline]
pub fn sched_port(use_port: bool, proto: Protocol, sport: u16) -> u16 {
    if use_port && proto.has_ports() {
        sport
    } else {
        0
    }
}

/// The `is_unavailable()` test of `ip_vs_sh.c`/`ip_vs_mh.c` (and the weight/overload part of
/// `ip_vs_dh.c`'s test): weight ≤ 0 or OVERLOAD set.
#[inline]
pub fn is_unavailable(d: &Dest) -> bool {
    d.weight <= 0 || d.is_overloaded()
}

/// An `hsiphash_key_t` of a 64-bit kernel: two 64-bit key words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HsipKey {
    /// `key[0]`
    pub k0: u64,
    /// `key[1]`
    pub k1: u64,
}

/// `ip_vs_mh.c`'s first key (offset and lookup): both words 2654435761.
pub const MH_KEY1: HsipKey = HsipKey {
    k0: 2_654_435_761,
    k1: 2_654_435_761,
};

/// `ip_vs_mh.c`'s second key (skip): both words 2654446892.
pub const MH_KEY2: HsipKey = HsipKey {
    k0: 2_654_446_892,
    k1: 2_654_446_892,
};

/// One SipHash round on the four 64-bit state words.
#[inline(always)]
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// The kernel's `hsiphash(&value, 4, key)` on a 64-bit little-endian kernel: SipHash-1-3 of
/// the 4 bytes of `value` in little-endian order, truncated to 32 bits.
#[inline]
pub fn hsiphash_u32(value: u32, key: &HsipKey) -> u32 {
    let mut v = [
        0x736f_6d65_7073_6575 ^ key.k0,
        0x646f_7261_6e64_6f6d ^ key.k1,
        0x6c79_6765_6e65_7261 ^ key.k0,
        0x7465_6462_7974_6573 ^ key.k1,
    ];
    // no full 8-byte block; the last block holds the length (4) in its top byte and the
    // four message bytes at the bottom
    let b = (4u64 << 56) | u64::from(value);
    v[3] ^= b;
    sip_round(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    sip_round(&mut v);
    sip_round(&mut v);
    sip_round(&mut v);
    (v[0] ^ v[1] ^ v[2] ^ v[3]) as u32
}

/// Test support shared by the hashing schedulers' unit tests: build a destination list.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::IpAddr;

    use crate::dest::{Dest, DestId, DestList, Dests, SvcId, DEST_F_OVERLOAD};
    use crate::model::DestConf;
    use crate::rng::Rng;
    use crate::sched::{SchedCtx, SchedPacket};
    use crate::time::Tick;

    /// A service's destinations: the slab plus the list order (index 0 = head).
    #[derive(Default)]
    pub(crate) struct Fixture {
        pub dests: Dests,
        pub order: Vec<DestId>,
    }

    impl Fixture {
        /// Destinations `addrs` (with `weights`) added one after the other, as `ipvsadm -a`
        /// would: each new one goes to the head, so the list ends up in reverse order.
        pub fn added(addrs: &[(&str, u16, i32)]) -> Fixture {
            let mut f = Fixture::default();
            for &(a, port, w) in addrs {
                f.add(a, port, w);
            }
            f
        }
        /// Add one destination at the head; returns its id.
        pub fn add(&mut self, addr: &str, port: u16, weight: i32) -> DestId {
            let ip: IpAddr = addr.parse().expect("test address");
            let conf = DestConf::new(ip, port).weight(weight);
            let id = self.dests.insert_with(|id| Dest::new(id, SvcId(0), &conf));
            self.order.insert(0, id);
            id
        }
        /// Unlink the destination at `pos`.
        pub fn remove(&mut self, pos: usize) -> DestId {
            let id = self.order.remove(pos);
            self.dests.remove(id);
            id
        }
        /// Edit a weight (`ipvsadm -e`), keeping `last_weight` as the kernel does.
        pub fn set_weight(&mut self, pos: usize, w: i32) {
            let d = self.dests.get_mut(self.order[pos]).expect("live");
            let conf = d.conf().weight(w);
            d.apply_conf(&conf);
        }
        /// Set or clear OVERLOAD.
        pub fn set_overload(&mut self, pos: usize, on: bool) {
            let d = self.dests.get_mut(self.order[pos]).expect("live");
            if on {
                d.flags |= DEST_F_OVERLOAD;
            } else {
                d.flags &= !DEST_F_OVERLOAD;
            }
        }
        /// The list view.
        pub fn list(&self) -> DestList<'_> {
            DestList::new(&self.order, &self.dests)
        }
        /// The address of the destination at `pos`.
        pub fn addr(&self, pos: usize) -> String {
            self.list().get(pos).addr.to_string()
        }
    }

    /// A TCP packet from `src:sport` to `dst:80`.
    pub(crate) fn pkt(src: &str, sport: u16, dst: &str) -> SchedPacket {
        pkt_proto(crate::model::Protocol::Tcp, src, sport, dst)
    }

    /// A packet of protocol `proto` from `src:sport` to `dst:80`.
    pub(crate) fn pkt_proto(
        proto: crate::model::Protocol,
        src: &str,
        sport: u16,
        dst: &str,
    ) -> SchedPacket {
        SchedPacket {
            proto,
            saddr: src.parse().expect("test address"),
            sport,
            daddr: dst.parse().expect("test address"),
            dport: 80,
        }
    }

    /// A real-kernel recording: destinations added in this order (address, port, weight),
    /// then weight edits, then UDP clients (source, source port, VIP) and the destination
    /// address the kernel chose (`None`: no destination).
    pub(crate) struct KernelCase<'a> {
        pub flags: u32,
        pub added: &'a [(&'a str, u16, i32)],
        pub edits: &'a [(&'a str, i32)],
        pub clients: &'a [(&'a str, u16, &'a str, Option<&'a str>)],
    }

    /// Replay a [`KernelCase`] through scheduler `s` and compare every decision.
    pub(crate) fn replay(s: &mut dyn crate::sched::Scheduler, case: &KernelCase<'_>) {
        use crate::sched::DestChange;
        let mut f = Fixture::default();
        s.dests_changed(f.list(), DestChange::Init);
        for &(a, port, w) in case.added {
            f.add(a, port, w);
            s.dests_changed(f.list(), DestChange::Added { pos: 0 });
        }
        for &(a, w) in case.edits {
            let pos = (0..f.order.len())
                .find(|&p| f.addr(p) == a)
                .expect("edited dest");
            f.set_weight(pos, w);
            s.dests_changed(f.list(), DestChange::Updated { pos });
        }
        for &(src, sport, vip, want) in case.clients {
            let p = pkt_proto(crate::model::Protocol::Udp, src, sport, vip);
            let got = with_ctx(case.flags, |ctx| s.schedule(f.list(), &p, ctx)).map(|p| f.addr(p));
            assert_eq!(got.as_deref(), want, "{src}:{sport} → {vip}");
        }
    }

    /// Run `f` with a context carrying `flags`.
    pub(crate) fn with_ctx<R>(flags: u32, f: impl FnOnce(&mut SchedCtx<'_>) -> R) -> R {
        let mut rng = Rng::seeded(1);
        let mut ctx = SchedCtx {
            now: Tick::ZERO,
            svc_flags: flags,
            rng: &mut rng,
        };
        f(&mut ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain byte-oriented SipHash-c-d (the reference algorithm), used to cross-check the
    /// specialised 4-byte version.
    fn siphash_cd(c: usize, d: usize, k0: u64, k1: u64, msg: &[u8]) -> u64 {
        let mut v = [
            0x736f_6d65_7073_6575 ^ k0,
            0x646f_7261_6e64_6f6d ^ k1,
            0x6c79_6765_6e65_7261 ^ k0,
            0x7465_6462_7974_6573 ^ k1,
        ];
        let full = msg.len() / 8 * 8;
        let absorb = |v: &mut [u64; 4], m: u64| {
            v[3] ^= m;
            for _ in 0..c {
                sip_round(v);
            }
            v[0] ^= m;
        };
        for ch in msg[..full].chunks(8) {
            absorb(&mut v, u64::from_le_bytes(ch.try_into().unwrap()));
        }
        let mut last = [0u8; 8];
        last[..msg.len() - full].copy_from_slice(&msg[full..]);
        last[7] = msg.len() as u8;
        absorb(&mut v, u64::from_le_bytes(last));
        v[2] ^= 0xff;
        for _ in 0..d {
            sip_round(&mut v);
        }
        v[0] ^ v[1] ^ v[2] ^ v[3]
    }

    #[test]
    fn hash_32_multiplies_by_golden_ratio_and_keeps_top_bits() {
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(1, 10), 0x61C8_8647 >> 22);
        assert_eq!(hash_32(2, 8), 0xC3);
        // 10.0.0.1 = 0x0A000001 → 0x0A000001 · 0x61C88647 mod 2^32 = 0x27C88647
        assert_eq!(hash_32(0x0A00_0001, 32), 0x27C8_8647);
        assert_eq!(hash_32(0x0A00_0001, 8), 0x27);
    }

    #[test]
    fn ipv4_folds_to_host_order() {
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(fold_addr(&a), 0x0A01_0203);
        assert_eq!(fold_addr_as(Family::V6, &a), 0x0A01_0203);
    }

    #[test]
    fn ipv6_folds_to_xor_of_words() {
        let a: IpAddr = "2001:db8::1:0:0:1".parse().unwrap();
        // words 0x20010db8, 0x00000000, 0x00010000, 0x00000001
        assert_eq!(fold_addr(&a), 0x2000_0db9);
        let b: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(
            fold_addr(&b),
            0x2001_0db8 ^ 0x0001_0002 ^ 0x0003_0004 ^ 0x0005_0006
        );
        // read as IPv4 (IPv4 service, IPv6 tunnel destination): the first word only
        assert_eq!(fold_addr_as(Family::V4, &b), 0x2001_0db8);
    }

    #[test]
    fn sched_port_only_for_port_protocols_and_flag() {
        assert_eq!(sched_port(true, Protocol::Tcp, 1234), 1234);
        assert_eq!(sched_port(true, Protocol::Udp, 1234), 1234);
        assert_eq!(sched_port(true, Protocol::Sctp, 1234), 1234);
        assert_eq!(sched_port(true, Protocol::Ip, 1234), 0);
        assert_eq!(sched_port(false, Protocol::Tcp, 1234), 0);
    }

    #[test]
    fn generic_siphash_matches_the_published_2_4_vectors() {
        // SipHash-2-4 paper, appendix: key 00..0f, message 00..0e (15 bytes)
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash_cd(2, 4, k0, k1, &msg), 0xa129_ca61_49be_45e5);
        // first entry of the reference vectors.h: empty message
        assert_eq!(siphash_cd(2, 4, k0, k1, &[]), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn hsiphash_is_siphash_1_3_of_the_little_endian_bytes() {
        for &v in &[0u32, 1, 0x0A01_0203, 0xdead_beef, u32::MAX] {
            for key in [MH_KEY1, MH_KEY2] {
                let expect = siphash_cd(1, 3, key.k0, key.k1, &v.to_le_bytes()) as u32;
                assert_eq!(hsiphash_u32(v, &key), expect, "v={v:#x}");
            }
        }
    }

    /// Values computed independently with a from-the-paper Python SipHash-1-3 (validated on
    /// the published 2-4 vectors first), for the keys `ip_vs_mh.c` uses.
    #[test]
    fn hsiphash_pinned_values() {
        assert_eq!(hsiphash_u32(0, &MH_KEY1), PINNED[0]);
        assert_eq!(hsiphash_u32(1, &MH_KEY1), PINNED[1]);
        assert_eq!(hsiphash_u32(0x0A01_0203, &MH_KEY1), PINNED[2]);
        assert_eq!(hsiphash_u32(0x0A01_0203 + 80, &MH_KEY2), PINNED[3]);
        assert_eq!(hsiphash_u32(0xdead_beef, &MH_KEY2), PINNED[4]);
    }

    const PINNED: [u32; 5] = [
        0x1d5a_77c2,
        0x16ec_66b2,
        0x2b29_8ba1,
        0xb955_b61e,
        0x37dd_7b7e,
    ];
}
