//! Resource exhaustion: at the file-descriptor limit the data plane's accept backs off (no
//! busy loop), keeps the connections it has, and serves the waiting ones once descriptors
//! are free again.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{rvsadm, rvsd_bin, wait_timeout, Daemon, TempDir};

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // fields 14 and 15 of stat(5), counted after the command name
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A real server that answers "ok\n" to each connection and keeps it open until the client
/// closes.
fn echo_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let _ = c.write_all(b"ok\n");
                let mut buf = [0u8; 64];
                while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

fn greeting(c: &mut TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 3];
    c.read_exact(&mut buf).is_ok() && &buf == b"ok\n"
}

#[test]
fn accept_backs_off_at_the_descriptor_limit_and_recovers() {
    let dir = TempDir::new("nofile");
    let socket = dir.path().join("rvsd.sock");
    let child = Command::new("prlimit")
        .arg("--nofile=100:100")
        .arg("--")
        .arg(rvsd_bin())
        .args(["--workers", "1", "--socket"])
        .arg(&socket)
        .stderr(Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) runs rvsd");
    let mut d = Daemon {
        child,
        socket: socket.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "rvsd did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rs = echo_server();
    let vip = "127.0.0.41:18441";
    let add = rvsadm(&socket, &["-A", "-t", vip, "-s", "rr"], None);
    assert_eq!(add.status, 0, "{add:?}");
    let rs = rs.to_string();
    let add = rvsadm(&socket, &["-a", "-t", vip, "-r", &rs, "-m"], None);
    assert_eq!(add.status, 0, "{add:?}");

    // more connections than the descriptor budget ((100 − 40) / 6 = 10): the first ones are
    // served, the rest wait in the listen backlog (their handshake is done by the kernel)
    let mut clients: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(vip).unwrap()).collect();
    let served = clients
        .iter_mut()
        .take(5)
        .map(greeting)
        .filter(|ok| *ok)
        .count();
    assert_eq!(served, 5, "the first connections are relayed");
    std::thread::sleep(Duration::from_millis(300));

    // at the limit, accept must not spin: well under half a core over one second
    let pid = d.child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    assert!(
        used < 30,
        "rvsd used {used} ticks of CPU in 1 s at the fd limit"
    );

    // free descriptors: the waiting connections are served in turn (each closed after its
    // greeting, so a slot frees for the next)
    let late = clients.split_off(20);
    drop(clients);
    let served = late
        .into_iter()
        .map(|mut c| greeting(&mut c))
        .filter(|ok| *ok)
        .count();
    assert_eq!(
        served, 20,
        "every waiting connection is relayed once descriptors are free"
    );
    d.signal("TERM");
    let st = wait_timeout(&mut d.child, Duration::from_secs(20));
    assert!(st.success(), "{st}");
}
