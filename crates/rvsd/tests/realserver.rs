//! `rvsd realserver` end to end: the built binary runs inside network namespaces of the test's
//! own (spawned from a thread that entered the namespace, so it keeps the test's mounts),
//! with its state file in a temporary directory and, for TUN, its pins on a bpffs the test
//! mounts. Checked with `ip`, `tc`, /proc/sys, the pinned maps, and tunnelled packets that
//! must reach a socket on the VIP.
//!
//! Needs root.
#![deny(unsafe_code)]

mod common;
#[path = "support/netns.rs"]
mod netns;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{rvsd_bin, TempDir};
use netns::Netns;
use rvs_bpf::Decap;

/// One real server's files: the state file and the pin directory (on a bpffs of its own).
struct Host {
    tmp: TempDir,
    bpffs: Bpffs,
}

impl Host {
    fn new(tag: &str) -> Host {
        Host {
            tmp: TempDir::new(tag),
            bpffs: Bpffs::mount(tag),
        }
    }

    fn state(&self) -> PathBuf {
        self.tmp.0.join("realserver.json")
    }

    fn pins(&self) -> PathBuf {
        self.bpffs.0.join("rvs")
    }

    /// `rvsd realserver ARGS --state … --pin-dir …` in `ns`.
    fn rs(&self, ns: &Netns, args: &str) -> Output {
        let mut words: Vec<String> = vec!["realserver".into()];
        words.extend(args.split_whitespace().map(String::from));
        words.extend(["--state".into(), self.state().display().to_string()]);
        words.extend(["--pin-dir".into(), self.pins().display().to_string()]);
        ns.run(|| Command::new(rvsd_bin()).args(&words).output().unwrap())
    }

    /// Runs and requires exit 0; returns stderr.
    fn ok(&self, ns: &Netns, args: &str) -> String {
        let out = self.rs(ns, args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "realserver {args}: {err}");
        err
    }
}

/// A bpffs mounted on a fresh directory, unmounted on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn mount(tag: &str) -> Bpffs {
        let dir = std::env::temp_dir().join(format!("rvsd-bpffs-{}-{tag}", std::process::id()));
        let _ = Command::new("umount").arg(&dir).output();
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount -t bpf (needs root)");
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn sysctl(ns: &Netns, key: &str) -> String {
    let path = format!("/proc/sys/net/ipv4/conf/{key}");
    ns.run(|| std::fs::read_to_string(&path).unwrap().trim().to_string())
}

fn set_sysctl(ns: &Netns, key: &str, v: &str) {
    let path = format!("/proc/sys/net/ipv4/conf/{key}");
    ns.run(|| std::fs::write(&path, v).unwrap());
}

/// The four ARP sysctls: lo/arp_ignore, lo/arp_announce, all/arp_ignore, all/arp_announce.
fn arp(ns: &Netns) -> [String; 4] {
    [
        "lo/arp_ignore",
        "lo/arp_announce",
        "all/arp_ignore",
        "all/arp_announce",
    ]
    .map(|k| sysctl(ns, k))
}

fn cmd(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn lo_addrs(ns: &Netns) -> String {
    cmd(&["ip", "-n", &ns.name, "addr", "show", "dev", "lo"])
}

#[test]
fn dr_start_and_stop_restore_exactly_what_was_there() {
    let ns = Netns::new("rs-dr");
    let h = Host::new("rs-dr");
    // a setting of the administrator's, and a VIP already on lo
    set_sysctl(&ns, "all/arp_announce", "1");
    ns.ip(&["addr", "add", "10.200.0.2/32", "dev", "lo"]);

    let err = h.ok(
        &ns,
        "--vip 10.200.0.1 --vip 10.200.0.2 --vip 2001:db8::200 --mode dr",
    );
    assert!(err.contains("added 10.200.0.1/32 to lo"), "{err}");
    let lo = lo_addrs(&ns);
    for a in [
        "10.200.0.1/32 scope global lo",
        "10.200.0.2/32",
        "2001:db8::200/128",
    ] {
        assert!(lo.contains(a), "{a} in {lo}");
    }
    assert_eq!(arp(&ns), ["1", "2", "1", "2"]);
    assert!(h.state().exists());
    // again: nothing more
    let err = h.ok(&ns, "--vip 10.200.0.1 --mode dr");
    assert!(!err.contains("added"), "{err}");

    // a subset: the other IPv4 VIP keeps the sysctls
    h.ok(&ns, "--stop --vip 10.200.0.1");
    let lo = lo_addrs(&ns);
    assert!(!lo.contains("10.200.0.1/32") && lo.contains("2001:db8::200/128"));
    assert_eq!(arp(&ns), ["1", "2", "1", "2"]);

    let err = h.ok(&ns, "--stop");
    assert!(err.contains("removed 2001:db8::200/128 from lo"), "{err}");
    let lo = lo_addrs(&ns);
    assert!(!lo.contains("2001:db8::200"), "{lo}");
    assert!(lo.contains("10.200.0.2/32"), "not ours, stays: {lo}");
    assert_eq!(arp(&ns), ["0", "0", "0", "1"]);
    assert!(!h.state().exists());
    let err = h.ok(&ns, "--stop");
    assert!(err.contains("nothing to undo"), "{err}");
}

#[test]
fn an_ipv6_vip_alone_leaves_the_arp_sysctls() {
    let ns = Netns::new("rs-v6");
    let h = Host::new("rs-v6");
    h.ok(&ns, "--vip 2001:db8::7 --mode dr");
    assert!(lo_addrs(&ns).contains("2001:db8::7/128"));
    assert_eq!(arp(&ns), ["0", "0", "0", "0"]);
    h.ok(&ns, "--stop --vip 2001:db8::7");
    assert!(!lo_addrs(&ns).contains("2001:db8::7"));
}

#[test]
fn bad_input_exits_2_and_a_failure_exits_1_having_undone_its_steps() {
    let ns = Netns::new("rs-bad");
    let h = Host::new("rs-bad");
    for (args, says) in [
        (
            "--vip 10.0.0 --mode dr",
            "--vip: not an IPv4 or IPv6 address: 10.0.0",
        ),
        (
            "--vip 10.0.0.1 --mode nat",
            "--mode: expected dr or tun, got nat",
        ),
        ("--vip 10.0.0.1", "--mode is required"),
        (
            "--vip 10.0.0.1 --mode tun --iface nosuch0",
            "--iface: no interface named nosuch0",
        ),
    ] {
        let out = h.rs(&ns, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args}: {err}");
        assert!(err.contains(says), "{args}: {err}");
    }
    assert!(!lo_addrs(&ns).contains("10.0.0.1"));
    assert!(!h.state().exists());

    // TUN with a pin directory that is no bpffs: the VIP and sysctls it set are undone
    ns.ip(&["link", "add", "ve", "type", "veth", "peer", "name", "vf"]);
    ns.ip(&["link", "set", "ve", "up"]);
    let state = h.state();
    let words = [
        "realserver",
        "--vip",
        "10.0.0.1",
        "--mode",
        "tun",
        "--state",
        state.to_str().unwrap(),
        "--pin-dir",
        h.tmp.0.to_str().unwrap(),
    ];
    let out = ns.run(|| Command::new(rvsd_bin()).args(words).output().unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is not on a BPF file system"), "{err}");
    assert!(err.contains("added 10.0.0.1/32 to lo"), "{err}");
    assert!(!lo_addrs(&ns).contains("10.0.0.1"), "undone");
    assert_eq!(arp(&ns), ["0", "0", "0", "0"]);
    assert!(!h.state().exists());
}

/// Namespaces A (client and director side) and B (the real server) joined by veth va
/// (10.77.0.1/24) — vb (10.77.0.2/24); in B also veth vc (10.99.0.1/24) — vd, the way to
/// the clients' network 10.98.0.0/24, and strict reverse-path filtering on `all`.
fn topology(tag: &str) -> (Netns, Netns) {
    let (a, b) = (
        Netns::new(&format!("{tag}-a")),
        Netns::new(&format!("{tag}-b")),
    );
    a.ip(&[
        "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name,
    ]);
    a.ip(&["addr", "add", "10.77.0.1/24", "dev", "va"]);
    b.ip(&["addr", "add", "10.77.0.2/24", "dev", "vb"]);
    b.ip(&["link", "add", "vc", "type", "veth", "peer", "name", "vd"]);
    b.ip(&["addr", "add", "10.99.0.1/24", "dev", "vc"]);
    for (ns, dev) in [(&a, "va"), (&b, "vb"), (&b, "vc"), (&b, "vd")] {
        ns.ip(&["link", "set", dev, "up"]);
    }
    b.ip(&["route", "add", "10.98.0.0/24", "via", "10.99.0.2"]);
    set_sysctl(&b, "all/rp_filter", "1");
    (a, b)
}

/// The Internet checksum of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 UDP packet (no UDP checksum) from `src` to `dst`:`port` carrying `data`.
fn udp4(src: [u8; 4], dst: [u8; 4], port: u16, data: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + data.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let sum = checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&port.to_be_bytes());
    p.extend_from_slice(&(8 + data.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(data);
    p
}

/// Sends `inner` from A to 10.77.0.2 in an IPIP packet (a raw socket of protocol 4: the
/// kernel writes the outer header, no ipip module needed).
fn send_ipip(a: &Netns, inner: &[u8]) {
    use socket2::{Domain, Protocol, Socket, Type};
    a.run(|| {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(4))).unwrap();
        let to: SocketAddr = "10.77.0.2:0".parse().unwrap();
        s.send_to(inner, &to.into()).unwrap();
    });
}

/// Sends `inner` from A to 10.77.0.2:`port` in a GUE packet (version 0, no options).
fn send_gue(a: &Netns, port: u16, inner: &[u8]) {
    let mut p = vec![0, 4, 0, 0];
    p.extend_from_slice(inner);
    a.run(|| {
        let s = UdpSocket::bind("10.77.0.1:0").unwrap();
        s.send_to(&p, ("10.77.0.2", port)).unwrap();
    });
}

/// What the socket receives within `wait` (None: nothing).
fn received(s: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 256];
    s.recv_from(&mut buf)
        .ok()
        .map(|(n, from)| (buf[..n].to_vec(), from))
}

fn filters(ns: &Netns, dev: &str) -> String {
    cmd(&[
        "tc", "-n", &ns.name, "filter", "show", "dev", dev, "ingress",
    ])
}

/// How many filters of `tc filter show` run rvs_decap.
fn ours(filters: &str) -> usize {
    filters.lines().filter(|l| l.contains("rvs_decap")).count()
}

fn qdiscs(ns: &Netns, dev: &str) -> String {
    cmd(&["tc", "-n", &ns.name, "qdisc", "show", "dev", dev])
}

fn map_vips(pins: &Path) -> Vec<IpAddr> {
    let mut v = Decap::open_pinned(pins).unwrap().unwrap().vips().unwrap();
    v.sort();
    v
}

#[test]
fn tun_attaches_the_program_and_tunnelled_packets_reach_the_vip() {
    let (a, b) = topology("rs-tun");
    let h = Host::new("rs-tun");
    let err = h.ok(&b, "--vip 10.200.0.1 --mode tun --iface vb --gue-port 6080");
    assert!(
        err.contains("attached the tc program to ingress of vb"),
        "{err}"
    );
    assert!(qdiscs(&b, "vb").contains("clsact"));
    let f = filters(&b, "vb");
    assert_eq!(ours(&f), 1, "{f}");
    for pin in [
        "rvs_decap",
        "rvs_decap_vips",
        "rvs_decap_ports",
        "rvs_decap_counters",
    ] {
        assert!(h.pins().join(pin).exists(), "{pin}");
    }
    assert_eq!(map_vips(&h.pins()), [ip("10.200.0.1")]);
    let d = Decap::open_pinned(&h.pins()).unwrap().unwrap();
    assert_eq!(d.gue_ports().unwrap(), [6080]);
    drop(d);
    // vb's strict reverse-path filter (from `all`) became loose there
    assert_eq!(sysctl(&b, "vb/rp_filter"), "2");
    assert!(!filters(&b, "vc").contains("rvs_decap"), "only --iface");

    // a second run adds its VIP to the same program
    h.ok(&b, "--vip 10.200.0.3 --mode tun --iface vb");
    assert_eq!(map_vips(&h.pins()), [ip("10.200.0.1"), ip("10.200.0.3")]);
    assert_eq!(ours(&filters(&b, "vb")), 1);

    // tunnelled packets reach a socket on the VIP, from the client's address
    let sock = b.run(|| UdpSocket::bind("10.200.0.1:5353").unwrap());
    send_ipip(&a, &udp4([10, 77, 0, 1], [10, 200, 0, 1], 5353, b"ipip"));
    let (data, from) = received(&sock, Duration::from_secs(2)).expect("IPIP delivered");
    assert_eq!(
        (data.as_slice(), from.ip()),
        (&b"ipip"[..], ip("10.77.0.1"))
    );
    send_gue(
        &a,
        6080,
        &udp4([10, 77, 0, 1], [10, 200, 0, 1], 5353, b"gue"),
    );
    let (data, _) = received(&sock, Duration::from_secs(2)).expect("GUE delivered");
    assert_eq!(data, b"gue");
    // a client whose network is reached through another interface (vc)
    let from_client = udp4([10, 98, 0, 5], [10, 200, 0, 1], 5353, b"client");
    send_ipip(&a, &from_client);
    let (data, from) = received(&sock, Duration::from_secs(2)).expect("loose rp_filter");
    assert_eq!(
        (data.as_slice(), from.ip()),
        (&b"client"[..], ip("10.98.0.5"))
    );
    // which strict reverse-path filtering drops (why it was loosened), while it lets a
    // client through whose route leaves by the interface the tunnel came in on
    set_sysctl(&b, "vb/rp_filter", "0");
    send_ipip(&a, &from_client);
    assert_eq!(received(&sock, Duration::from_millis(300)), None);
    send_ipip(
        &a,
        &udp4([10, 77, 0, 1], [10, 200, 0, 1], 5353, b"same way"),
    );
    let (data, _) = received(&sock, Duration::from_secs(2)).expect("strict, symmetric");
    assert_eq!(data, b"same way");
    set_sysctl(&b, "vb/rp_filter", "2");
    drop(sock);

    // one VIP stopped: the program stays for the other
    h.ok(&b, "--stop --vip 10.200.0.1");
    assert_eq!(map_vips(&h.pins()), [ip("10.200.0.3")]);
    assert!(filters(&b, "vb").contains("rvs_decap"));
    // the last: detached, clsact removed, rp_filter restored, unpinned
    let err = h.ok(&b, "--stop");
    assert!(err.contains("unpinned"), "{err}");
    assert!(!filters(&b, "vb").contains("rvs_decap"));
    assert!(!qdiscs(&b, "vb").contains("clsact"));
    assert_eq!(sysctl(&b, "vb/rp_filter"), "0");
    assert!(!h.pins().exists());
    assert!(!lo_addrs(&b).contains("10.200.0."));
    assert!(!h.state().exists());
    h.ok(&b, "--stop");
}

#[test]
fn tun_without_iface_takes_every_interface_that_is_up() {
    let (_a, b) = topology("rs-all");
    b.ip(&["link", "add", "vx", "type", "veth", "peer", "name", "vy"]);
    // a clsact qdisc of someone else's on vc stays when the program goes
    cmd(&["tc", "-n", &b.name, "qdisc", "add", "dev", "vc", "clsact"]);
    let h = Host::new("rs-all");
    h.ok(&b, "--vip 10.200.0.1 --mode tun");
    for dev in ["vb", "vc", "vd"] {
        assert!(filters(&b, dev).contains("rvs_decap"), "{dev}");
    }
    assert!(!qdiscs(&b, "vx").contains("clsact"), "vx is down");
    h.ok(&b, "--vip 10.200.0.1 --mode tun");
    assert_eq!(ours(&filters(&b, "vb")), 1);
    // the pins lost (their bpffs unmounted): the next run loads the program again with
    // every VIP of the state file and puts it in place of the old one's filters
    Decap::unpin(&h.pins()).unwrap();
    let err = h.ok(&b, "--vip 10.200.0.4 --mode tun");
    assert!(err.contains("detached an earlier instance"), "{err}");
    assert_eq!(map_vips(&h.pins()), [ip("10.200.0.1"), ip("10.200.0.4")]);
    let id = Decap::open_pinned(&h.pins())
        .unwrap()
        .unwrap()
        .program_id()
        .unwrap();
    for dev in ["vb", "vc", "vd"] {
        let f = filters(&b, dev);
        assert_eq!(ours(&f), 1, "{f}");
        assert!(f.contains(&format!(" id {id} ")), "{f}");
    }
    let out = h.rs(&b, "--vip 10.200.0.1 --mode dr");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is set up for --mode tun"));
    h.ok(&b, "--stop");
    for dev in ["vb", "vc", "vd"] {
        assert!(!filters(&b, dev).contains("rvs_decap"), "{dev}");
    }
    assert!(qdiscs(&b, "vc").contains("clsact"), "not ours");
    assert!(!qdiscs(&b, "vd").contains("clsact"));
}

/// A namespace gone without `--stop` leaves its state file and its pins behind; the default
/// paths are named after the namespace's inode, which a later namespace may get. That one
/// starts afresh: the old namespace's VIP is neither refused in another mode nor kept in the
/// program's maps.
#[test]
fn a_namespace_gone_without_stop_leaves_nothing_to_the_next() {
    let h = Host::new("rs-gone");
    {
        let (_a, b) = topology("rs-gone1");
        h.ok(&b, "--vip 10.200.0.1 --mode tun --iface vb");
        assert_eq!(map_vips(&h.pins()), [ip("10.200.0.1")]);
    } // both namespaces deleted, nothing undone
    assert!(h.state().exists() && h.pins().join(Decap::PIN).exists());
    let (_a, b) = topology("rs-gone2");
    let err = h.ok(&b, "--vip 10.200.0.1 --mode dr");
    assert!(err.contains("network namespace that is gone"), "{err}");
    assert!(
        err.contains("removed that namespace's tc program pins"),
        "{err}"
    );
    assert!(!h.pins().join(Decap::PIN).exists());
    assert!(lo_addrs(&b).contains("10.200.0.1/32"), "{}", lo_addrs(&b));
    h.ok(&b, "--stop");
    assert!(!h.state().exists());
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}
