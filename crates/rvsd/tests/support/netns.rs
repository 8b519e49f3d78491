//! A network namespace of the test's own (created with `ip netns add`, removed on drop),
//! for addresses that are not on loopback. Code that must create its sockets there runs on
//! a thread that joined the namespace ([`Netns::run`]); sockets keep their namespace
//! wherever they are used afterwards, and threads started there stay there.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

/// A network namespace with its loopback up.
pub struct Netns {
    /// its name under /run/netns
    pub name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Create `rvs-e2e-PID-TAG` and bring its loopback up.
    pub fn new(tag: &str) -> Netns {
        let name = format!("rvs-e2e-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Run `ip -n NAME ARGS…`.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Run `ARGS…` inside the namespace (`ip netns exec`); it must succeed.
    #[allow(dead_code)] // not every test binary uses every helper
    pub fn exec(&self, args: &[&str]) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec");
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Set sysctl `key` to `value` inside the namespace.
    #[allow(dead_code)]
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")]);
    }

    /// Run `f` on a thread inside the namespace and return its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).expect("open the namespace");
                enter(&file);
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }
}

/// Move the calling thread into the network namespace `file` refers to.
#[allow(unsafe_code)]
fn enter(file: &File) {
    // SAFETY: setns(2) takes a file descriptor and a flag and touches no memory of ours; the
    // descriptor is open for the whole call (borrowed from `file`), and CLONE_NEWNET changes
    // only this thread's network namespace, which nothing else in the process relies on.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
