//! The listings of the real ipvsadm 1.31 (recorded in the IPVS oracle VM by the job scripts in
//! `tests/golden/listing/`), rebuilt from an `Ipvs` driven with the same commands, byte for
//! byte. `--nosort` listings are compared block by block (the kernel's service order is its
//! hash-bucket order, seeded per boot); destination order within a block is exact.

mod support;

use rvs_config::NoNames;
use support::transcript;

#[test]
fn static_state_every_listing_mode() {
    let (listed, applied) = transcript::replay(include_str!("golden/listing/static.out"), &NoNames);
    assert!(listed >= 40, "{listed}");
    assert!(applied >= 50, "{applied}");
}

#[test]
fn counters_after_real_traffic_layout() {
    let text = include_str!("golden/listing/traffic.out");
    // the recording really had traffic: its counters are not all zero
    assert!(text.contains("TCP  192.168.50.100:80 ") && text.lines().any(|l| l.ends_with(" 3228")));
    let (listed, applied) = transcript::replay_with(text, &NoNames, &transcript::mask_counters);
    assert_eq!((listed, applied), (10, 6));
}
