//! Helpers of the rvsd/rvsadm integration tests: a private directory, an `rvsd` child on a
//! socket in it, `rvsadm` runs against it. Everything is removed and killed on drop.
#![allow(dead_code)]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The built rvsd.
pub fn rvsd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rvsd"))
}

/// The built rvsadm (a sibling of rvsd: both are workspace binaries of the same profile).
pub fn rvsadm_bin() -> PathBuf {
    let p = rvsd_bin().with_file_name("rvsadm");
    assert!(
        p.exists(),
        "{} missing: build the workspace (cargo build -p rvsadm)",
        p.display()
    );
    p
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("rvsd-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running rvsd.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
}

impl Daemon {
    /// Start `rvsd --socket SOCKET EXTRA…` and wait until its socket accepts.
    pub fn start(socket: &Path, extra: &[&str]) -> Daemon {
        let child = Command::new(rvsd_bin())
            .arg("--socket")
            .arg(socket)
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rvsd");
        let mut d = Daemon {
            child,
            socket: socket.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(socket).is_err() {
            if let Some(st) = d.child.try_wait().unwrap() {
                panic!("rvsd exited early: {st}");
            }
            assert!(Instant::now() < deadline, "rvsd did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// Send `sig` (`TERM`, `KILL`, `HUP`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        wait_timeout(&mut self.child, Duration::from_secs(20))
    }

    /// Run rvsadm against this daemon.
    pub fn adm(&self, args: &[&str]) -> Out {
        rvsadm(&self.socket, args, None)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "child did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a command printed and its status.
#[derive(Debug, PartialEq, Eq)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub status: i32,
}

/// Run rvsadm with `RVS_SOCKET=socket`, optionally feeding `stdin`.
pub fn rvsadm(socket: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut child = Command::new(rvsadm_bin())
        .arg0("rvsadm")
        .args(args)
        .env("RVS_SOCKET", socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rvsadm");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    Out {
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
        status: out.status.code().unwrap_or(-1),
    }
}

/// Runs the seed's director script (its ipvsadm lines, `tests/fixtures/lvs-dr-init.sh`)
/// with `rvsadm` first on the PATH, against the rvsd at `socket`.
pub fn run_seed_dr_script(socket: &Path) -> std::process::Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lvs-dr-init.sh");
    let bin_dir = rvsadm_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg(script)
        .env("PATH", path)
        .env("RVS_SOCKET", socket)
        .output()
        .unwrap()
}
