//! `rvsd --demo`: the README's first command. It prints the `rvsadm -Ln` table and the
//! commands to try, and its virtual service answers from the three real servers by weight.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{rvsd_bin, wait_timeout, TempDir};

fn get(addr: &str) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn the_demo_serves_three_real_servers_by_weight() {
    // as the README runs it: no --socket, so the socket goes to a private temporary directory
    let dir = TempDir::new("demo");
    let mut child = Command::new(rvsd_bin())
        .args(["--demo", "--workers", "1"])
        .env("TMPDIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    for line in lines.by_ref() {
        let line = line.unwrap();
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("Ctrl-C") || Instant::now() > deadline {
            break;
        }
    }
    assert!(text.contains("TCP  127.0.0.1:8080 wlc\n"), "{text}");
    assert_eq!(text.matches("Masq    ").count(), 3, "{text}");
    assert!(text.contains("-Ln --stats"), "{text}");
    let mut seen = [0usize; 3];
    for _ in 0..12 {
        let body = get("127.0.0.1:8080");
        assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
        for (i, n) in seen.iter_mut().enumerate() {
            if body.contains(&format!("real server {} ", i + 1)) {
                *n += 1;
            }
        }
    }
    assert_eq!(seen.iter().sum::<usize>(), 12, "{seen:?}");
    assert!(
        seen.iter().all(|n| *n > 0),
        "every real server answers: {seen:?}"
    );
    assert!(
        seen[2] > seen[0],
        "weight 3 serves more than weight 1: {seen:?}"
    );
    let private = dir.path().join(format!("rvs-demo-{}", child.id()));
    assert!(
        private.join("rvsd.sock").exists(),
        "the control socket is in {}",
        private.display()
    );
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(wait_timeout(&mut child, Duration::from_secs(20)).success());
    assert!(
        !private.exists(),
        "the demo's directory is removed at exit: {}",
        private.display()
    );
}
