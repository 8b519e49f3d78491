//! The test's own network namespace (`ip netns add`), entered by the calling thread for as
//! long as the guard lives: the program's FIB lookups, `BPF_PROG_TEST_RUN`'s ingress
//! interface and the devmap's ifindexes all resolve in the caller's namespace. Dropping the
//! guard takes the thread back to where it was and deletes the namespace, panic or not.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

/// A network namespace the calling thread is in.
pub struct Netns {
    /// its name under /run/netns
    pub name: String,
    /// the namespace the thread came from
    home: File,
    entered: bool,
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .expect("run a command");
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves the calling thread into the network namespace `file` refers to.
fn enter(file: &File) -> std::io::Result<()> {
    // SAFETY: setns(2) takes a descriptor (open for the whole call, borrowed from `file`) and
    // a flag, and touches no memory of ours; CLONE_NEWNET changes only this thread's network
    // namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl Netns {
    /// Creates `rvsnatfx-PID-TAG` (the guard exists before anything else is set up in it).
    pub fn new(tag: &str) -> Netns {
        let name = format!("rvsnatfx-{}-{tag}", std::process::id());
        let home = File::open("/proc/thread-self/ns/net").expect("this thread's namespace");
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        Netns {
            name,
            home,
            entered: false,
        }
    }

    /// `ip -n NAME WORDS…` (the words split at spaces).
    pub fn ip(&self, words: &str) {
        let mut args = vec!["-n", self.name.as_str()];
        args.extend(words.split_whitespace());
        run("ip", &args);
    }

    /// `sysctl -w KEY=VALUE` inside.
    pub fn sysctl(&self, setting: &str) {
        run(
            "ip",
            &["netns", "exec", &self.name, "sysctl", "-q", "-w", setting],
        );
    }

    /// The index of interface `dev` inside.
    pub fn ifindex(&self, dev: &str) -> u32 {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-o", "link", "show", "dev", dev])
            .output()
            .expect("run ip");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(':')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no ifindex for {dev}: {text}"))
    }

    /// Moves the calling thread in (until the guard is dropped).
    pub fn enter(&mut self) {
        let file = File::open(format!("/run/netns/{}", self.name)).expect("open the namespace");
        enter(&file).expect("setns into the test's namespace");
        self.entered = true;
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.entered {
            if let Err(e) = enter(&self.home) {
                eprintln!("setns back to the original namespace: {e}");
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
