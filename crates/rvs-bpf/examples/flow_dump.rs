//! How long reading every flow of the XDP program takes, in batches (`BPF_MAP_LOOKUP_BATCH`,
//! what rvsd's minute walk of the flows uses) and key by key (aya's iterator, two system
//! calls per flow). Run as root: `cargo run --release -p rvs-bpf --example flow_dump --
//! [FLOWS ...]` (default 10000 100000 1000000; the map holds at most 1,048,576). Prints a
//! markdown table.

use std::time::Instant;

use rvs_bpf::{abi, Xdp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sizes: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() {
        vec![10_000, 100_000, 1_000_000]
    } else {
        sizes
    };
    println!("| flows | batches ms | key by key ms | ratio |");
    println!("|---:|---:|---:|---:|");
    for n in sizes {
        // a fresh program per size: its map starts empty
        let mut xdp = Xdp::load()?;
        let table = xdp.flow_table()?;
        for i in 0..n {
            let key = abi::FlowKey {
                caddr: [
                    u32::from_ne_bytes([10, 1, 0, 0]) ^ (i >> 16).to_be(),
                    0,
                    0,
                    0,
                ],
                vaddr: [u32::from_ne_bytes([10, 0, 0, 100]), 0, 0, 0],
                cport: (i as u16).to_be(),
                vport: 80u16.to_be(),
                proto: 6,
                family: abi::AF_INET,
                pad: 0,
            };
            let flow = abi::Flow {
                dest: i % 8,
                packets: 1,
                ..Default::default()
            };
            table.insert(&key, &flow)?;
        }
        let t = Instant::now();
        let batched = table.dump()?;
        let batch_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let by_key = table.dump_by_key()?;
        let key_ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(batched.len(), n as usize, "the batches read every flow");
        assert_eq!(by_key.len(), n as usize, "the walk read every flow");
        println!(
            "| {n} | {batch_ms:.1} | {key_ms:.1} | {:.1}× |",
            key_ms / batch_ms.max(1e-3)
        );
    }
    Ok(())
}
