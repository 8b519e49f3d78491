//! `rvsd --check-config FILE`: validates the file, reports, exits; starts nothing.

use std::path::PathBuf;
use std::process::Command;

fn rvsd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rvsd"))
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A private directory for this test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("rvsd-check-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_good_file_is_ok_with_its_counts_and_nothing_starts() {
    let dir = TempDir::new("good");
    let socket = dir.0.join("rvsd.sock");
    let file = examples().join("dr-fwmark.toml");
    let out = rvsd()
        .arg("--socket")
        .arg(&socket)
        .arg("--check-config")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}: ok (1 services, 3 real servers, 5 checks)\n",
            file.display()
        )
    );
    assert!(out.stderr.is_empty(), "{out:?}");
    assert!(
        !socket.exists(),
        "--check-config must not open the control socket"
    );
}

#[test]
fn every_example_checks_ok() {
    for e in std::fs::read_dir(examples()).unwrap() {
        let path = e.unwrap().path();
        let out = rvsd().arg("--check-config").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}: {out:?}", path.display());
    }
}

#[test]
fn a_bad_file_prints_the_located_error_and_exits_1() {
    let dir = TempDir::new("bad");
    let file = dir.0.join("bad.toml");
    std::fs::write(
        &file,
        "[[service]]\naddress = \"192.0.2.1:80\"\n\n[[service.server]]\naddress = \"10.0.0.1\"\nweight = 70000000000\n",
    )
    .unwrap();
    let out = rvsd().arg("--check-config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "{}:6:10: weight 70000000000 is out of range (0 to 2147483647)\n",
            file.display()
        )
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let out = rvsd()
        .args(["--check-config", "/nonexistent/rvs.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "/nonexistent/rvs.toml:1:1: cannot read: No such file or directory\n"
    );
}
