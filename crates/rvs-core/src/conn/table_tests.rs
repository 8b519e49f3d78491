//! Behaviour of [`ConnTable`]: lookups in each direction, templates, capacity, timers, listing.

use std::net::IpAddr;

use super::*;
use crate::dest::DestId;
use crate::model::{Family, Protocol};
use crate::time::{Span, Tick};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;
const NAT: u32 = conn_flags::MASQ | conn_flags::INACTIVE;
const DR: u32 = conn_flags::DROUTE | conn_flags::NOOUTPUT | conn_flags::INACTIVE;

fn conn(proto: Protocol, c: (&str, u16), v: (&str, u16), d: (&str, u16), flags: u32) -> Conn {
    Conn::new(proto, (ip(c.0), c.1), (ip(v.0), v.1), (ip(d.0), d.1), flags)
}

fn nat(cport: u16) -> Conn {
    conn(
        TCP,
        ("10.0.0.5", cport),
        ("192.168.1.100", 80),
        ("10.1.0.1", 8080),
        NAT,
    )
}

#[test]
fn inbound_lookup_matches_all_five_fields() {
    let mut t = ConnTable::new(64, 1);
    let id = t.insert(nat(51234), Tick(0)).unwrap();
    let (c, v) = (ip("10.0.0.5"), ip("192.168.1.100"));
    assert_eq!(t.find_in(TCP, c, 51234, v, 80), Some(id));
    assert_eq!(t.find_in(UDP, c, 51234, v, 80), None);
    assert_eq!(t.find_in(TCP, c, 51235, v, 80), None);
    assert_eq!(t.find_in(TCP, c, 51234, v, 81), None);
    assert_eq!(t.find_in(TCP, c, 51234, ip("192.168.1.101"), 80), None);
    assert_eq!(t.find_in(TCP, ip("10.0.0.6"), 51234, v, 80), None);
}

#[test]
fn outbound_lookup_nat_by_real_server_dr_by_vip() {
    let mut t = ConnTable::new(64, 2);
    let n = t.insert(nat(40000), Tick(0)).unwrap();
    let dr = conn(
        TCP,
        ("10.0.0.5", 40001),
        ("192.168.1.100", 80),
        ("10.1.0.2", 80),
        DR,
    );
    let d = t.insert(dr, Tick(0)).unwrap();
    let client = ip("10.0.0.5");
    // NAT reply from the real server
    assert_eq!(
        t.find_out(TCP, ip("10.1.0.1"), 8080, client, 40000),
        Some(n)
    );
    // a NAT entry is not matched by its VIP
    assert_eq!(
        t.find_out(TCP, ip("192.168.1.100"), 80, client, 40000),
        None
    );
    // DR entry: the source must be the VIP, not the real server
    assert_eq!(
        t.find_out(TCP, ip("192.168.1.100"), 80, client, 40001),
        Some(d)
    );
    assert_eq!(t.find_out(TCP, ip("10.1.0.2"), 80, client, 40001), None);
    // wrong client port
    assert_eq!(t.find_out(TCP, ip("10.1.0.1"), 8080, client, 40001), None);
}

#[test]
fn newest_duplicate_is_found_first_and_older_after_removal() {
    let mut t = ConnTable::new(64, 3);
    let old = t.insert(nat(1000), Tick(0)).unwrap();
    let new = t.insert(nat(1000), Tick(0)).unwrap();
    let (c, v) = (ip("10.0.0.5"), ip("192.168.1.100"));
    assert_eq!(t.find_in(TCP, c, 1000, v, 80), Some(new));
    t.remove(new).unwrap();
    assert_eq!(t.find_in(TCP, c, 1000, v, 80), Some(old));
}

#[test]
fn no_cport_entries_match_only_port_zero_and_are_retried() {
    let mut t = ConnTable::new(64, 4);
    let flags = NAT | conn_flags::NO_CPORT;
    let ftp = conn(
        TCP,
        ("10.0.0.5", 0),
        ("192.168.1.100", 20),
        ("10.1.0.1", 20),
        flags,
    );
    let id = t.insert(ftp, Tick(0)).unwrap();
    let (c, v) = (ip("10.0.0.5"), ip("192.168.1.100"));
    // a lookup with a real port falls back to port 0 and finds it
    assert_eq!(t.find_in(TCP, c, 3000, v, 20), Some(id));
    assert_eq!(t.find_in(TCP, c, 0, v, 20), Some(id));
    assert!(t.fill_cport(id, 3000));
    assert_eq!(t.state(id).unwrap().flags & conn_flags::NO_CPORT, 0);
    assert_eq!(t.find_in(TCP, c, 3000, v, 20), Some(id));
    assert_eq!(t.find_in(TCP, c, 3001, v, 20), None);
    assert_eq!(t.find_in(TCP, c, 0, v, 20), None);
    assert!(!t.fill_cport(id, 4000));
}

#[test]
fn entries_with_port_zero_and_templates_never_match_inbound() {
    let mut t = ConnTable::new(64, 5);
    let key = TemplateKey::service(TCP, ip("10.0.0.0"), ip("192.168.1.100"), 80);
    let tpl = Conn::template(&key, (ip("10.1.0.1"), 80), conn_flags::MASQ, 360_000);
    t.insert(tpl, Tick(0)).unwrap();
    let (c, v) = (ip("10.0.0.0"), ip("192.168.1.100"));
    assert_eq!(t.find_in(TCP, c, 0, v, 80), None);
}

#[test]
fn template_lookup_and_invalidation() {
    let mut t = ConnTable::new(64, 6);
    let net = ip("10.0.0.0");
    let key = TemplateKey::service(TCP, net, ip("192.168.1.100"), 443);
    let tpl = Conn::template(&key, (ip("10.1.0.1"), 443), conn_flags::MASQ, 360_000);
    let id = t.insert(tpl, Tick(0)).unwrap();
    assert_eq!(t.find_template(&key), Some(id));
    // other port, protocol or network: no match
    assert_eq!(t.find_template(&TemplateKey { vport: 80, ..key }), None);
    assert_eq!(t.find_template(&TemplateKey { proto: UDP, ..key }), None);
    assert_eq!(
        t.find_template(&TemplateKey {
            caddr: ip("10.0.1.0"),
            ..key
        }),
        None
    );
    // a normal connection with the same addresses is not a template
    let plain = conn(
        TCP,
        ("10.0.0.0", 0),
        ("192.168.1.100", 443),
        ("10.1.0.1", 443),
        NAT,
    );
    let mut t2 = ConnTable::new(8, 6);
    t2.insert(plain, Tick(0)).unwrap();
    assert_eq!(t2.find_template(&key), None);

    assert!(t.invalidate_template(id));
    assert_eq!(t.find_template(&key), None);
    let c = t.get(id).unwrap();
    assert_eq!((c.cport, c.vport, c.dport), (0, 0xffff, 0xffff));
    assert!(!t.invalidate_template(id), "second invalidation is a no-op");
    // it still exists and still expires on its own timer
    assert_eq!(t.pop_expired(Tick(359_999)), None);
    assert_eq!(t.pop_expired(Tick(360_000)), Some(id));
}

#[test]
fn fwmark_templates_store_the_mark_as_vaddr() {
    let mut t = ConnTable::new(64, 7);
    let key = TemplateKey::fwmark(ip("10.0.0.9"), 1);
    assert_eq!(key.vaddr, ip("0.0.0.1"));
    let tpl = Conn::template(&key, (ip("10.1.0.1"), 0), conn_flags::DROUTE, 300_000);
    let id = t.insert(tpl, Tick(0)).unwrap();
    assert_eq!(
        t.find_template(&TemplateKey::fwmark(ip("10.0.0.9"), 1)),
        Some(id)
    );
    assert_eq!(
        t.find_template(&TemplateKey::fwmark(ip("10.0.0.9"), 2)),
        None
    );
    let l = t.listing(Tick(48_000)).next().unwrap();
    assert_eq!(l.proto.name(), "IP");
    assert_eq!(
        (l.state, l.virt, l.expire_secs),
        ("NONE", (ip("0.0.0.1"), 0), 252)
    );
    // IPv6 fwmark service: the mark sits in the first 32 bits
    assert_eq!(fwmark_vaddr(Family::V6, 0x0102_0304), ip("102:304::"));
    let key6 = TemplateKey::fwmark(ip("2001:db8::"), 7);
    let id6 = t.insert(
        Conn::template(&key6, (ip("2001:db8:1::1"), 0), 3, 1000),
        Tick(0),
    );
    assert_eq!(t.find_template(&key6), Some(id6.unwrap()));
}

#[test]
fn full_table_refuses_counts_and_keeps_entries() {
    let mut t = ConnTable::new(3, 8);
    let ids: Vec<ConnId> = (0..3)
        .map(|p| t.insert(nat(1000 + p), Tick(0)).unwrap())
        .collect();
    assert_eq!(t.insert(nat(2000), Tick(0)), Err(TableFull));
    assert_eq!(t.insert(nat(2001), Tick(0)), Err(TableFull));
    assert_eq!(t.full_drops(), 2);
    assert_eq!(t.len(), 3);
    let (c, v) = (ip("10.0.0.5"), ip("192.168.1.100"));
    for (p, id) in ids.iter().enumerate() {
        assert_eq!(t.find_in(TCP, c, 1000 + p as u16, v, 80), Some(*id));
    }
    assert_eq!(t.find_in(TCP, c, 2000, v, 80), None);
    // room again after a removal
    t.remove(ids[1]).unwrap();
    assert!(t.insert(nat(2000), Tick(0)).is_ok());
}

#[test]
fn one_packet_entries_are_not_hashed_nor_listed() {
    let mut t = ConnTable::new(8, 9);
    let flags = NAT | conn_flags::ONE_PACKET;
    let c = conn(
        UDP,
        ("10.0.0.5", 5353),
        ("192.168.1.100", 53),
        ("10.1.0.1", 53),
        flags,
    );
    let id = t.insert(c, Tick(0)).unwrap();
    assert_eq!(
        t.find_in(UDP, ip("10.0.0.5"), 5353, ip("192.168.1.100"), 53),
        None
    );
    assert_eq!(t.listing(Tick(0)).count(), 0);
    assert_eq!(t.len(), 1);
    assert_eq!(t.state(id).unwrap().flags & conn_flags::HASHED, 0);
    // ip_vs_conn_put: a one-packet entry is due at once
    t.touch(id, Tick(10));
    assert_eq!(t.pop_expired(Tick(10)), Some(id));
}

#[test]
fn timers_fire_in_order_never_early_and_rearm() {
    let mut t = ConnTable::new(16, 10);
    let a = t.insert(nat(1), Tick(1_000)).unwrap(); // 3 s initial timeout → 4_000
    let b = t.insert(nat(2), Tick(500)).unwrap(); // → 3_500
    let c = t.insert(nat(3), Tick(1_000)).unwrap(); // → 4_000
    assert_eq!(t.get(b).unwrap().expires, Tick(3_500));
    assert_eq!(t.pop_expired(Tick(3_499)), None);
    t.get_mut(c).unwrap().timeout = 900_000;
    t.touch(c, Tick(3_000)); // re-armed before it fired
    let due: Vec<ConnId> = std::iter::from_fn(|| t.pop_expired(Tick(10_000))).collect();
    assert_eq!(due, vec![b, a]);
    // popped entries stay in the table, disarmed, until the engine acts
    assert_eq!(t.len(), 3);
    assert_eq!(
        t.listing(Tick(10_000))
            .find(|l| l.id == a)
            .unwrap()
            .expire_secs,
        0
    );
    // template rule: re-arm with 60 s
    t.set_timer(a, Tick(10_000) + Span(TEMPLATE_REARM_MS));
    assert_eq!(t.pop_expired(Tick(69_999)), None);
    assert_eq!(t.pop_expired(Tick(70_000)), Some(a));
    assert_eq!(t.pop_expired(Tick(903_000)), Some(c));
}

#[test]
fn clock_jump_of_hours_expires_everything_exactly_once() {
    let mut t = ConnTable::new(5000, 11);
    for p in 0..5000u16 {
        let mut c = nat(p);
        c.st.timeout = u64::from(p) * 7_000; // up to ~9.7 hours
        t.insert(c, Tick(0)).unwrap();
    }
    let mut last = (0, 0);
    let mut n = 0;
    while let Some(id) = t.pop_expired(Tick(10 * 3_600_000)) {
        let e = t.get(id).unwrap().expires.0;
        assert!((e, id.0) > last || n == 0, "order");
        last = (e, id.0);
        t.remove(id).unwrap();
        n += 1;
    }
    assert_eq!((n, t.len()), (5000, 0));
}

#[test]
fn expire_now_only_brings_timers_forward() {
    let mut t = ConnTable::new(8, 12);
    let id = t.insert(nat(1), Tick(0)).unwrap();
    assert!(t.expire_now(id, Tick(1_000)));
    assert_eq!(t.get(id).unwrap().expires, Tick(1_000));
    assert!(!t.expire_now(id, Tick(2_000)), "already due");
    assert_eq!(t.pop_expired(Tick(1_000)), Some(id));
    assert!(!t.expire_now(id, Tick(1_000)), "not armed");
}

#[test]
fn removal_disarms_and_frees_the_slot_for_reuse() {
    let mut t = ConnTable::new(4, 13);
    let a = t.insert(nat(1), Tick(0)).unwrap();
    let removed = t.remove(a).unwrap();
    assert_eq!(removed.cport, 1);
    assert!(t.remove(a).is_none());
    assert!(t.get(a).is_none());
    assert_eq!(t.pop_expired(Tick(1_000_000)), None);
    let b = t.insert(nat(2), Tick(0)).unwrap();
    assert_eq!(b, a, "LIFO slot reuse");
    assert_eq!(t.ids().collect::<Vec<_>>(), vec![b]);
}

#[test]
fn ipv6_and_mixed_family_entries() {
    let mut t = ConnTable::new(16, 14);
    let v6 = conn(
        TCP,
        ("2001:db8::5", 40000),
        ("2001:db8::100", 443),
        ("2001:db8:1::1", 443),
        NAT,
    );
    let id6 = t.insert(v6, Tick(0)).unwrap();
    let (c, v) = (ip("2001:db8::5"), ip("2001:db8::100"));
    assert_eq!(t.find_in(TCP, c, 40000, v, 443), Some(id6));
    assert_eq!(
        t.find_out(TCP, ip("2001:db8:1::1"), 443, c, 40000),
        Some(id6)
    );
    assert_eq!(t.get(id6).unwrap().af(), Family::V6);
    // IPv4 service tunnelled to an IPv6 real server
    let tun = conn_flags::TUNNEL | conn_flags::NOOUTPUT;
    let mixed = conn(
        TCP,
        ("10.0.0.5", 1234),
        ("192.168.1.100", 80),
        ("2001:db8:1::2", 80),
        tun,
    );
    let idm = t.insert(mixed, Tick(0)).unwrap();
    let got = t.get(idm).unwrap();
    assert_eq!((got.af(), got.daf()), (Family::V4, Family::V6));
    assert_eq!(
        t.find_in(TCP, ip("10.0.0.5"), 1234, ip("192.168.1.100"), 80),
        Some(idm)
    );
    t.remove(id6).unwrap();
    assert_eq!(t.find_in(TCP, c, 40000, v, 443), None);
    assert_eq!(t.get(idm).unwrap().daddr, ip("2001:db8:1::2"));
}

#[test]
fn long_chains_stay_consistent_under_removal() {
    // 256 buckets, 3000 entries: chains of ~12
    let mut t = ConnTable::with_buckets(3000, 256, 15);
    let ids: Vec<ConnId> = (0..3000)
        .map(|p| t.insert(nat(p), Tick(0)).unwrap())
        .collect();
    for id in ids.iter().step_by(3) {
        t.remove(*id).unwrap();
    }
    let (c, v) = (ip("10.0.0.5"), ip("192.168.1.100"));
    for (p, id) in ids.iter().enumerate() {
        let want = (p % 3 != 0).then_some(*id);
        assert_eq!(t.find_in(TCP, c, p as u16, v, 80), want);
    }
}

#[test]
fn listing_reports_seconds_state_and_addresses() {
    let mut t = ConnTable::new(8, 16);
    let id = t.insert(nat(51234), Tick(0)).unwrap();
    let st = t.get_mut(id).unwrap();
    st.state = tcp::ESTABLISHED;
    st.timeout = 900_000;
    st.dest = Some(DestId(1));
    t.touch(id, Tick(1_000));
    let l = t.listing(Tick(1_500)).next().unwrap();
    // (901_000 - 1_500) / 1000 = 899.5 → 899, as the kernel's integer division
    assert_eq!(
        (l.proto.name(), l.expire_secs, l.state),
        ("TCP", 899, "ESTABLISHED")
    );
    assert_eq!(l.client, (ip("10.0.0.5"), 51234));
    assert_eq!(l.virt, (ip("192.168.1.100"), 80));
    assert_eq!(l.dest, (ip("10.1.0.1"), 8080));
    let udp = conn(
        UDP,
        ("10.0.0.7", 40000),
        ("192.168.1.100", 53),
        ("10.1.0.3", 53),
        NAT,
    );
    let u = t.insert(udp, Tick(0)).unwrap();
    assert_eq!(t.listing(Tick(0)).find(|l| l.id == u).unwrap().state, "UDP");
}

#[test]
fn assure_template_only_touches_templates_once() {
    let mut t = ConnTable::new(8, 17);
    let key = TemplateKey::service(UDP, ip("10.0.0.0"), ip("192.168.1.100"), 53);
    let tpl = t
        .insert(Conn::template(&key, (ip("10.1.0.1"), 53), 0, 1000), Tick(0))
        .unwrap();
    let plain = t.insert(nat(5), Tick(0)).unwrap();
    assert!(t.assure_template(tpl));
    assert!(!t.assure_template(tpl));
    assert!(!t.assure_template(plain));
    assert_eq!(t.get(tpl).unwrap().state_name(), "ASSURED");
}

#[test]
fn same_operations_same_seed_same_everything() {
    let run = |seed| {
        let mut t = ConnTable::new(100, seed);
        for p in 0..50 {
            t.insert(nat(p), Tick(u64::from(p))).unwrap();
        }
        let due: Vec<ConnId> = std::iter::from_fn(|| t.pop_expired(Tick(3_020))).collect();
        (due, t.ids().collect::<Vec<_>>())
    };
    assert_eq!(run(99), run(99));
    assert_eq!(run(99), run(100), "order never depends on the hash seed");
}

#[test]
fn buckets_grow_with_the_entries_and_lookups_survive_the_rehash() {
    use std::net::Ipv4Addr;
    let mut t = ConnTable::new(1 << 16, 9);
    assert_eq!(t.bucket_count(), 256);
    let vip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let rs = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1));
    let mut ids = Vec::new();
    for n in 0..5000u32 {
        let c = IpAddr::V4(Ipv4Addr::from(0xc000_0000 + n));
        let conn = Conn::new(Protocol::Tcp, (c, 1000), (vip, 80), (rs, 80), 0);
        ids.push((c, t.insert(conn, Tick(0)).unwrap()));
    }
    // doubled while more than half full: 5000 entries need 16384 buckets
    assert_eq!(t.bucket_count(), 16384);
    for (c, id) in ids {
        assert_eq!(t.find_in(Protocol::Tcp, c, 1000, vip, 80), Some(id));
    }
    // never beyond twice the capacity (rounded up to a power of two)
    let mut small = ConnTable::new(300, 1);
    for n in 0..300u32 {
        let c = IpAddr::V4(Ipv4Addr::from(0xc100_0000 + n));
        small
            .insert(
                Conn::new(Protocol::Tcp, (c, 1), (vip, 80), (rs, 80), 0),
                Tick(0),
            )
            .unwrap();
    }
    assert_eq!(small.bucket_count(), 1024);
}

#[test]
fn a_doubling_moves_a_few_chains_per_insert_and_every_lookup_holds_meanwhile() {
    use std::net::Ipv4Addr;
    let mut t = ConnTable::new(1 << 16, 5);
    let (vip, rs) = (ip("10.0.0.1"), ip("10.1.0.1"));
    let client = |n: u32| IpAddr::V4(Ipv4Addr::from(0xc000_0000 + n));
    let entry = |n: u32| Conn::new(TCP, (client(n), 1000), (vip, 80), (rs, 80), NAT);
    // a persistence template and two entries with one key, all before the doubling: the
    // newer of the two must still be found first once their chain has moved
    let tpl_key = TemplateKey::service(TCP, ip("192.168.7.0"), vip, 80);
    let tpl = t
        .insert(Conn::template(&tpl_key, (rs, 80), 0, 360_000), Tick(0))
        .unwrap();
    t.insert(entry(0), Tick(0)).unwrap();
    let newer = t.insert(entry(0), Tick(0)).unwrap();
    let mut live: Vec<(u32, ConnId)> = Vec::new();
    let mut n = 1;
    while !t.doubling_under_way() {
        live.push((n, t.insert(entry(n), Tick(0)).unwrap()));
        n += 1;
    }
    assert_eq!(t.bucket_count(), 512, "256 buckets double past 128 entries");
    let find = |t: &ConnTable, n: u32| t.find_in(TCP, client(n), 1000, vip, 80);
    let mut inserts_while_moving = 0;
    let mut gone = Vec::new();
    while t.doubling_under_way() {
        for &(m, id) in &live {
            assert_eq!(find(&t, m), Some(id), "entry {m} during the doubling");
        }
        for &m in &gone {
            assert_eq!(find(&t, m), None, "removed entry {m} during the doubling");
        }
        assert_eq!(find(&t, 0), Some(newer));
        assert_eq!(t.find_template(&tpl_key), Some(tpl));
        // unlink one during the doubling, and give another key a newer entry
        if inserts_while_moving % 3 == 0 {
            let (m, id) = live.remove(inserts_while_moving % live.len());
            assert!(t.remove(id).is_some());
            gone.push(m);
        }
        let (m, _) = live[inserts_while_moving % live.len()];
        let again = t.insert(entry(m), Tick(0)).unwrap();
        live.retain(|&(k, _)| k != m);
        live.push((m, again));
        inserts_while_moving += 1;
    }
    // 256 old buckets, moved 8 per insert: the work was spread, not done in one insert
    assert_eq!(inserts_while_moving, 256 / 8 - 1);
    for &(m, id) in &live {
        assert_eq!(find(&t, m), Some(id), "entry {m} after the doubling");
    }
    for &m in &gone {
        assert_eq!(find(&t, m), None);
    }
    assert_eq!(find(&t, 0), Some(newer));
    assert_eq!(t.find_template(&tpl_key), Some(tpl));
}
