//! Every probe against small servers on loopback: what makes it pass and what fails it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rvs_config::spec::{self, Check, CheckKind, HttpCheck, HttpProtocol, Loc, Timing, UrlCheck};
use rvs_probe::{run as probe, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

fn check(kind: CheckKind) -> Check {
    Check {
        loc: Loc::new("t", 1, 1),
        kind,
        timing: Timing {
            delay_loop: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            retry: 0,
            delay_before_retry: Duration::from_secs(1),
            warmup: Duration::ZERO,
        },
        connect: None,
        bind_addr: None,
        bind_port: None,
        bind_if: None,
        fwmark: None,
        log_all_failures: false,
    }
}

fn http(urls: Vec<UrlCheck>, tls: bool) -> CheckKind {
    CheckKind::Http(HttpCheck {
        tls,
        urls,
        protocol: HttpProtocol::Http10,
        virtualhost: None,
        method: "GET".into(),
        sni: false,
        sni_name: None,
        tls_close_notify: false,
    })
}

fn url(path: &str, status: Vec<(u16, u16)>, digest: Option<&str>) -> UrlCheck {
    UrlCheck {
        path: path.into(),
        digest: digest.map(str::to_string),
        status,
        virtualhost: None,
        regex: None,
        regex_no_match: false,
        regex_min_offset: 0,
        regex_max_offset: None,
        regex_first_line: false,
    }
}

/// An HTTP server answering every connection with `answer` after reading the request head;
/// returns its address and the requests it saw.
async fn http_server(
    answer: &'static [u8],
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&req).into_owned());
                let _ = s.write_all(answer).await;
            });
        }
    });
    (addr, rx)
}

fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn tcp_connect_up_and_refused() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    assert_eq!(
        probe(&check(CheckKind::Tcp), l.local_addr().unwrap()).await,
        Outcome::Ok
    );
    assert_eq!(
        probe(&check(CheckKind::Tcp), closed_port()).await,
        Outcome::Fail("connection refused".into())
    );
}

#[tokio::test]
async fn http_get_sends_keepalived_request_and_judges_status_and_digest() {
    let (addr, mut seen) = http_server(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
    // md5("hello")
    let good = check(http(
        vec![url(
            "/health",
            vec![],
            Some("5d41402abc4b2a76b9719d911017c592"),
        )],
        false,
    ));
    assert_eq!(probe(&good, addr).await, Outcome::Ok);
    let req = seen.recv().await.unwrap();
    assert!(req.starts_with("GET /health HTTP/1.0\r\n"), "{req}");
    assert!(req.contains("User-Agent: KeepAliveClient\r\n"), "{req}");
    assert!(
        req.contains(&format!("Host: 127.0.0.1:{}\r\n", addr.port())),
        "{req}"
    );
    let bad = check(http(
        vec![url("/", vec![], Some("00000000000000000000000000000000"))],
        false,
    ));
    assert_eq!(probe(&bad, addr).await, Outcome::Fail("/: digest 5d41402abc4b2a76b9719d911017c592 (expected 00000000000000000000000000000000)".into()));
    let status = check(http(
        vec![url("/", vec![(201, 201), (300, 399)], None)],
        false,
    ));
    assert_eq!(
        probe(&status, addr).await,
        Outcome::Fail("/: status 200 (expected 201,300-399)".into())
    );
}

#[tokio::test]
async fn http_get_status_503_is_down_and_chunked_bodies_are_digested() {
    let (a503, _r) =
        http_server(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n").await;
    let c = check(http(vec![url("/", vec![], None)], false));
    assert_eq!(
        probe(&c, a503).await,
        Outcome::Fail("/: status 503 (expected 200-299)".into())
    );
    let (chunked, _r2) = http_server(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
    )
    .await;
    let c = check(http(
        vec![url("/", vec![], Some("5d41402abc4b2a76b9719d911017c592"))],
        false,
    ));
    assert_eq!(probe(&c, chunked).await, Outcome::Ok);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let _s = l.accept().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let mut c = check(http(vec![url("/", vec![], None)], false));
    c.timing.connect_timeout = Duration::from_millis(300);
    assert_eq!(probe(&c, addr).await, Outcome::Timeout);
}

#[tokio::test]
async fn ssl_get_talks_tls_without_verifying_the_certificate() {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = key.cert.der().clone();
    let pk = rustls::pki_types::PrivateKeyDer::try_from(key.key_pair.serialize_der()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], pk)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    // the server tells how each session ended: a close_notify (a clean end of stream) or not
    let (ends, mut ended) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let acc = acceptor.clone();
            let ends = ends.clone();
            tokio::spawn(async move {
                let Ok(mut t) = acc.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = t.read(&mut buf).await;
                let _ = t
                    .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                let _ = t.flush().await;
                let _ = ends.send(matches!(t.read(&mut buf).await, Ok(0)));
                let _ = t.shutdown().await;
            });
        }
    });
    let mut c = check(http(vec![url("/", vec![], None)], true));
    assert_eq!(probe(&c, addr).await, Outcome::Ok);
    assert!(!ended.recv().await.unwrap(), "no close_notify by default");
    // keepalived `tls_compliant`: the session ends with a close_notify
    let CheckKind::Http(h) = &mut c.kind else {
        unreachable!()
    };
    h.tls_close_notify = true;
    assert_eq!(probe(&c, addr).await, Outcome::Ok);
    assert!(ended.recv().await.unwrap(), "close_notify sent");
    // the same server spoken to in plain HTTP is not an HTTP server
    let plain = check(http(vec![url("/", vec![], None)], false));
    assert!(matches!(probe(&plain, addr).await, Outcome::Fail(_)));
}

#[tokio::test]
async fn smtp_needs_220_then_250() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s
                .write_all(b"220-mail.example ESMTP\r\n220 ready\r\n")
                .await;
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = s.write_all(b"250 hello\r\n").await;
            let _ = s.read(&mut buf).await;
        }
    });
    let c = check(CheckKind::Smtp {
        helo_name: "smtpchecker.keepalived.org".into(),
    });
    assert_eq!(probe(&c, addr).await, Outcome::Ok);
    assert_eq!(
        rx.recv().await.unwrap(),
        "HELO smtpchecker.keepalived.org\r\n"
    );
    let (busy, _r) = http_server(b"").await; // answers nothing after the request: no banner
    let mut c2 = c.clone();
    c2.timing.connect_timeout = Duration::from_millis(300);
    assert_eq!(probe(&c2, busy).await, Outcome::Timeout);
}

#[tokio::test]
async fn dns_needs_an_answer_with_rcode_0() {
    for (rcode, want) in [
        (0u8, Outcome::Ok),
        (3, Outcome::Fail("DNS answered RCODE 3".into())),
    ] {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = s.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let (n, from) = s.recv_from(&mut buf).await.unwrap();
            let mut r = buf[..n].to_vec();
            r[2] |= 0x80; // QR
            r[3] = (r[3] & 0xf0) | rcode;
            s.send_to(&r, from).await.unwrap();
        });
        let c = check(CheckKind::Dns {
            qtype: spec::DnsType::Soa,
            name: ".".into(),
        });
        assert_eq!(probe(&c, addr).await, want);
    }
}

#[tokio::test]
async fn udp_check_fails_on_port_unreachable_and_checks_replies() {
    let free = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut c = check(CheckKind::Udp(spec::UdpCheck {
        payload: b"ping".to_vec(),
        require_reply: None,
        min_reply_length: 0,
        max_reply_length: 255,
    }));
    c.timing.connect_timeout = Duration::from_millis(500);
    assert_eq!(
        probe(&c, free).await,
        Outcome::Fail("connection refused".into())
    );
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            let (_, from) = s.recv_from(&mut buf).await.unwrap();
            s.send_to(b"pong", from).await.unwrap();
        }
    });
    let CheckKind::Udp(u) = &mut c.kind else {
        unreachable!()
    };
    u.require_reply = Some(Some(vec![(b'p', 0xff), (b'o', 0xff)]));
    assert_eq!(probe(&c, addr).await, Outcome::Ok);
    let CheckKind::Udp(u) = &mut c.kind else {
        unreachable!()
    };
    u.require_reply = Some(Some(vec![(b'x', 0xff)]));
    assert_eq!(
        probe(&c, addr).await,
        Outcome::Fail("reply does not match".into())
    );
}

#[tokio::test]
async fn misc_check_exit_codes_and_dynamic_weights() {
    let misc = |script: &str, dynamic: bool, ms: u64| {
        check(CheckKind::Misc(spec::MiscCheck {
            command: spec::Command {
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
                shell: false,
                user: None,
                group: None,
            },
            timeout: Duration::from_millis(ms),
            dynamic,
        }))
    };
    let rs = closed_port();
    assert_eq!(probe(&misc("exit 0", false, 2000), rs).await, Outcome::Ok);
    assert_eq!(
        probe(&misc("exit 1", false, 2000), rs).await,
        Outcome::Fail("/bin/sh exited with 1".into())
    );
    assert_eq!(
        probe(&misc("exit 7", true, 2000), rs).await,
        Outcome::Weight(5)
    );
    assert_eq!(
        probe(&misc("exit 7", false, 2000), rs).await,
        Outcome::Fail("/bin/sh exited with 7".into())
    );
    assert_eq!(
        probe(&misc("sleep 5", false, 200), rs).await,
        Outcome::Fail("/bin/sh did not finish within 200ms".into())
    );
}

#[tokio::test]
async fn ping_loopback() {
    let c = check(CheckKind::Ping);
    assert_eq!(probe(&c, "127.0.0.1:0".parse().unwrap()).await, Outcome::Ok);
}

#[tokio::test]
async fn misc_check_runs_as_its_user() {
    let me = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        eprintln!("not root: running a check as another user needs root; skipped");
        return;
    }
    let c = check(CheckKind::Misc(spec::MiscCheck {
        command: spec::Command {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "test \"$(id -u)\" = 65534".into(),
            ],
            shell: false,
            user: Some("nobody".into()),
            group: None,
        },
        timeout: Duration::from_secs(2),
        dynamic: false,
    }));
    assert_eq!(probe(&c, closed_port()).await, Outcome::Ok);
    let CheckKind::Misc(m) = &mut c.clone().kind else {
        unreachable!()
    };
    m.command.user = Some("no-such-user-here".into());
    let bad = check(CheckKind::Misc(m.clone()));
    assert_eq!(
        probe(&bad, closed_port()).await,
        Outcome::Fail("no such user: no-such-user-here".into())
    );
}
