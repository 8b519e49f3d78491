//! Compiles the BPF programs in `bpf/` with clang (BPF target) into `$OUT_DIR`; the crate
//! embeds the objects. clang and the libbpf headers (`bpf/bpf_helpers.h`) must be installed
//! (Debian: `clang`, `libbpf-dev`; `scripts/test.sh` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The programs: the director's XDP program, the real server's tc decapsulation, and the
/// packets-per-second benchmark's own programs (generator, bare forwarder, sink, switch).
const PROGRAMS: [&str; 3] = ["xdp_lb", "tc_decap", "bench_pps"];

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    println!("cargo:rerun-if-changed=bpf/rvs_abi.h");
    println!("cargo:rerun-if-env-changed=CLANG");
    for p in PROGRAMS {
        println!("cargo:rerun-if-changed=bpf/{p}.c");
        compile(&clang, &dir, &out, p);
    }
}

fn compile(clang: &str, dir: &Path, out: &Path, name: &str) {
    let arch_inc = format!("/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let status = Command::new(clang)
        // v3: atomic fetch-and-add with its result (kernel 5.12+), used by the schedule position
        .args([
            "-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-mcpu=v3", "-c",
        ])
        .arg(dir.join(format!("bpf/{name}.c")))
        .arg("-I")
        .arg(dir.join("bpf"))
        .arg("-idirafter")
        .arg(&arch_inc)
        .arg("-o")
        .arg(out.join(format!("{name}.o")))
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{clang} failed to compile bpf/{name}.c ({s})"),
        Err(e) => panic!(
            "cannot run {clang} ({e}): the BPF programs are built with clang and the libbpf \
             headers (Debian: apt-get install -y clang libbpf-dev)"
        ),
    }
}
