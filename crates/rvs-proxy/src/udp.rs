//! UDP: datagrams to a virtual service are scheduled by the core (the first of a flow, or
//! every one with one-packet scheduling) and sent to the real server from a socket of their
//! own per (client, real server), whose replies go back to the client from the virtual
//! address. The core's entry is the session: it lives for the udp timeout after the last
//! datagram, and a flow whose entry expired is scheduled afresh.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rvs_core::datapath::{Packet, Verdict};
use rvs_core::model::{Forward, ProxyProtocol};
use tokio::net::UdpSocket;

use crate::{proxy_header, Ctx, Listen};

/// Largest datagram relayed (the IPv4/IPv6 UDP payload limit).
const MAX_DATAGRAM: usize = 65535;

/// One upstream socket: a client's flow to one real server.
struct Flow {
    up: UdpSocket,
    /// its share of the descriptor budget
    _permit: tokio::sync::OwnedSemaphorePermit,
    /// engine time (ms) of the last datagram either way
    last: AtomicU64,
}

thread_local! {
    static REPLY_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; MAX_DATAGRAM]);
}

type Flows = Arc<Mutex<HashMap<(SocketAddr, SocketAddr), Arc<Flow>>>>;

/// IP + UDP header bytes.
fn header_len(addr: &SocketAddr) -> u32 {
    if addr.is_ipv4() {
        28
    } else {
        48
    }
}

/// Serve one UDP virtual service socket until the task is cancelled. Its flows end with it:
/// they reply through this socket, which must not outlive the service (a socket left in the
/// SO_REUSEPORT group would receive datagrams nobody reads).
pub(crate) async fn serve(sock: UdpSocket, key: Listen, ctx: Arc<Ctx>) {
    let sock = Arc::new(sock);
    let flows: Flows = Arc::new(Mutex::new(HashMap::new()));
    let mut tasks = tokio::task::JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut hdr = Vec::with_capacity(64);
    loop {
        let (n, client) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    if ctx.may_warn() {
                        tracing::warn!(addr = %key.addr, "udp receive: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let vip = key.addr;
        let pkt = Packet::udp(client.ip(), client.port(), vip.ip(), vip.port())
            .len(n as u32 + header_len(&vip));
        let now = ctx.core.now();
        let (verdict, pp) = {
            let mut ipvs = ctx.core.lock();
            let v = ipvs.packet_in_with_payload(&pkt, &buf[..n], now);
            let pp = match v {
                Verdict::Forward(f) => ipvs.dest(f.dest).map(|d| d.proxy_protocol),
                _ => None,
            };
            (v, pp)
        };
        let Verdict::Forward(fw) = verdict else {
            continue; // no real server (the kernel answers ICMP unreachable), or dropped
        };
        let rs = SocketAddr::new(fw.daddr, fw.dport);
        let flow = match flow_for(&flows, client, rs, &ctx) {
            Ok((flow, new)) => {
                if new {
                    let nat = fw.fwd == Forward::Masq;
                    let (f, s, fl, c) = (flow.clone(), sock.clone(), flows.clone(), ctx.clone());
                    tasks.spawn(flow_task(f, s, fl, (client, rs), nat, c));
                }
                flow
            }
            Err(e) => {
                if ctx.may_warn() {
                    tracing::warn!(real_server = %rs, "udp socket: {e}; datagram dropped");
                }
                continue;
            }
        };
        flow.last.store(now.as_millis(), Ordering::Relaxed);
        // a full socket buffer drops the datagram, as a full queue would (sent straight with
        // the syscall: tokio's try_send would refuse a socket it has not yet seen writable)
        let up = socket2::SockRef::from(&flow.up);
        if pp == Some(ProxyProtocol::V2) {
            // PROXY protocol v2 (DGRAM) in front of every datagram: the real server learns
            // the client of each one; v1 has no form for UDP
            hdr.clear();
            proxy_header::encode_udp_v2(client, vip, &mut hdr);
            let _ = up.send_vectored(&[IoSlice::new(&hdr), IoSlice::new(&buf[..n])]);
        } else {
            let _ = up.send(&buf[..n]);
        }
    }
}

/// The flow of (client, real server), made if new (`true`).
fn flow_for(
    flows: &Flows,
    client: SocketAddr,
    rs: SocketAddr,
    ctx: &Ctx,
) -> std::io::Result<(Arc<Flow>, bool)> {
    let mut map = flows.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = map.get(&(client, rs)) {
        return Ok((f.clone(), false));
    }
    let permit = ctx
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| std::io::Error::other("connection limit reached"))?;
    let any: SocketAddr = if rs.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let std = std::net::UdpSocket::bind(any)?;
    std.set_nonblocking(true)?;
    std.connect(rs)?;
    let flow = Arc::new(Flow {
        up: UdpSocket::from_std(std)?,
        _permit: permit,
        last: AtomicU64::new(ctx.core.now().as_millis()),
    });
    map.insert((client, rs), flow.clone());
    Ok((flow, true))
}

/// Relay the real server's replies to the client (from the virtual address), and end the
/// flow once it has been idle for the udp timeout (the core's entry has then expired too, or
/// will, and the next datagram is scheduled afresh).
async fn flow_task(
    flow: Arc<Flow>,
    sock: Arc<UdpSocket>,
    flows: Flows,
    (client, rs): (SocketAddr, SocketAddr),
    nat: bool,
    ctx: Arc<Ctx>,
) {
    loop {
        let idle_ms = ctx.core.lock().timeouts().2.max(1) * 1000;
        let last = flow.last.load(Ordering::Relaxed);
        let now = ctx.core.now().as_millis();
        if now >= last + idle_ms {
            break;
        }
        let wait = Duration::from_millis(last + idle_ms - now);
        tokio::select! {
            r = flow.up.readable() => if r.is_err() { continue },
            () = tokio::time::sleep(wait) => continue,
        }
        // drain what is queued through one per-thread buffer: a flow holds no buffer of its own
        REPLY_BUF.with_borrow_mut(|buf| {
            for _ in 0..64 {
                match flow.up.try_recv(buf) {
                    Ok(n) => reply(&flow, &sock, &buf[..n], (client, rs), nat, &ctx),
                    // ICMP errors from the real server (port unreachable…) surface here
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => break,
                }
            }
        });
    }
    flows
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&(client, rs));
}

/// One reply datagram: counted as the real server's packet (NAT only: the kernel sees no
/// other) and sent to the client from the virtual address.
fn reply(
    flow: &Flow,
    sock: &UdpSocket,
    data: &[u8],
    (client, rs): (SocketAddr, SocketAddr),
    nat: bool,
    ctx: &Ctx,
) {
    let now = ctx.core.now();
    flow.last.store(now.as_millis(), Ordering::Relaxed);
    if nat {
        let pkt = Packet::udp(rs.ip(), rs.port(), client.ip(), client.port())
            .len(data.len() as u32 + header_len(&rs));
        ctx.core.lock().packet_out_with_payload(&pkt, data, now);
    }
    let _ = socket2::SockRef::from(sock).send_to(data, &client.into());
}
