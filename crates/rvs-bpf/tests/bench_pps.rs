//! The packets-per-second benchmark's programs (`bpf/bench_pps.c`, driven by
//! `examples/pktgen.rs` from `bench/xdp-pps.sh`) on packets in memory (`BPF_PROG_TEST_RUN`).
//! Needs root (loading BPF programs).

use aya::maps::{DevMapHash, HashMap, MapData, PerCpuArray};
use aya::programs::Xdp as XdpProgram;
use aya::{Ebpf, EbpfLoader};
use rvs_bpf::{verdict, xdp_test_run};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench_pps.o"));

const CLIENT: [u8; 6] = [2, 0, 10, 0, 0, 100];
const DIRECTOR: [u8; 6] = [2, 0, 10, 0, 0, 12];
const RS1: [u8; 6] = [2, 0, 10, 0, 0, 9];
const LO: u32 = 1;

fn load(globals: &[(&'static str, &[u8])], name: &str) -> Ebpf {
    let mut loader = EbpfLoader::new();
    for (g, v) in globals {
        loader.set_global(g, *v, true);
    }
    let mut ebpf = loader
        .load(OBJECT)
        .expect("loading bench_pps.o (needs root)");
    prog(&mut ebpf, name).load().expect("loading the program");
    ebpf
}

fn prog<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut XdpProgram {
    ebpf.program_mut(name)
        .expect("program")
        .try_into()
        .expect("XDP")
}

/// Ethernet (client → director) + IPv4 10.0.0.100 → 10.0.0.88 + UDP to 9000, 60 bytes.
fn frame() -> Vec<u8> {
    let mut f = DIRECTOR.to_vec();
    f.extend_from_slice(&CLIENT);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![
        0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 100, 10, 0, 0, 88,
    ];
    let c = rvs_bpf::ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0, 0, 0x23, 0x28, 0, 26, 0, 0]);
    f.resize(60, 0);
    f
}

#[test]
fn ipv4_checksum_is_the_internet_checksum() {
    let mut h = vec![
        0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7,
    ];
    assert_eq!(rvs_bpf::ipv4_checksum(&h), 0xb861);
    h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
    assert_eq!(rvs_bpf::ipv4_checksum(&h), 0);
}

#[test]
fn generator_writes_every_header_byte_and_the_source_port() {
    let f = frame();
    let base = 12345u16;
    let mut ebpf = load(
        &[
            ("gen_hdr", &f[..42]),
            ("gen_port_base", &base.to_ne_bytes()[..]),
            ("gen_port_count", &1u32.to_ne_bytes()[..]),
        ],
        "pps_gen",
    );
    // a recycled live frame: headers as a director left them (MACs, TTL, addresses changed)
    let mut used = f.clone();
    for b in &mut used[..42] {
        *b ^= 0x5a;
    }
    let run = xdp_test_run(prog(&mut ebpf, "pps_gen"), &used, None).expect("test run");
    assert_eq!(run.verdict, verdict::TX);
    let mut want = f.clone();
    want[34..36].copy_from_slice(&base.to_be_bytes());
    assert_eq!(&run.packet[..42], &want[..42]);
    assert_eq!(
        &run.packet[42..60],
        &used[42..60],
        "the payload is left alone"
    );
}

#[test]
fn bare_rewrites_the_addresses_and_transmits() {
    let mut ebpf = load(
        &[("bare_src", &DIRECTOR[..]), ("bare_dst", &RS1[..])],
        "pps_bare",
    );
    let f = frame();
    let run = xdp_test_run(prog(&mut ebpf, "pps_bare"), &f, None).expect("test run");
    assert_eq!(run.verdict, verdict::TX);
    assert_eq!(&run.packet[..6], &RS1);
    assert_eq!(&run.packet[6..12], &DIRECTOR);
    assert_eq!(&run.packet[12..60], &f[12..60]);
}

#[test]
fn sink_counts_and_drops_ipv4_and_passes_the_rest() {
    let mut ebpf = load(&[], "pps_sink");
    let mut arp = frame();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let p = prog(&mut ebpf, "pps_sink");
    assert_eq!(
        xdp_test_run(p, &frame(), None).unwrap().verdict,
        verdict::DROP
    );
    assert_eq!(
        xdp_test_run(p, &frame(), None).unwrap().verdict,
        verdict::DROP
    );
    assert_eq!(xdp_test_run(p, &arp, None).unwrap().verdict, verdict::PASS);
    let m: PerCpuArray<&MapData, u64> =
        PerCpuArray::try_from(ebpf.map("pps_count").unwrap()).unwrap();
    assert_eq!(m.get(&0, 0).unwrap().iter().sum::<u64>(), 2);
}

#[test]
fn switch_floods_unknown_addresses_and_keeps_a_port_s_own_frames() {
    let mut ebpf = load(&[], "pps_switch");
    {
        let mut ports: DevMapHash<&mut MapData> =
            DevMapHash::try_from(ebpf.map_mut("pps_ports").unwrap()).unwrap();
        ports.insert(LO, LO, None, 0).unwrap();
    }
    {
        let mut fdb: HashMap<&mut MapData, [u8; 8], u32> =
            HashMap::try_from(ebpf.map_mut("pps_fdb").unwrap()).unwrap();
        let mut key = [0u8; 8];
        key[..6].copy_from_slice(&DIRECTOR);
        fdb.insert(key, LO, 0).unwrap();
    }
    let p = prog(&mut ebpf, "pps_switch");
    // a known station behind the port the frame came in on (a test run's ingress is the
    // loopback, the only interface a test can count on): dropped; a known station behind
    // another port is the benchmark's own business (bench/xdp-pps.sh counts it)
    assert_eq!(
        xdp_test_run(p, &frame(), Some(LO)).unwrap().verdict,
        verdict::DROP
    );
    // unknown and broadcast destinations: flooded
    let mut unknown = frame();
    unknown[..6].copy_from_slice(&RS1);
    assert_eq!(
        xdp_test_run(p, &unknown, None).unwrap().verdict,
        verdict::REDIRECT
    );
    let mut bcast = frame();
    bcast[..6].copy_from_slice(&[0xff; 6]);
    assert_eq!(
        xdp_test_run(p, &bcast, None).unwrap().verdict,
        verdict::REDIRECT
    );
}
