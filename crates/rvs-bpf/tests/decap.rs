//! The real server's decapsulation program through `BPF_PROG_TEST_RUN`: the tunnel frames
//! Linux IPVS sent (recorded with the IPVS oracle, `golden/tunnel.golden`) come out as the
//! inner packets the client sent the director; what is not a tunnel packet to a configured
//! virtual address goes on untouched.
//!
//! Needs root (loading BPF programs).

mod common;

use std::net::Ipv6Addr;

use rvs_bpf::abi::DecapCounter;
use rvs_bpf::{tc_verdict, Decap};

/// The length of the kernel frame's outer IPv4 header and tunnel header.
fn outer_len(f: &[u8]) -> usize {
    let ip = usize::from(f[14] & 0xf) * 4;
    ip + match f[14 + 9] {
        17 => 8 + 4 + usize::from(f[14 + ip + 8] & 0x1f) * 4,
        47 if f[14 + ip] & 0x80 != 0 => 8,
        47 => 4,
        _ => 0,
    }
}

fn decap() -> Decap {
    let mut d = Decap::load().expect("loading the tc program (needs root)");
    d.add_vip("192.168.50.100".parse().unwrap()).unwrap();
    d.add_vip("2001:db8::100".parse().unwrap()).unwrap();
    d.add_gue_port(6080).unwrap();
    d
}

#[test]
fn the_kernel_s_tunnel_frames_open_to_the_client_s_packets() {
    let mut d = decap();
    let frames = common::tunnel_frames();
    assert_eq!(frames.len(), 7);
    for f in &frames {
        let run = d.test_run(f).unwrap();
        assert_eq!(run.verdict, tc_verdict::OK);
        let mut want = f[..14].to_vec();
        want.extend_from_slice(&f[14 + outer_len(f)..]);
        assert_eq!(run.packet, want, "protocol {} frame", f[14 + 9]);
    }
    assert_eq!(
        d.counters().unwrap()[DecapCounter::Decapsulated as usize],
        7
    );
}

/// Ethernet + IPv6 (next header `next`) from 2001:db8::1 to 2001:db8::b + `payload`.
fn v6(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![
        2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 1, 0x86, 0xdd, 0x60, 0, 0, 0,
    ];
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[next, 63]);
    f.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    f.extend_from_slice(&"2001:db8::b".parse::<Ipv6Addr>().unwrap().octets());
    f.extend_from_slice(payload);
    f
}

/// An IPv6 UDP packet from a client to `dst`, as the IPv6 inner packet.
fn inner6(dst: &str) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0, 0, 12, 17, 63];
    p.extend_from_slice(&"2001:db8:c::1".parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
    p.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
    p
}

#[test]
fn ipv6_in_ipv6_opens_and_the_rest_goes_on_untouched() {
    let mut d = decap();
    let inner = inner6("2001:db8::100");
    let run = d.test_run(&v6(41, &inner)).unwrap();
    assert_eq!(run.verdict, tc_verdict::OK);
    let mut want = v6(41, &[])[..14].to_vec();
    want.extend_from_slice(&inner);
    assert_eq!(run.packet, want);

    let gue_other_port = {
        let mut p = vec![0xd0, 0, 0x17, 0xc1, 0, 0, 0, 0, 0, 41, 0, 0];
        p[4..6].copy_from_slice(&((12 + inner.len()) as u16).to_be_bytes());
        p.extend_from_slice(&inner);
        p
    };
    let mut gre_cut = vec![0x80, 0, 0x86, 0xdd];
    gre_cut.truncate(3);
    let untouched: Vec<(&str, Vec<u8>)> = vec![
        (
            "inner packet not to a VIP",
            v6(41, &inner6("2001:db8::200")),
        ),
        ("GUE on a port not configured", v6(17, &gue_other_port)),
        ("GRE header cut", v6(47, &gre_cut)),
        (
            "IPv4 inside IPv6 (mixed families)",
            v6(
                4,
                &[
                    0x45, 0, 0, 20, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 192, 168, 50, 100,
                ],
            ),
        ),
        ("plain UDP", v6(17, &[0x9c, 0x40, 0, 53, 0, 8, 0, 0])),
        ("inner header cut", v6(41, &inner[..20])),
    ];
    for (what, f) in untouched {
        let run = d.test_run(&f).unwrap();
        assert_eq!((run.verdict, &run.packet), (tc_verdict::OK, &f), "{what}");
    }
    let c = d.counters().unwrap();
    assert_eq!(c[DecapCounter::Decapsulated as usize], 1);
    // the wrong inner destination, and the cut inner header whose destination cannot be read
    assert_eq!(c[DecapCounter::NotVip as usize], 2);
}

/// A bpffs of the test's own, mounted on a fresh directory, unmounted on drop.
struct Bpffs(std::path::PathBuf);

impl Bpffs {
    fn mount(tag: &str) -> Bpffs {
        let dir = std::env::temp_dir().join(format!("rvs-bpffs-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "bpf", "bpf"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount -t bpf (needs root)");
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_pinned_program_and_its_maps_are_shared_by_later_openers() {
    let fs = Bpffs::mount("pin");
    let dir = fs.0.join("rvs");
    assert!(Decap::open_pinned(&dir).unwrap().is_none());
    let (mut first, fresh) = Decap::load_pinned(&dir).unwrap();
    assert!(fresh);
    let vip: std::net::IpAddr = "192.168.50.100".parse().unwrap();
    first.add_vip(vip).unwrap();
    first.add_gue_port(6080).unwrap();
    drop(first);

    // a later opener sees the same maps, and the same program runs on them
    let (mut again, fresh) = Decap::load_pinned(&dir).unwrap();
    assert!(!fresh);
    assert_eq!(again.vips().unwrap(), [vip]);
    assert_eq!(again.gue_ports().unwrap(), [6080]);
    let frames = common::tunnel_frames();
    let run = again.test_run(&frames[0]).unwrap();
    assert_eq!(run.verdict, tc_verdict::OK);
    assert_eq!(run.packet.len(), frames[0].len() - outer_len(&frames[0]));
    let v6: std::net::IpAddr = "2001:db8::100".parse().unwrap();
    again.add_vip(v6).unwrap();
    assert!(again.remove_vip(vip).unwrap());
    assert!(!again.remove_vip(vip).unwrap());
    assert!(again.remove_gue_port(6080).unwrap());
    assert!(!again.remove_gue_port(6080).unwrap());
    drop(again);

    let third = Decap::open_pinned(&dir).unwrap().unwrap();
    assert_eq!(third.vips().unwrap(), [v6]);
    assert!(third.gue_ports().unwrap().is_empty());
    // the first opener's counters went to the same map
    drop(third);
    Decap::unpin(&dir).unwrap();
    assert!(!dir.exists());
    assert!(Decap::open_pinned(&dir).unwrap().is_none());
    Decap::unpin(&dir).unwrap();
}
