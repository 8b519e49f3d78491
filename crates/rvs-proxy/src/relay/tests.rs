//! One direction of the relay driven in states the end-to-end tests cannot reach on purpose:
//! a switch to splice mode while bytes are still held from copy mode.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use tokio::time::Instant;

use super::{
    Counters, Event, Half, Mode, Observer, Outcome, Pump, Relay, RelayOpts, Side, Stop, Turn,
};
use crate::pipe;
use crate::reactor::Sock;

/// A connected pair: (the app's end, the relay's end).
async fn connected() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (relay_end, _) = l.accept().await.unwrap();
    (app, relay_end)
}

/// Pumps server → client until the direction ends (FIN sent) or stops; at most 20 s. No event
/// loop: both sockets are taken as ready before every round (a call that finds one empty
/// or full clears its flag, and the direction waits a millisecond).
async fn drive(half: &mut Half, src: TcpStream, dst: TcpStream) -> Result<(), Stop> {
    let mut src = Sock::new(src.into_std().unwrap());
    let mut dst = Sock::new(dst.into_std().unwrap());
    let pump = async {
        loop {
            src.readable = true;
            dst.writable = true;
            match half.pump(&mut src, &mut dst, Side::Server, false) {
                Ok(Pump::Ended) => return Ok(()),
                Ok(Pump::Busy) => tokio::task::yield_now().await,
                Ok(Pump::Blocked) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(stop) => return Err(stop),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), pump)
        .await
        .expect("the direction ends")
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ salt).collect()
}

/// A direction that just switched to `mode` with `held` bytes not yet sent.
fn switched(mode: Mode, held: &[u8]) -> Half {
    let mut half = Half::new();
    half.mode = mode;
    half.held = held.to_vec();
    half
}

#[tokio::test]
async fn held_bytes_go_out_before_spliced_ones_then_fin() {
    let (mut server, relay_server) = connected().await;
    let (mut client, relay_client) = connected().await;
    let held = pattern(3000, 1);
    let rest = pattern(300 * 1024, 2);
    let splices = pipe::stats().splices;
    let mut half = switched(Mode::Splice, &held);
    let (_, r, got) = tokio::join!(
        async {
            server.write_all(&rest).await.unwrap();
            server.shutdown().await.unwrap();
        },
        drive(&mut half, relay_server, relay_client),
        async {
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        }
    );
    r.unwrap();
    assert_eq!(got.len(), held.len() + rest.len());
    assert!(got[..held.len()] == held[..], "held bytes first");
    assert!(got[held.len()..] == rest[..], "then the source's, in order");
    assert_eq!(half.bytes, got.len() as u64);
    assert!(
        half.held.is_empty() && half.held.capacity() == 0,
        "held buffer freed"
    );
    assert!(pipe::stats().splices > splices, "the rest was spliced");
}

#[tokio::test]
async fn held_bytes_then_eof_in_copy_mode() {
    let (mut server, relay_server) = connected().await;
    let (mut client, relay_client) = connected().await;
    let held = pattern(5000, 3);
    let mut half = switched(Mode::Copy, &held);
    server.shutdown().await.unwrap();
    let (r, got) = tokio::join!(drive(&mut half, relay_server, relay_client), async {
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        got
    });
    r.unwrap();
    assert!(got == held, "held bytes, then FIN");
}

#[tokio::test]
async fn held_bytes_to_a_reset_destination_blame_it() {
    let (_server, relay_server) = connected().await;
    let (client, relay_client) = connected().await;
    client.set_zero_linger().unwrap();
    drop(client);
    let mut half = switched(Mode::Splice, &pattern(4000, 4));
    // On loopback the RST is in before the close returns: the first send meets it.
    let r = drive(&mut half, relay_server, relay_client).await;
    assert!(matches!(r, Err(Stop::Reset(Side::Client))), "{r:?}");
}

/// An observer that ends the relay at its first event.
struct EndAtOnce;

impl Observer for EndAtOnce {
    fn event(&mut self, _ev: Event, _c: &Counters) -> bool {
        false
    }
}

/// A relay that must end while a send of the other direction is posted ends once that
/// send's result is in, and its final counters have the bytes.
#[tokio::test]
async fn the_end_waits_for_a_posted_send() {
    let (_client_app, relay_client) = connected().await;
    let (mut server_app, relay_server) = connected().await;
    let opts = RelayOpts {
        report_every: Duration::ZERO,
        idle: Duration::ZERO,
    };
    let now = Instant::now();
    let mut relay = Relay::new(
        Sock::new(relay_client.into_std().unwrap()),
        Sock::new(relay_server.into_std().unwrap()),
        &opts,
        EndAtOnce,
        now,
    );
    // five bytes to the server, their send posted and not made yet
    relay.c2s.held = b"hello".to_vec();
    relay.c2s.posted = true;
    // the server's answer moves; its Progress report ends the relay
    server_app.write_all(b"answer").await.unwrap();
    server_app.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    relay.server.readable = true;
    relay.client.writable = true;
    assert!(
        matches!(relay.turn(now), Turn::Wait),
        "the end waits for the send's result"
    );
    relay.sent(Side::Server, 5);
    let end = relay.turn(now);
    assert!(matches!(end, Turn::End(Outcome::Aborted)), "{end:?}");
    let c = relay.counters();
    assert_eq!((c.c2s_bytes, c.s2c_bytes), (5, 6));
}
