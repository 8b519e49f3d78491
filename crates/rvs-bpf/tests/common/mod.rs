//! What the rvs-bpf tests share.

/// The frames Linux IPVS sent in `golden/tunnel.golden` (recorded by `golden/tunnel.sh`).
pub fn tunnel_frames() -> Vec<Vec<u8>> {
    include_str!("../golden/tunnel.golden")
        .lines()
        .filter_map(|l| l.strip_prefix("frame "))
        .map(|h| {
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect()
}
