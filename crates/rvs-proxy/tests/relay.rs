//! The relay end to end on loopback: a client app ⇄ relay ⇄ server app, with the relay's own
//! sockets accepted/connected like the proxy's would be.
//!
//! Every test runs on a current-thread runtime, so the relay task shares the test's thread
//! and its counters (`pipe::stats` for splice mode, `relay::stats` for copy mode) can be read
//! from the test.

use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rvs_proxy::pipe;
use rvs_proxy::relay::{self, Counters, Event, Observer, Outcome, RelayOpts};
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

/// Bound on every test's network waits.
const LIMIT: Duration = Duration::from_secs(20);

/// What the observer saw, shared with the test.
type Log = Arc<Mutex<Vec<(Event, Counters, Instant)>>>;

/// Records every event; answers false at the `n`-th (1-based) event of kind `abort_on.0`.
struct Rec {
    log: Log,
    abort_on: Option<(Event, usize)>,
}

impl Observer for Rec {
    fn event(&mut self, ev: Event, c: &Counters) -> bool {
        let mut log = self.log.lock().unwrap();
        log.push((ev, *c, Instant::now()));
        let seen = log.iter().filter(|(e, _, _)| *e == ev).count();
        self.abort_on != Some((ev, seen))
    }
}

struct Setup {
    client: TcpStream,
    server: TcpStream,
    log: Log,
    relay: JoinHandle<(Outcome, Counters)>,
}

fn events(log: &Log) -> Vec<Event> {
    log.lock().unwrap().iter().map(|(e, _, _)| *e).collect()
}

/// A connected pair: (the app's end, the relay's end).
async fn connected(host: &str) -> (TcpStream, TcpStream) {
    let l = TcpListener::bind((host, 0)).await.unwrap();
    let app = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (relay_end, _) = l.accept().await.unwrap();
    (app, relay_end)
}

async fn start(opts: RelayOpts, abort_on: Option<(Event, usize)>) -> Setup {
    start_narrow(None, opts, abort_on).await
}

/// Like [`start`]; with `Some(side)`, the path relay → that side's app has small fixed
/// buffers (the app's receive buffer, the relay's send buffer), so the relay holds bytes as
/// soon as that app stops reading.
async fn start_narrow(
    narrow: Option<Side>,
    opts: RelayOpts,
    abort_on: Option<(Event, usize)>,
) -> Setup {
    let (client, relay_client) = connected("127.0.0.1").await;
    let (server, relay_server) = connected("127.0.0.1").await;
    match narrow {
        Some(Side::Client) => shrink(&client, &relay_client),
        Some(Side::Server) => shrink(&server, &relay_server),
        None => {}
    }
    let log = Log::default();
    let rec = Rec {
        log: log.clone(),
        abort_on,
    };
    let relay =
        tokio::spawn(async move { relay::run(relay_client, relay_server, &opts, rec).await });
    Setup {
        client,
        server,
        log,
        relay,
    }
}

#[derive(Clone, Copy)]
enum Side {
    Client,
    Server,
}

/// Small buffers from the relay's socket to the app (no autotuning once set). Not smaller:
/// with loopback's 64 KiB MSS, a window much below it leaves TCP waiting on its timers.
fn shrink(app: &TcpStream, relay_end: &TcpStream) {
    SockRef::from(app).set_recv_buffer_size(32 * 1024).unwrap();
    SockRef::from(relay_end)
        .set_send_buffer_size(32 * 1024)
        .unwrap();
}

fn opts_ms(report_every: u64, idle: u64) -> RelayOpts {
    RelayOpts {
        report_every: Duration::from_millis(report_every),
        idle: Duration::from_millis(idle),
    }
}

async fn finish(relay: JoinHandle<(Outcome, Counters)>) -> (Outcome, Counters) {
    timeout(LIMIT, relay)
        .await
        .expect("relay ended")
        .expect("relay task")
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `data` then FIN, while reading everything the other way until EOF.
async fn send_and_drain(s: TcpStream, data: &[u8]) -> Vec<u8> {
    let (mut r, mut w) = s.into_split();
    let write = async {
        w.write_all(data).await.unwrap();
        w.shutdown().await.unwrap();
        w
    };
    let read = async {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        got
    };
    let (_w, got) = tokio::join!(write, read);
    got
}

/// Reads until an error or EOF; returns the error kind (None for a clean EOF).
async fn read_until_end(s: &mut TcpStream) -> Option<ErrorKind> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match timeout(LIMIT, s.read(&mut buf)).await.expect("read ends") {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(e.kind()),
        }
    }
}

#[tokio::test]
async fn five_mib_each_way_arrive_intact_and_are_counted() {
    const LEN: usize = 5 << 20;
    let before = pipe::stats();
    let copy_before = relay::stats();
    let s = start(RelayOpts::default(), None).await;
    let (to_server, to_client) = (random_bytes(LEN, 1), random_bytes(LEN, 2));
    let (at_server, at_client) = timeout(LIMIT, async {
        tokio::join!(
            send_and_drain(s.server, &to_client),
            send_and_drain(s.client, &to_server)
        )
    })
    .await
    .expect("transfer ends");
    assert!(at_server == to_server, "client -> server bytes differ");
    assert!(at_client == to_client, "server -> client bytes differ");
    let (outcome, c) = finish(s.relay).await;
    assert!(matches!(outcome, Outcome::Closed), "{outcome:?}");
    assert_eq!((c.c2s_bytes, c.s2c_bytes), (LEN as u64, LEN as u64));
    // Several segments each way on both sockets.
    assert!(c.client_segs_in > 10 && c.client_segs_out > 10, "{c:?}");
    assert!(c.server_segs_in > 10 && c.server_segs_out > 10, "{c:?}");
    let log = s.log.lock().unwrap();
    let last = log.last().unwrap();
    assert_eq!(last.0, Event::Done);
    assert_eq!(last.1, c);
    assert!(
        log.iter().any(|e| e.0 == Event::ClientEof) && log.iter().any(|e| e.0 == Event::ServerEof)
    );
    // Both directions switched to splice: the bulk went through pipes, and every pipe came
    // back empty.
    let after = pipe::stats();
    let copy = relay::stats();
    assert!(copy.to_splice - copy_before.to_splice >= 2, "{copy:?}");
    assert!(after.created + after.reused > before.created + before.reused);
    assert!(after.splices - before.splices >= 4, "{before:?} {after:?}");
    assert_eq!(after.outstanding(), before.outstanding());
    assert_eq!(after.discarded, before.discarded);
    // Copied: the first scratch buffer of each direction, and whatever small bursts went back
    // to copy mode; far fewer receives than copying it all would take (640 of 16 KiB).
    let recvs = copy.recvs - copy_before.recvs;
    assert!(
        recvs < (2 * LEN / relay::SCRATCH) as u64 / 2,
        "{recvs} receives"
    );
}

#[tokio::test]
async fn client_half_close_then_server_sends_a_mib() {
    let s = start(RelayOpts::default(), None).await;
    let (mut client, mut server) = (s.client, s.server);
    let reply = random_bytes(1 << 20, 3);
    let work = async {
        client.write_all(b"all I have to say").await.unwrap();
        client.shutdown().await.unwrap();
        let mut req = Vec::new();
        server.read_to_end(&mut req).await.unwrap();
        assert_eq!(req, b"all I have to say");
        // The server still sends after seeing EOF, and the client gets all of it.
        server.write_all(&reply).await.unwrap();
        server.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert!(got == reply, "reply differs");
    };
    timeout(LIMIT, work).await.expect("exchange ends");
    let (outcome, c) = finish(s.relay).await;
    assert!(matches!(outcome, Outcome::Closed), "{outcome:?}");
    assert_eq!((c.c2s_bytes, c.s2c_bytes), (17, 1 << 20));
    let ev: Vec<Event> = s
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.0)
        .filter(|e| *e != Event::Progress)
        .collect();
    assert_eq!(ev, [Event::ClientEof, Event::ServerEof, Event::Done]);
}

#[tokio::test]
async fn server_half_close_then_client_sends_a_mib() {
    let s = start(RelayOpts::default(), None).await;
    let (mut client, mut server) = (s.client, s.server);
    let upload = random_bytes(1 << 20, 4);
    let work = async {
        server.write_all(b"220 banner, then FIN").await.unwrap();
        server.shutdown().await.unwrap();
        let mut banner = Vec::new();
        client.read_to_end(&mut banner).await.unwrap();
        assert_eq!(banner, b"220 banner, then FIN");
        client.write_all(&upload).await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert!(got == upload, "upload differs");
    };
    timeout(LIMIT, work).await.expect("exchange ends");
    let (outcome, c) = finish(s.relay).await;
    assert!(matches!(outcome, Outcome::Closed), "{outcome:?}");
    assert_eq!((c.c2s_bytes, c.s2c_bytes), (1 << 20, 20));
    let ev: Vec<Event> = s
        .log
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.0)
        .filter(|e| *e != Event::Progress)
        .collect();
    assert_eq!(ev, [Event::ServerEof, Event::ClientEof, Event::Done]);
}

/// One request/response through the relay, so both directions have moved bytes.
async fn exchange(client: &mut TcpStream, server: &mut TcpStream) {
    let mut buf = [0u8; 4];
    client.write_all(b"ping").await.unwrap();
    server.read_exact(&mut buf).await.unwrap();
    server.write_all(b"pong").await.unwrap();
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
}

#[tokio::test]
async fn server_reset_reaches_the_client_as_a_reset() {
    let s = start(RelayOpts::default(), None).await;
    let (mut client, mut server) = (s.client, s.server);
    timeout(LIMIT, exchange(&mut client, &mut server))
        .await
        .unwrap();
    server.set_zero_linger().unwrap();
    drop(server);
    assert_eq!(
        read_until_end(&mut client).await,
        Some(ErrorKind::ConnectionReset)
    );
    let (outcome, c) = finish(s.relay).await;
    assert!(matches!(outcome, Outcome::ServerReset), "{outcome:?}");
    assert_eq!((c.c2s_bytes, c.s2c_bytes), (4, 4));
    assert_eq!(s.log.lock().unwrap().last().unwrap().0, Event::ServerReset);
}

#[tokio::test]
async fn client_reset_reaches_the_server_as_a_reset() {
    let s = start(RelayOpts::default(), None).await;
    let (mut client, mut server) = (s.client, s.server);
    timeout(LIMIT, exchange(&mut client, &mut server))
        .await
        .unwrap();
    client.set_zero_linger().unwrap();
    drop(client);
    assert_eq!(
        read_until_end(&mut server).await,
        Some(ErrorKind::ConnectionReset)
    );
    let (outcome, _) = finish(s.relay).await;
    assert!(matches!(outcome, Outcome::ClientReset), "{outcome:?}");
    assert_eq!(s.log.lock().unwrap().last().unwrap().0, Event::ClientReset);
}

#[tokio::test]
async fn reset_after_fin_still_resets_the_other_side() {
    let s = start(RelayOpts::default(), None).await;
    let (mut client, mut server) = (s.client, s.server);
    client.write_all(b"last words").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    timeout(LIMIT, server.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"last words");
    // The client, having sent FIN, now resets while the server is still "thinking".
    client.set_zero_linger().unwrap();
    drop(client);
    // The server, which already read EOF, learns of it as a socket error (a FIN would
    // leave none).
    timeout(LIMIT, server.ready(Interest::ERROR))
        .await
        .expect("an error arrives")
        .unwrap();
    let err = server.take_error().unwrap().expect("socket error");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "{err}"
    );
    let (outcome, _) = finish(s.relay).await;
    assert!(matches!(outcome, Outcome::ClientReset), "{outcome:?}");
    assert_eq!(events(&s.log), [Event::ClientEof, Event::ClientReset]);
}

#[tokio::test]
async fn observer_abort_resets_both_sides() {
    // Report after every move; refuse the first report.
    let s = start(opts_ms(0, 60_000), Some((Event::Progress, 1))).await;
    let (mut client, mut server) = (s.client, s.server);
    client.write_all(b"hello").await.unwrap();
    assert_eq!(
        read_until_end(&mut server).await,
        Some(ErrorKind::ConnectionReset)
    );
    assert_eq!(
        read_until_end(&mut client).await,
        Some(ErrorKind::ConnectionReset)
    );
    let (outcome, c) = finish(s.relay).await;
    assert!(matches!(outcome, Outcome::Aborted), "{outcome:?}");
    assert_eq!(c.c2s_bytes, 5);
    assert_eq!(events(&s.log), [Event::Progress]);
}

#[tokio::test]
async fn idle_is_reported_and_may_abort() {
    let t0 = Instant::now();
    // Keep waiting after the first idle period, abort at the second.
    let s = start(opts_ms(10, 150), Some((Event::Idle, 2))).await;
    let (mut client, mut server) = (s.client, s.server);
    assert_eq!(
        read_until_end(&mut client).await,
        Some(ErrorKind::ConnectionReset)
    );
    assert_eq!(
        read_until_end(&mut server).await,
        Some(ErrorKind::ConnectionReset)
    );
    let (outcome, _) = finish(s.relay).await;
    assert!(matches!(outcome, Outcome::Aborted), "{outcome:?}");
    assert!(
        t0.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t0.elapsed()
    );
    let log = s.log.lock().unwrap();
    assert_eq!(
        log.iter().map(|e| e.0).collect::<Vec<_>>(),
        [Event::Idle, Event::Idle]
    );
    assert!(log[1].2 - log[0].2 >= Duration::from_millis(150));
}

#[tokio::test]
async fn progress_is_paced_and_reports_the_last_bytes() {
    let every = Duration::from_millis(80);
    let s = start(opts_ms(80, 250), None).await;
    let (mut client, mut server) = (s.client, s.server);
    let t_last = timeout(LIMIT, async {
        let mut b = [0u8; 1];
        for _ in 0..12 {
            client.write_all(b"x").await.unwrap();
            server.read_exact(&mut b).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        Instant::now()
    })
    .await
    .unwrap();
    // The last byte is reported within report_every although nothing else happens.
    let deadline = t_last + Duration::from_secs(5);
    while Instant::now() < deadline {
        let done = s
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.0 == Event::Progress && e.1.c2s_bytes == 12);
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = s.log.lock().unwrap().clone();
    let progress: Vec<_> = log.iter().filter(|e| e.0 == Event::Progress).collect();
    assert!(progress.len() >= 3, "{log:?}");
    assert_eq!(progress.last().unwrap().1.c2s_bytes, 12, "{log:?}");
    for w in progress.windows(2) {
        // Gaps measured by the observer; a millisecond of slack for the clock reads.
        assert!(
            w[1].2 - w[0].2 + Duration::from_millis(1) >= every,
            "{log:?}"
        );
        assert!(w[1].1.c2s_bytes > w[0].1.c2s_bytes);
    }
    // Bytes kept moving every 30 ms: the 250 ms idle period never ran out.
    assert!(!log.iter().any(|e| e.0 == Event::Idle), "{log:?}");
    drop((client, server));
    let _ = finish(s.relay).await;
}

#[tokio::test]
async fn small_exchanges_use_no_pipe() {
    let (before, copy) = (pipe::stats(), relay::stats());
    let s = start(RelayOpts::default(), None).await;
    let (mut client, mut server) = (s.client, s.server);
    timeout(LIMIT, exchange(&mut client, &mut server))
        .await
        .unwrap();
    client.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
    let (outcome, c) = finish(s.relay).await;
    assert!(matches!(outcome, Outcome::Closed), "{outcome:?}");
    assert_eq!((c.c2s_bytes, c.s2c_bytes), (4, 4));
    // Copied both ways, FINs included: no pipe taken, no splice made.
    let after = pipe::stats();
    assert_eq!(after, before);
    let now = relay::stats();
    assert_eq!(now.to_splice, copy.to_splice);
    assert!(now.recvs > copy.recvs && now.sends > copy.sends, "{now:?}");
}

#[tokio::test]
async fn small_messages_cost_one_receive_and_one_send() {
    const ROUNDS: u64 = 200;
    const MSG: usize = 64;
    let s = start(RelayOpts::default(), None).await;
    let (mut client, mut server) = (s.client, s.server);
    let (pipes, copy) = (pipe::stats(), relay::stats());
    timeout(LIMIT, async {
        let mut buf = [0u8; MSG];
        for i in 0..ROUNDS {
            let q = [i as u8; MSG];
            client.write_all(&q).await.unwrap();
            server.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, q);
            server.write_all(&[!(i as u8); MSG]).await.unwrap();
            client.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, [!(i as u8); MSG]);
        }
    })
    .await
    .unwrap();
    let now = relay::stats();
    let (recvs, sends) = (now.recvs - copy.recvs, now.sends - copy.sends);
    // One receive and one send per message: no extra receive to learn the socket is empty.
    assert!(
        recvs <= 2 * ROUNDS + 4,
        "{recvs} receives for {ROUNDS} round trips"
    );
    assert_eq!(sends, 2 * ROUNDS, "{now:?}");
    assert_eq!((now.held, now.to_splice), (copy.held, copy.to_splice));
    assert_eq!(pipe::stats(), pipes);
    drop((client, server));
    let _ = finish(s.relay).await;
}

/// Waits (bounded) until `cond` holds, letting the relay task run meanwhile.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn held_bytes_then_bulk_keep_their_order() {
    const SMALL: usize = 1000;
    let s = start_narrow(Some(Side::Client), opts_ms(0, 60_000), None).await;
    let (mut client, mut server) = (s.client, s.server);
    let (pipes, copy) = (pipe::stats(), relay::stats());
    // Small messages, one at a time, while the client does not read: copy mode until the
    // client's path is full and a send leaves bytes over.
    let mut sent = Vec::new();
    timeout(LIMIT, async {
        for i in 0..2000u64 {
            if relay::stats().held > copy.held {
                break;
            }
            let msg = random_bytes(SMALL, 100 + i);
            let recvs = relay::stats().recvs;
            server.write_all(&msg).await.unwrap();
            sent.extend_from_slice(&msg);
            wait_for("the relay to receive", || relay::stats().recvs > recvs).await;
        }
    })
    .await
    .expect("the client's path fills up");
    let held = relay::stats();
    assert!(held.held > copy.held, "the client's path never filled up");
    assert_eq!(held.to_splice, copy.to_splice, "switched before any bulk");
    // Now bulk behind the held bytes: the direction switches to splice and everything still
    // arrives in order.
    let bulk = random_bytes(3 << 20, 99);
    sent.extend_from_slice(&bulk);
    let (_, got) = timeout(LIMIT, async {
        tokio::join!(
            async {
                server.write_all(&bulk).await.unwrap();
                server.shutdown().await.unwrap();
            },
            async {
                let mut got = Vec::new();
                client.read_to_end(&mut got).await.unwrap();
                got
            }
        )
    })
    .await
    .expect("transfer ends");
    assert!(got == sent, "bytes differ or are out of order");
    let now = relay::stats();
    assert!(now.to_splice > held.to_splice, "{now:?}");
    assert!(pipe::stats().splices > pipes.splices);
    client.shutdown().await.unwrap();
    let (outcome, c) = finish(s.relay).await;
    assert!(matches!(outcome, Outcome::Closed), "{outcome:?}");
    assert_eq!((c.c2s_bytes, c.s2c_bytes), (0, sent.len() as u64));
    assert_eq!(pipe::stats().outstanding(), pipes.outstanding());
}

/// Bulk from `from` to `to` until the relay holds a pipe full of it (`to` reads only
/// `peek` bytes), then `from` resets: `to` must see the reset.
async fn reset_in_splice_mode(narrow: Side) -> (Outcome, Counters, Vec<Event>) {
    let s = start_narrow(Some(narrow), RelayOpts::default(), None).await;
    let (mut from, mut to) = match narrow {
        Side::Client => (s.server, s.client),
        Side::Server => (s.client, s.server),
    };
    let pipes = pipe::stats();
    let bulk = random_bytes(4 << 20, 7);
    let mut head = vec![0u8; 64 * 1024];
    tokio::select! {
        r = from.write_all(&bulk) => panic!("4 MiB fit in a narrow path: {r:?}"),
        r = timeout(LIMIT, async {
            to.read_exact(&mut head).await.unwrap();
            // `to` stops reading: the relay ends up holding a pipe with bytes in it.
            wait_for("a held pipe", || pipe::stats().outstanding() > pipes.outstanding()).await;
        }) => r.expect("bulk moves"),
    }
    assert!(head == bulk[..head.len()], "head differs");
    assert!(relay::stats().to_splice >= 1);
    from.set_zero_linger().unwrap();
    drop(from);
    assert_eq!(
        read_until_end(&mut to).await,
        Some(ErrorKind::ConnectionReset)
    );
    let (outcome, c) = finish(s.relay).await;
    // The pipe that still held bytes was closed, not pooled.
    assert_eq!(pipe::stats().outstanding(), pipes.outstanding());
    (outcome, c, events(&s.log))
}

#[tokio::test]
async fn server_reset_in_splice_mode_reaches_the_client() {
    let (outcome, c, ev) = reset_in_splice_mode(Side::Client).await;
    assert!(matches!(outcome, Outcome::ServerReset), "{outcome:?}");
    assert!(c.s2c_bytes >= 64 * 1024 && c.c2s_bytes == 0, "{c:?}");
    assert_eq!(ev.last(), Some(&Event::ServerReset));
}

#[tokio::test]
async fn client_reset_in_splice_mode_reaches_the_server() {
    let (outcome, c, ev) = reset_in_splice_mode(Side::Server).await;
    assert!(matches!(outcome, Outcome::ClientReset), "{outcome:?}");
    assert!(c.c2s_bytes >= 64 * 1024 && c.s2c_bytes == 0, "{c:?}");
    assert_eq!(ev.last(), Some(&Event::ClientReset));
}

#[tokio::test]
async fn an_ipv6_connection_is_relayed() {
    let Ok(l) = TcpListener::bind("[::1]:0").await else {
        eprintln!("no IPv6 loopback here");
        return;
    };
    drop(l);
    let (client, relay_client) = connected("::1").await;
    let (server, relay_server) = connected("::1").await;
    let rec = Rec {
        log: Log::default(),
        abort_on: None,
    };
    let relay = tokio::spawn(async move {
        relay::run(relay_client, relay_server, &RelayOpts::default(), rec).await
    });
    let (a, b) = timeout(LIMIT, async {
        tokio::join!(
            send_and_drain(client, b"over v6"),
            send_and_drain(server, b"and back")
        )
    })
    .await
    .unwrap();
    assert_eq!(
        (a.as_slice(), b.as_slice()),
        (&b"and back"[..], &b"over v6"[..])
    );
    let (outcome, c) = finish(relay).await;
    assert!(matches!(outcome, Outcome::Closed), "{outcome:?}");
    assert_eq!((c.c2s_bytes, c.s2c_bytes), (7, 8));
}

#[test]
fn the_relay_future_is_send() {
    fn send<T: Send>(_: &T) {}
    // Only built, never polled: the type is what matters.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (_a, b) = connected("127.0.0.1").await;
        let (_c, d) = connected("127.0.0.1").await;
        let rec = Rec {
            log: Log::default(),
            abort_on: None,
        };
        let opts = RelayOpts::default();
        let fut = relay::run(b, d, &opts, rec);
        send(&fut);
    });
}
