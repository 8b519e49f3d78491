//! rvsadm on its own (the tests with a daemon are in `crates/rvsd/tests/control.rs`).

use std::os::unix::process::CommandExt;
use std::process::Command;

fn run(args: &[&str], socket: &str) -> (String, String, i32) {
    let out = Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .arg0("rvsadm")
        .args(args)
        .env("RVS_SOCKET", socket)
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        text(out.stdout),
        text(out.stderr),
        out.status.code().unwrap(),
    )
}

#[test]
fn no_socket_is_ipvs_unavailable_for_every_invocation() {
    let socket = "/nonexistent-rvs-dir/rvsd.sock";
    let want = "Can't initialize ipvs: Protocol not available\n\
                Are you sure that IP Virtual Server is built in the kernel or as module?\n";
    for args in [&["-Ln"][..], &["-A", "-t", "10.0.0.1:80"], &[], &["-h"]] {
        assert_eq!(
            run(args, socket),
            (String::new(), want.to_string(), 2),
            "{args:?}"
        );
    }
}
