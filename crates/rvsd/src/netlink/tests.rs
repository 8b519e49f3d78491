//! The decoders on byte fixtures (little-endian hosts: netlink numbers are in host order),
//! and the calls against the kernel in network namespaces of their own (root: `ip netns
//! add`, veth pairs; each test's namespaces are named after the process and the test).

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use super::wire::*;
use super::*;

/// nlmsghdr: length, type, flags, sequence, port.
fn hdr(len: u32, ty: u16, flags: u16, seq: u32, port: u32) -> Vec<u8> {
    let mut v = len.to_le_bytes().to_vec();
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&port.to_le_bytes());
    v
}

/// `ip link show lo` as the kernel sends it in a dump (abridged to the attributes read).
#[rustfmt::skip]
const LINK_LO: &[u8] = &[
    // ifinfomsg: family 0, pad, type 772 (loopback), index 1, flags UP|LOOPBACK|RUNNING, change 0
    0, 0, 0x04, 0x03, 1, 0, 0, 0, 0x49, 0, 0, 0, 0, 0, 0, 0,
    // IFLA_IFNAME "lo" (7 bytes, padded to 8)
    7, 0, 3, 0, b'l', b'o', 0, 0,
    // IFLA_MTU 65536
    8, 0, 4, 0, 0, 0, 1, 0,
    // IFLA_TXQLEN 1000 (not read)
    8, 0, 13, 0, 0xe8, 3, 0, 0,
    // IFLA_ADDRESS 00:00:00:00:00:00 (10 bytes, padded to 12)
    10, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// `ip route get 10.0.0.9` on a host whose default route is via 10.0.0.1 dev #3.
#[rustfmt::skip]
const ROUTE_VIA: &[u8] = &[
    // rtmsg: AF_INET, dst_len 32, src_len 0, tos 0, table main, proto 0, scope 0, type unicast, flags RTM_F_CLONED
    2, 32, 0, 0, 254, 0, 0, 1, 0, 2, 0, 0,
    // RTA_TABLE 254
    8, 0, 15, 0, 254, 0, 0, 0,
    // RTA_DST 10.0.0.9
    8, 0, 1, 0, 10, 0, 0, 9,
    // RTA_OIF 3
    8, 0, 4, 0, 3, 0, 0, 0,
    // RTA_PREFSRC 10.0.0.2
    8, 0, 7, 0, 10, 0, 0, 2,
    // RTA_GATEWAY 10.0.0.1
    8, 0, 5, 0, 10, 0, 0, 1,
    // RTA_UID 0
    8, 0, 25, 0, 0, 0, 0, 0,
];

/// A REACHABLE neighbour 10.0.0.1 at 02:00:00:00:00:01 on #3.
#[rustfmt::skip]
const NEIGH: &[u8] = &[
    // ndmsg: AF_INET, pads, ifindex 3, state REACHABLE, flags 0, type unicast
    2, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 1,
    // NDA_DST
    8, 0, 1, 0, 10, 0, 0, 1,
    // NDA_LLADDR (10 bytes, padded to 12)
    10, 0, 2, 0, 2, 0, 0, 0, 0, 1, 0, 0,
    // NDA_PROBES 1
    8, 0, 4, 0, 1, 0, 0, 0,
];

/// A bpf filter on ingress of #4: handle 1, priority 49152, program rvs_decap.
#[rustfmt::skip]
const FILTER: &[u8] = &[
    // tcmsg: family 0, pads, ifindex 4, handle 1, parent ffff:fff2, info (49152 << 16) | ETH_P_ALL (be)
    0, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0xf2, 0xff, 0xff, 0xff, 0, 3, 0, 0xc0,
    // TCA_KIND "bpf"
    8, 0, 1, 0, b'b', b'p', b'f', 0,
    // TCA_CHAIN 0
    8, 0, 11, 0, 0, 0, 0, 0,
    // TCA_OPTIONS (nested): TCA_BPF_NAME "rvs_decap" (14 bytes, padded to 16), TCA_BPF_FLAGS 1,
    // TCA_BPF_ID 3198
    36, 0, 2, 0x80,
    14, 0, 7, 0, b'r', b'v', b's', b'_', b'd', b'e', b'c', b'a', b'p', 0, 0, 0,
    8, 0, 8, 0, 1, 0, 0, 0,
    8, 0, 11, 0, 0x7e, 0x0c, 0, 0,
];

#[test]
#[cfg(target_endian = "little")]
fn a_link_message_decodes() {
    let link = parse_link(LINK_LO).unwrap();
    assert_eq!(
        link,
        Link {
            ifindex: 1,
            name: "lo".into(),
            mac: [0; 6],
            up: true,
            loopback: true,
            mtu: 65536,
        }
    );
    assert!(parse_link(&LINK_LO[..15]).is_err(), "short ifinfomsg");
}

#[test]
#[cfg(target_endian = "little")]
fn a_route_answer_decodes() {
    let r = parse_route(ROUTE_VIA).unwrap();
    assert_eq!(r.oif, 3);
    assert_eq!(r.gateway, Some("10.0.0.1".parse().unwrap()));
    assert_eq!(r.prefsrc, Some("10.0.0.2".parse().unwrap()));
    assert_eq!(r.rtype, RTN_UNICAST);
    // an IPv4 route via an IPv6 gateway: RTA_VIA (family AF_INET6, then the address)
    let mut p = ROUTE_VIA[..12].to_vec();
    let mut via = vec![10, 0];
    via.extend_from_slice(&"fe80::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    push_attr(&mut p, 18, &via);
    let r = parse_route(&p).unwrap();
    assert_eq!(r.gateway, Some("fe80::1".parse().unwrap()));
}

#[test]
#[cfg(target_endian = "little")]
fn a_neighbour_decodes() {
    let n = parse_neigh(NEIGH).unwrap().unwrap();
    assert_eq!(n.ifindex, 3);
    assert_eq!(n.addr, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(n.mac, Some([2, 0, 0, 0, 0, 1]));
    assert_eq!(n.state, 2);
    assert!(n.state & NUD_USABLE != 0);
    // INCOMPLETE (1) and FAILED (0x20) are not usable
    assert_eq!(0x21 & NUD_USABLE, 0);
    // no NDA_DST: nothing to match
    assert_eq!(parse_neigh(&NEIGH[..12]).unwrap(), None);
}

#[test]
#[cfg(target_endian = "little")]
fn a_bpf_filter_decodes_with_its_program_name() {
    let f = parse_tc(FILTER).unwrap();
    assert_eq!((f.ifindex, f.handle, f.prio), (4, 1, 49152));
    assert_eq!(f.parent, 0xffff_fff2);
    assert_eq!(f.kind, "bpf");
    assert_eq!(f.name.as_deref(), Some("rvs_decap"));
    assert_eq!(f.prog_id, Some(3198));
}

#[test]
#[cfg(target_endian = "little")]
fn an_address_message_prefers_the_local_address() {
    // ifaddrmsg AF_INET /32 scope universe #1; IFA_ADDRESS 10.9.9.9 (a peer), IFA_LOCAL 10.200.0.1
    let mut p = ifaddrmsg(AF_INET, 32, 0, 1);
    push_attr(&mut p, IFA_ADDRESS, &[10, 9, 9, 9]);
    push_attr(&mut p, IFA_LOCAL, &[10, 200, 0, 1]);
    let a = parse_addr(&p).unwrap().unwrap();
    assert_eq!((a.ifindex, a.prefix_len), (1, 32));
    assert_eq!(a.addr, "10.200.0.1".parse::<IpAddr>().unwrap());
    // an IPv4 address of 5 bytes is no address
    let mut p = ifaddrmsg(AF_INET, 32, 0, 1);
    push_attr(&mut p, IFA_LOCAL, &[10, 200, 0, 1, 7]);
    assert_eq!(parse_addr(&p).unwrap(), None);
}

#[test]
#[cfg(target_endian = "little")]
fn messages_split_on_aligned_lengths() {
    // a 17-byte message (padded to 20 in the datagram), then an unpadded NLMSG_DONE
    let mut d = hdr(17, RTM_NEWLINK, 2, 7, 99);
    d.extend_from_slice(&[0xaa, 0, 0, 0]);
    d.extend_from_slice(&hdr(20, NLMSG_DONE, 2, 7, 99));
    d.extend_from_slice(&0u32.to_le_bytes());
    let m = messages(&d).unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!((m[0].ty, m[0].seq, m[0].port), (RTM_NEWLINK, 7, 99));
    assert_eq!(m[0].payload, &[0xaa]);
    assert_eq!((m[1].ty, m[1].payload.len()), (NLMSG_DONE, 4));
}

#[test]
#[cfg(target_endian = "little")]
fn an_error_message_carries_a_negative_errno() {
    let mut d = hdr(36, NLMSG_ERROR, 0, 3, 99);
    d.extend_from_slice(&(-17i32).to_le_bytes());
    d.extend_from_slice(&hdr(40, RTM_NEWADDR, 0x605, 3, 0));
    let m = messages(&d).unwrap();
    assert_eq!(error_code(m[0].payload), Ok(-17));
    assert!(error_code(&[1, 2]).is_err());
    let e = kernel("RTM_NEWADDR", -17);
    assert_eq!(e.errno(), Some(libc::EEXIST));
    assert!(e.to_string().starts_with("RTM_NEWADDR: File exists"), "{e}");
}

#[test]
#[cfg(target_endian = "little")]
fn bad_lengths_are_refused() {
    // a message longer than the datagram, shorter than its header, a header cut short
    assert!(messages(&hdr(64, RTM_NEWLINK, 0, 1, 1)).is_err());
    assert!(messages(&hdr(8, RTM_NEWLINK, 0, 1, 1)).is_err());
    assert!(messages(&hdr(16, RTM_NEWLINK, 0, 1, 1)[..10]).is_err());
    // an attribute shorter than its header, longer than what is left
    assert!(attrs(&[2, 0, 1, 0]).is_err());
    assert!(attrs(&[12, 0, 1, 0, 1, 2, 3, 4]).is_err());
    // fewer than 4 bytes left: padding
    assert_eq!(attrs(&[8, 0, 1, 0, 1, 2, 3, 4, 0, 0]).unwrap().len(), 1);
    // a nested-flag type loses its flag bits
    assert_eq!(attrs(&[4, 0, 2, 0x80]).unwrap(), vec![(2, &[][..])]);
    // a truncated route answer or tc message
    assert!(parse_route(&ROUTE_VIA[..34]).is_err());
    assert!(parse_tc(&FILTER[..19]).is_err());
}

#[test]
#[cfg(target_endian = "little")]
fn requests_are_framed_and_padded() {
    let mut p = ifinfomsg(0);
    push_attr(&mut p, IFLA_IFNAME, b"eth0\0");
    assert_eq!(p.len(), 16 + 12, "5-byte name padded to 8");
    let r = request(RTM_GETLINK, NLM_F_REQUEST, 5, &p);
    assert_eq!(&r[..4], &44u32.to_le_bytes());
    assert_eq!(&r[4..6], &RTM_GETLINK.to_le_bytes());
    assert_eq!(&r[8..12], &5u32.to_le_bytes());
    let m = messages(&r).unwrap();
    assert_eq!(m[0].payload, &p[..]);
    let a = attrs(&m[0].payload[16..]).unwrap();
    assert_eq!(a, vec![(IFLA_IFNAME, &b"eth0\0"[..])]);
}

// ---- against the kernel, in namespaces of their own ----

/// A network namespace of the test's own, removed on drop.
struct Ns(String);

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!("rvs-nl-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Ns(name);
        ns.ip("link set lo up");
        ns
    }

    /// `ip -n NS ARGS` (words split on spaces).
    fn ip(&self, args: &str) {
        let mut all = vec!["-n", &self.0];
        all.extend(args.split(' '));
        run("ip", &all);
    }

    /// Runs `f` on a thread that entered the namespace.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = std::fs::File::open(&path).expect("open the namespace");
                enter(&file);
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Moves the calling thread into the network namespace `file` refers to.
fn enter(file: &std::fs::File) {
    // SAFETY: setns(2) takes a descriptor (open for the whole call) and a flag and touches no
    // memory of ours; CLONE_NEWNET changes only this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", io::Error::last_os_error());
}

/// Namespaces A and B joined by veth `va` (A, 10.77.0.1/24, fd77::1/64) — `vb` (B,
/// 10.77.0.2/24, fd77::2/64).
fn pair(tag: &str) -> (Ns, Ns) {
    let (a, b) = (Ns::new(&format!("{tag}-a")), Ns::new(&format!("{tag}-b")));
    a.ip(&format!("link add va type veth peer name vb netns {}", b.0));
    a.ip("addr add 10.77.0.1/24 dev va");
    b.ip("addr add 10.77.0.2/24 dev vb");
    a.ip("addr add fd77::1/64 dev va nodad");
    b.ip("addr add fd77::2/64 dev vb nodad");
    a.ip("link set va up");
    b.ip("link set vb up");
    (a, b)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn links_by_name_and_index() {
    let (a, _b) = pair("links");
    a.run(|| {
        assert_eq!(ifindex("lo").unwrap(), 1);
        let lo = link(1).unwrap();
        assert!(lo.loopback && lo.up && lo.name == "lo");
        let va = link_by_name("va").unwrap();
        assert!(va.up && !va.loopback && va.mtu == 1500 && va.mac != [0; 6]);
        assert_eq!(link(va.ifindex).unwrap(), va);
        let names: Vec<String> = links().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["lo", "va"]);
        let e = ifindex("nosuch0").unwrap_err();
        assert!(matches!(e, Error::NoLink(_)), "{e}");
        assert_eq!(addrs(va.ifindex).unwrap()[0], ip("10.77.0.1"));
    });
}

#[test]
fn resolve_asks_the_kernel_for_a_neighbour_on_the_link() {
    let (a, b) = pair("nbr");
    let vb_mac = b.run(|| link_by_name("vb").unwrap().mac);
    a.run(|| {
        let va = ifindex("va").unwrap();
        assert_eq!(neighbour(va, ip("10.77.0.2")).unwrap(), None);
        let hop = resolve(ip("10.77.0.2"), Duration::from_secs(2)).unwrap();
        assert_eq!(hop.ifindex, va);
        assert_eq!(hop.mac, vb_mac);
        assert_eq!(hop.src, Some(ip("10.77.0.1")));
        let n = neighbour(va, ip("10.77.0.2")).unwrap().unwrap();
        assert_eq!(n.mac, vb_mac);
        let hop6 = resolve(ip("fd77::2"), Duration::from_secs(2)).unwrap();
        assert_eq!((hop6.ifindex, hop6.mac), (va, vb_mac));
        // one dump per family holds the same entries
        let v4 = neighbours(libc::AF_INET as u8).unwrap();
        assert_eq!(v4.get(&(va, ip("10.77.0.2"))).map(|n| n.mac), Some(vb_mac));
        assert!(v4.keys().all(|(_, a)| a.is_ipv4()), "{v4:?}");
        let v6 = neighbours(libc::AF_INET6 as u8).unwrap();
        assert_eq!(v6.get(&(va, ip("fd77::2"))).map(|n| n.mac), Some(vb_mac));
        assert!(v6.keys().all(|(_, a)| a.is_ipv6()), "{v6:?}");
    });
}

#[test]
fn resolve_goes_through_a_route_s_gateway() {
    let (a, b) = pair("gw");
    let vb_mac = b.run(|| link_by_name("vb").unwrap().mac);
    a.ip("route add 10.88.0.0/24 via 10.77.0.2");
    a.run(|| {
        let r = route_get(ip("10.88.0.5")).unwrap();
        assert_eq!(r.gateway, Some(ip("10.77.0.2")));
        assert_eq!(r.prefsrc, Some(ip("10.77.0.1")));
        assert_eq!(r.oif, ifindex("va").unwrap());
        let hop = resolve(ip("10.88.0.5"), Duration::from_secs(2)).unwrap();
        assert_eq!((hop.ifindex, hop.mac), (r.oif, vb_mac));
        // a connected destination has no gateway
        assert_eq!(route_get(ip("10.77.0.2")).unwrap().gateway, None);
    });
}

#[test]
fn resolve_says_why_it_cannot() {
    let (a, _b) = pair("fail");
    a.ip("route add 10.89.0.0/24 via 10.77.0.99");
    a.run(|| {
        let t = Duration::from_millis(300);
        let e = resolve(ip("10.77.0.99"), t).unwrap_err().to_string();
        assert_eq!(e, "10.77.0.99: no neighbour entry on va after 300ms");
        let e = resolve(ip("10.89.0.1"), t).unwrap_err().to_string();
        assert_eq!(
            e,
            "10.89.0.1: no neighbour entry for its gateway 10.77.0.99 on va after 300ms"
        );
        let e = resolve(ip("192.0.2.1"), t).unwrap_err().to_string();
        assert!(e.starts_with("192.0.2.1: no route: "), "{e}");
        let e = resolve(ip("10.77.0.1"), t).unwrap_err().to_string();
        assert_eq!(e, "10.77.0.1: an address of this host");
    });
}

#[test]
fn addresses_on_lo_come_and_go() {
    let ns = Ns::new("addr");
    ns.run(|| {
        let lo = ifindex("lo").unwrap();
        for (vip, len) in [(ip("10.200.0.1"), 32), (ip("2001:db8::200"), 128)] {
            addr_add(lo, vip, len).unwrap();
            assert!(addrs(lo).unwrap().contains(&vip));
            let again = addr_add(lo, vip, len).unwrap_err();
            assert_eq!(again.errno(), Some(libc::EEXIST), "{again}");
            let out = Command::new("ip")
                .args(["addr", "show", "dev", "lo"])
                .output();
            let text = String::from_utf8(out.unwrap().stdout).unwrap();
            assert!(text.contains(&format!("{vip}/{len} scope global lo")) || vip.is_ipv6());
            addr_del(lo, vip, len).unwrap();
            assert!(!addrs(lo).unwrap().contains(&vip));
            let gone = addr_del(lo, vip, len).unwrap_err();
            assert_eq!(gone.errno(), Some(libc::EADDRNOTAVAIL), "{gone}");
        }
    });
}

#[test]
fn a_clsact_qdisc_is_seen_and_removed() {
    let (a, _b) = pair("tc");
    run("tc", &["-n", &a.0, "qdisc", "add", "dev", "va", "clsact"]);
    a.run(|| {
        let va = ifindex("va").unwrap();
        assert!(has_clsact(va).unwrap());
        assert!(!has_clsact(1).unwrap());
        assert!(tc_filters(va, Hook::Ingress).unwrap().is_empty());
        clsact_del(va).unwrap();
        assert!(!has_clsact(va).unwrap());
        assert!(clsact_del(va).is_err());
    });
}

#[test]
fn a_rule_message_is_default_only_without_selectors() {
    // fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action; flags
    let rule = |hdr: [u8; 8], attrs: &[(u16, u32)]| {
        let mut p = hdr.to_vec();
        p.extend(0u32.to_ne_bytes());
        for (ty, v) in attrs {
            push_attr(&mut p, *ty, &v.to_ne_bytes());
        }
        p
    };
    let main = rule(
        [2, 0, 0, 0, 254, 0, 0, 1],
        &[(15, 254), (14, u32::MAX), (6, 32766)],
    );
    assert!(is_default_rule(&main).unwrap());
    let local = rule([10, 0, 0, 0, 255, 0, 0, 1], &[(15, 255)]);
    assert!(is_default_rule(&local).unwrap());
    // a source selector, another table, a mark, another priority
    for p in [
        rule([2, 0, 16, 0, 100, 0, 0, 1], &[(15, 100), (6, 100)]),
        rule([2, 0, 0, 0, 254, 0, 0, 1], &[(15, 254), (6, 100)]),
        rule(
            [2, 0, 0, 0, 254, 0, 0, 1],
            &[(15, 254), (6, 32766), (10, 1)],
        ),
        rule([2, 0, 0, 0, 100, 0, 0, 1], &[(15, 100), (6, 32766)]),
        // suppress_prefixlength 0
        rule(
            [2, 0, 0, 0, 254, 0, 0, 1],
            &[(15, 254), (6, 32766), (14, 0)],
        ),
    ] {
        assert!(!is_default_rule(&p).unwrap(), "{p:?}");
    }
    assert!(is_default_rule(&[2, 0, 0]).is_err());
}

#[test]
fn routing_is_plain_until_a_policy_rule_or_a_route_beyond_the_destination() {
    let (a, _b) = pair("plain");
    let plain = || a.run(|| plain_routing().unwrap());
    assert!(plain());
    // a route in a table no rule reaches changes nothing
    a.ip("route add 10.6.0.0/16 via 10.77.0.2 table 100");
    assert!(plain());
    for (add, del) in [
        (
            "rule add from 10.1.0.0/16 lookup 100 pref 100",
            "rule del pref 100",
        ),
        (
            "-6 rule add iif va lookup 100 pref 200",
            "-6 rule del pref 200",
        ),
        (
            "route add 10.5.0.0/16 tos 0x10 via 10.77.0.2",
            "route del 10.5.0.0/16 tos 0x10",
        ),
        (
            "-6 route add 2001:db8:5::/48 from fd77::/64 via fd77::2",
            "-6 route del 2001:db8:5::/48 from fd77::/64",
        ),
        (
            "route add 10.4.0.0/16 nexthop via 10.77.0.2 nexthop via 10.77.0.3",
            "route del 10.4.0.0/16",
        ),
    ] {
        a.ip(add);
        assert!(!plain(), "{add}");
        a.ip(del);
        assert!(plain(), "{del}");
    }
}

#[test]
fn changes_are_announced_and_policy_ones_said_so() {
    let (a, _b) = pair("changes");
    let name = a.0.clone();
    a.run(|| {
        let mut ch = Changes::open().unwrap();
        assert_eq!(ch.wait(Duration::from_millis(100)).unwrap(), None);
        let ip = |args: &str| {
            let mut all = vec!["-n", name.as_str()];
            all.extend(args.split(' '));
            run("ip", &all);
        };
        let sysctl = |kv: &str| run("ip", &["netns", "exec", &name, "sysctl", "-qw", kv]);
        let steps: [(&dyn Fn(), bool, &str); 9] = [
            (
                &|| ip("neigh add 10.77.0.9 lladdr 02:00:00:00:00:09 dev va"),
                false,
                "neighbour",
            ),
            (
                &|| ip("route add 10.8.0.0/16 via 10.77.0.2"),
                false,
                "route",
            ),
            (
                &|| ip("neigh replace 10.77.0.9 lladdr 02:00:00:00:00:0a dev va"),
                false,
                "neighbour's new address",
            ),
            (&|| ip("addr add 10.78.0.1/24 dev va"), false, "address"),
            (&|| ip("link set va mtu 1400"), false, "link"),
            (
                &|| sysctl("net.ipv4.conf.va.forwarding=1"),
                false,
                "forwarding",
            ),
            (
                &|| ip("route add 10.9.0.0/16 tos 0x10 via 10.77.0.2"),
                true,
                "TOS route",
            ),
            (
                &|| ip("rule add from 10.1.0.0/16 lookup 100 pref 100"),
                true,
                "rule",
            ),
            (
                &|| ip("route add 10.4.0.0/16 nexthop via 10.77.0.2 nexthop via 10.77.0.3"),
                true,
                "multipath route",
            ),
        ];
        for (step, policy, what) in steps {
            step();
            let got = ch.wait(Duration::from_secs(2)).unwrap();
            assert_eq!(got, Some(Change { policy }), "{what}");
            // the rest of what one change announces
            while ch.wait(Duration::from_millis(50)).unwrap().is_some() {}
        }
        // a neighbour whose state changes but whose address stays: no change
        ip("neigh replace 10.77.0.9 lladdr 02:00:00:00:00:0a dev va nud stale");
        ip("neigh replace 10.77.0.9 lladdr 02:00:00:00:00:0a dev va nud reachable");
        assert_eq!(ch.wait(Duration::from_millis(300)).unwrap(), None);
        // gone: a change
        ip("neigh del 10.77.0.9 dev va");
        assert!(ch.wait(Duration::from_secs(2)).unwrap().is_some());
    });
}
