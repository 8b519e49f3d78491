//! The workers share the connections: SO_REUSEPORT's hash alone would let one worker drift
//! ahead, the hand-off keeps every worker within [`HANDOFF_MARGIN`] of the others, and a
//! connection handed to another worker is relayed like any other.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rvs_core::ipvs::{Config, Ipvs};
use rvs_core::model::{DestConf, Family, Forward, Protocol, ServiceConf, ServiceKey};
use rvs_proxy::core::Core;
use rvs_proxy::{Dataplane, Options, HANDOFF_MARGIN};

/// A real server that echoes every connection (a thread each) until the peer closes.
fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A loopback port free now (for the virtual service).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn two_hundred_long_connections_stay_spread_over_the_workers() {
    let rs = echo_server();
    let vip = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), free_port());
    let core = Arc::new(Core::new(Ipvs::new(Config::default())));
    {
        let mut ipvs = core.lock();
        let key = ServiceKey::Addr {
            proto: Protocol::Tcp,
            addr: vip.ip(),
            port: vip.port(),
        };
        ipvs.add_service(key, ServiceConf::new(Family::V4, "rr"))
            .unwrap();
        ipvs.add_dest(&key, DestConf::new(rs.ip(), rs.port()).fwd(Forward::Masq))
            .unwrap();
    }
    let opts = Options {
        workers: 3,
        ..Options::default()
    };
    let mut dp = Dataplane::start(core, opts).unwrap();
    dp.sync();

    // Opened one after the other and all kept open: a hash-only spread over three workers
    // would walk away from even (after 200 connections, the counts differ by about 20).
    let mut conns = Vec::new();
    for i in 1..=200usize {
        let mut c = TcpStream::connect(vip).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"?").unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"?", "connection {i} relayed");
        conns.push(c);
        wait_until("the count of the new connection", || {
            dp.worker_loads().iter().sum::<usize>() == i
        });
        let loads = dp.worker_loads();
        let (lo, hi) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
        assert!(
            hi - lo <= HANDOFF_MARGIN,
            "after {i} connections the workers hold {loads:?}"
        );
    }
    // every connection, wherever it was started, still relays
    for (i, c) in conns.iter_mut().enumerate() {
        let msg = format!("{i}");
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    drop(conns);
    wait_until("the connections to end", || dp.open_connections() == 0);
    assert_eq!(dp.worker_loads(), vec![0, 0, 0]);
    dp.shutdown();
}
