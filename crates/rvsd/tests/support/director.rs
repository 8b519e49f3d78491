//! An `rvsd` child for the data-plane tests: its own directory (control socket, state file,
//! log), started optionally inside a network namespace, killed on drop. When a test panics,
//! the daemon's log is printed so a data-plane failure can be read without a rerun.

use std::fs::File;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{rvsadm, rvsd_bin, Out, TempDir};

/// A running (or stopped) rvsd.
pub struct Director {
    dir: TempDir,
    /// the control socket (`RVS_SOCKET` of every rvsadm run)
    pub socket: PathBuf,
    args: Vec<String>,
    netns: Option<String>,
    child: Option<Child>,
    starts: usize,
}

impl Director {
    /// Start `rvsd --socket DIR/rvsd.sock EXTRA…` and wait until its socket accepts.
    pub fn start(tag: &str, extra: &[&str]) -> Director {
        Director::start_in(tag, extra, None)
    }

    /// The same, inside the network namespace `netns` (through `ip netns exec`, which execs
    /// rvsd, so the child is rvsd itself); the control socket is a path, reachable from here.
    pub fn start_in(tag: &str, extra: &[&str], netns: Option<&str>) -> Director {
        let dir = TempDir::new(tag);
        let socket = dir.path().join("rvsd.sock");
        let mut d = Director {
            dir,
            socket,
            args: extra.iter().map(|s| s.to_string()).collect(),
            netns: netns.map(str::to_string),
            child: None,
            starts: 0,
        };
        d.spawn();
        d
    }

    /// The daemon's private directory (for a `--state` file).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("rvsd-{n}.log"))
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = File::create(self.log_path(self.starts)).expect("log file");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(rvsd_bin());
                c
            }
            None => Command::new(rvsd_bin()),
        };
        let child = cmd
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rvsd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(st) = self.child_mut().try_wait().unwrap() {
                panic!("rvsd exited early: {st}\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "rvsd did not come up");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Start again with the same arguments once the previous process has exited.
    pub fn restart(&mut self) {
        assert!(
            self.child_mut().try_wait().unwrap().is_some(),
            "restart of a running rvsd"
        );
        self.spawn();
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("started")
    }

    /// The process id of the running rvsd.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("started").id()
    }

    /// Everything every start of this daemon logged.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| std::fs::read_to_string(self.log_path(n)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("---- restart ----\n")
    }

    /// Run rvsadm with these words.
    pub fn adm(&self, args: &[&str]) -> Out {
        rvsadm(&self.socket, args, None)
    }

    /// Run rvsadm with the words of `line`; it must succeed silently.
    pub fn ok(&self, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let out = self.adm(&words);
        assert_eq!(
            (out.status, out.stderr.as_str()),
            (0, ""),
            "rvsadm {line}: {out:?}"
        );
    }

    /// The stdout of a successful rvsadm run.
    pub fn text(&self, line: &str) -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        let out = self.adm(&words);
        assert_eq!(out.status, 0, "rvsadm {line}: {out:?}");
        out.stdout
    }

    /// Send SIGTERM.
    pub fn sigterm(&self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -TERM failed");
    }

    /// Wait up to `limit` for the exit; `None` if it is still running then.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.child_mut().try_wait().unwrap() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM and the exit status (within 20 s).
    pub fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit(Duration::from_secs(20))
            .expect("rvsd did not exit within 20 s of SIGTERM")
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            eprintln!(
                "==== rvsd log tail ({}) ====\n{tail}",
                self.socket.display()
            );
        }
    }
}
