//! Compiles the BPF programs in `bpf/` with clang (BPF target) into `$OUT_DIR`; the crate
//! embeds the object. clang and the libbpf headers (`bpf/bpf_helpers.h`) must be installed
//! (Debian: `clang`, `libbpf-dev`; `scripts/test.sh` installs them).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    for f in ["bpf/xdp_lb.c", "bpf/rvs_abi.h"] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=CLANG");
    let obj = out.join("xdp_lb.o");
    let arch_inc = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let status = Command::new(&clang)
        // v3: atomic fetch-and-add with its result (kernel 5.12+), used by the schedule position
        .args([
            "-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-mcpu=v3", "-c",
        ])
        .arg(dir.join("bpf/xdp_lb.c"))
        .arg("-I")
        .arg(dir.join("bpf"))
        .arg("-idirafter")
        .arg(&arch_inc)
        .arg("-o")
        .arg(&obj)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile bpf/xdp_lb.c ({s})"),
        Err(e) => panic!(
            "cannot run {clang} ({e}): the XDP programs are built with clang and the libbpf \
             headers (Debian: apt-get install -y clang libbpf-dev)"
        ),
    }
}
