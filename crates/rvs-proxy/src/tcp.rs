//! TCP: accept, schedule through the core, connect to the real server, relay.
//!
//! The core sees the connection as the kernel would see its packets: the accepted connection
//! is a SYN to the virtual service (scheduling, Conns and InPkts count it); a NAT real server's
//! answer is its SYN+ACK (an output packet), then the client's ACK makes the entry ESTABLISHED.
//! Afterwards the relay reports FINs and RSTs as state signals and traffic in batches
//! (TCP_INFO segment counts, exact payload bytes plus the headers those segments carried).
//! Real servers reached by direct routing or tunnelling never show their packets to the
//! kernel, so only the client's side is reported for them (the kernel's input-only states).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rvs_core::conn::{ConnId, Direction, PacketInfo};
use rvs_core::datapath::{ConnKey, Forwarding, Liveness, Packet, TcpFlags, Verdict};
use rvs_core::dest::DestId;
use rvs_core::model::{Forward, Protocol, ProxyProtocol};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::reactor::{self, Job, Side, Sock, Step};
use crate::relay::{Counters, Event, Observer, Outcome, Relay, RelayOpts, Turn};
use crate::steer::Steer;
use crate::{proxy_header, Ctx, DestEventKind, Listen};

/// Accept connections until the task is cancelled (on worker `me`). A connection is accepted
/// only with a permit of the descriptor budget (see [`crate::limits`]): at the budget, new
/// connections wait in the listen backlog and nothing spins. Should the process still run out
/// of file descriptors (or the kernel out of memory), accept backs off, doubling from 10 ms
/// to 1 s. Each accepted connection becomes a [`Session`] in the TCP event loop of this
/// worker: the kernel chose the worker when `steer` is set (see [`crate::steer`]). Without
/// it, the connection goes to the worker with the fewest connections when this one holds at
/// least [`HANDOFF_MARGIN`] more (see [`pick`]).
pub(crate) async fn accept_loop(
    l: AsyncFd<TcpListener>,
    key: Listen,
    steer: Option<Arc<Steer>>,
    ctx: Arc<Ctx>,
    me: usize,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = match ctx.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if ctx.may_warn() {
                    tracing::warn!(
                        addr = %key.addr,
                        "connection limit reached: new connections wait in the backlog"
                    );
                }
                match ctx.slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                }
            }
        };
        match accept(&l).await {
            Ok((client, peer)) => {
                backoff = Duration::from_millis(10);
                let target = match &steer {
                    Some(_) => me,
                    None => pick(ctx.loads.get(), me),
                };
                let conn = Accepted {
                    client,
                    peer,
                    vip: key.addr,
                    permit,
                    open: Open::new(&ctx, target),
                };
                // counted as held before it stops counting as pending (and the program reads
                // pending first): the program never sees this worker lighter than it is
                if let Some(s) = &steer {
                    s.accepted(me);
                }
                if target == me {
                    start(conn, &ctx);
                } else if let Err(back) = ctx.handoff[target].send(conn) {
                    // that worker is gone (the data plane is stopping): kept here
                    let mut conn = back.0;
                    conn.open = Open::new(&ctx, me);
                    start(conn, &ctx);
                }
            }
            Err(e) => {
                let scarce = crate::scarce(&e);
                if e.raw_os_error() == Some(libc::ECONNABORTED) {
                    // taken from the queue, reset before it was: it was counted all the same
                    if let Some(s) = &steer {
                        s.accepted(me);
                    }
                    continue;
                }
                if ctx.may_warn() {
                    tracing::warn!(addr = %key.addr, "accept: {e}; backing off {backoff:?}");
                }
                tokio::time::sleep(backoff).await;
                if scarce {
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// The next connection of a listener (non-blocking, close-on-exec, not registered with tokio).
async fn accept(l: &AsyncFd<TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    loop {
        let mut ready = l.readable().await?;
        match ready.try_io(|l| reactor::accept(l.get_ref())) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

/// How many more connections than the least loaded worker a worker must hold before it
/// hands a new one over, on listeners the kernel does not steer (see [`crate::Dataplane::steered`]).
///
/// SO_REUSEPORT spreads connections over the workers' listeners by a hash of their
/// addresses, which is even only on average: 64 connections over two workers leave the two
/// 6 apart on average, 12 or more one time in ten. With long-lived connections the busier
/// worker stays so for as long as they last, and its connections wait longer. A worker that
/// accepts while it holds this many connections more than another passes the connection to
/// that worker (as HAProxy's threads pass accepted connections to the least loaded thread),
/// so no worker gets more than this many ahead of another. A hand-off costs a wake-up of the
/// other worker: with 2 the counts stay closest, but under a stream of short connections
/// (whose counts swing by a few all the time) the wake-ups cost about 3% of the new
/// connections per second on two workers; with 4 the cost was lost in the noise, and the
/// p99 latency of keep-alive requests fell from 2.2 to 1.8 ms (bench setup, two workers).
pub const HANDOFF_MARGIN: usize = 4;

/// The worker that takes a connection accepted by worker `me`: `me`, unless another holds at
/// least [`HANDOFF_MARGIN`] fewer connections (then the least loaded, the first of equals).
fn pick(loads: &[AtomicU32], me: usize) -> usize {
    let mine = loads[me].load(Ordering::Relaxed);
    let mut best = (mine, me);
    for (i, l) in loads.iter().enumerate() {
        let n = l.load(Ordering::Relaxed);
        if n < best.0 {
            best = (n, i);
        }
    }
    if best.0 as usize + HANDOFF_MARGIN <= mine as usize {
        best.1
    } else {
        me
    }
}

/// A connection accepted by one worker and started by it or by the worker it hands it to.
pub(crate) struct Accepted {
    client: TcpStream,
    peer: SocketAddr,
    /// the listener's address
    vip: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
    open: Open,
}

/// Starts the connections other workers hand this one, until the runtime stops.
pub(crate) async fn adopt_loop(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Accepted>,
    ctx: Arc<Ctx>,
) {
    while let Some(conn) = rx.recv().await {
        start(conn, &ctx);
    }
}

/// Counts a relayed connection for the drain on SIGTERM and for its worker's load.
struct Open {
    ctx: Arc<Ctx>,
    worker: usize,
}

impl Open {
    fn new(ctx: &Arc<Ctx>, worker: usize) -> Open {
        ctx.sessions.fetch_add(1, Ordering::SeqCst);
        ctx.loads.get()[worker].fetch_add(1, Ordering::Relaxed);
        Open {
            ctx: ctx.clone(),
            worker,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.ctx.loads.get()[self.worker].fetch_sub(1, Ordering::Relaxed);
        self.ctx.sessions.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Close with a reset (SO_LINGER 0) rather than a FIN.
fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
}

/// `tcpi_segs_in` of an accepted socket right after the handshake (SYN, ACK).
const HANDSHAKE_SEGS_ACCEPTED: u64 = 2;
/// `tcpi_segs_in` of a connected socket right after the handshake (SYN+ACK).
const HANDSHAKE_SEGS_CONNECTED: u64 = 1;

/// IP + TCP header bytes of a segment (timestamps on when negotiated).
fn header_len(ip: &IpAddr, timestamps: bool) -> u64 {
    let ip = if ip.is_ipv4() { 20 } else { 40 };
    ip + 20 + if timestamps { 12 } else { 0 }
}

/// Schedules a new connection and starts connecting to the chosen real server; the rest is
/// the [`Session`]'s, in the thread's TCP event loop. When the connect is already over (see
/// [`QuickConnects`]), the session's first turn runs here, before the loop's other work: a
/// request that came with the handshake reaches the real server at once instead of after
/// the rest of the accept burst and a pass of the loop (with one worker, real servers on
/// loopback and `Connection: close`, that wait had a median of 0.5–1 ms).
fn start(conn: Accepted, ctx: &Arc<Ctx>) {
    let Accepted {
        client,
        peer,
        vip,
        permit,
        open,
    } = conn;
    // The listener is bound to the virtual address itself, so that is the local address
    // (no getsockname per connection); only a wildcard or port 0 would need to ask.
    let local = if vip.ip().is_unspecified() || vip.port() == 0 {
        match client.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        }
    } else {
        vip
    };
    let key = ConnKey {
        proto: Protocol::Tcp,
        client: (peer.ip(), peer.port()),
        vip: (local.ip(), local.port()),
    };
    let syn_len = header_len(&local.ip(), true) as u32 + 8; // MSS, SACK, window scale
    let syn = Packet::tcp(
        peer.ip(),
        peer.port(),
        local.ip(),
        local.port(),
        TcpFlags::SYN,
    )
    .len(syn_len);
    let (fw, pp) = {
        let mut ipvs = ctx.core.lock();
        match ipvs.packet_in(&syn, ctx.core.now()) {
            Verdict::Forward(f) => {
                let pp = ipvs
                    .dest(f.dest)
                    .map_or(ProxyProtocol::None, |d| d.proxy_protocol);
                (f, pp)
            }
            // no real server available (the kernel answers ICMP port unreachable, which a
            // client's connect reports as refused), or the table is full
            _ => return reset(client),
        }
    };
    let Some(id) = fw.conn else {
        return; // no entry to follow (cannot happen for TCP: one-packet scheduling is UDP's)
    };
    // TCP_NODELAY: the accepted socket inherits it from the listener
    let target = SocketAddr::new(fw.daddr, fw.dport);
    let server = match connect(target) {
        Ok(s) => s,
        Err(e) => {
            ctx.opts.event(local, target, DestEventKind::ConnectFailure);
            return refused(ctx, &fw, &key, target, e, client);
        }
    };
    let now = Instant::now();
    let mut client = Sock::new(client);
    let mut server = Sock::new(server);
    // a real server on this host has usually finished the handshake already: then the
    // request waiting on the client socket goes out now, not after the worker's other work
    let finished = QUICK.with(|q| {
        let mut q = q.borrow_mut();
        let look = q.should_look(target);
        look && {
            let finished = reactor::look(&mut client, &mut server);
            q.looked(target, finished);
            finished
        }
    });
    let session = Box::new(Session {
        ctx: ctx.clone(),
        id,
        key,
        fw,
        pp,
        peer,
        local,
        target,
        paused: false,
        recheck: now,
        phase: Phase::Connecting {
            client,
            server,
            deadline: now + ctx.opts.connect_timeout,
        },
        _open: open,
        _permit: permit,
    });
    let added = if finished {
        reactor::run_then_add(session, now).map(|_| ())
    } else {
        reactor::add(session).map(|_| ())
    };
    if let Err(e) = added {
        if ctx.may_warn() {
            tracing::warn!(client = %peer, "cannot follow the connection: {e}; client reset");
        }
    }
}

/// How often [`QuickConnects`] looks again at a real server whose last connect was not over
/// when `connect()` returned: once in this many connects.
const LOOK_AGAIN_EVERY: u8 = 16;

thread_local! {
    static QUICK: RefCell<QuickConnects> = RefCell::new(QuickConnects::default());
}

/// Which real servers' connects are over when `connect()` returns, as last seen by this
/// thread. For one on the same host (loopback, or an address of this host) the kernel
/// usually runs the whole handshake inside the call, and a `poll` right after it lets the
/// connection's first turn run at once. For one across a network the SYN is still on its
/// way: the `poll` would find nothing, so it is made only once in [`LOOK_AGAIN_EVERY`]
/// connects after a miss (a server that moves is found again within that many).
#[derive(Debug, Default)]
struct QuickConnects {
    /// connects left to skip before looking again, per real server
    skip: HashMap<SocketAddr, u8>,
}

/// Real servers [`QuickConnects`] remembers; past that it forgets them all and learns again.
const QUICK_MAX: usize = 4096;

impl QuickConnects {
    /// Whether to look at this connect to `target`.
    fn should_look(&mut self, target: SocketAddr) -> bool {
        match self.skip.get_mut(&target) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        }
    }

    /// What the look at a connect to `target` found: over (`finished`) or not.
    fn looked(&mut self, target: SocketAddr, finished: bool) {
        if finished {
            // the common case on a host whose servers are local: nothing to remember
            self.skip.remove(&target);
            return;
        }
        if self.skip.len() >= QUICK_MAX {
            self.skip.clear();
        }
        self.skip.insert(target, LOOK_AGAIN_EVERY - 1);
    }
}

/// One proxied TCP connection: connecting to the real server, then relaying.
struct Session {
    ctx: Arc<Ctx>,
    id: ConnId,
    key: ConnKey,
    fw: Forwarding,
    pp: ProxyProtocol,
    peer: SocketAddr,
    local: SocketAddr,
    target: SocketAddr,
    /// The real server is unavailable: no byte moves (the sockets' buffers and TCP flow
    /// control hold what arrives) until it is back; the entry is looked at every second.
    paused: bool,
    /// When a paused session looks at its entry again.
    recheck: Instant,
    phase: Phase,
    _open: Open,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

enum Phase {
    /// The connect to the real server is under way.
    Connecting {
        client: Sock,
        server: Sock,
        deadline: Instant,
    },
    Relaying(Box<Relay<Track>>),
    /// Swapped in while changing phase.
    Over,
}

impl Session {
    /// The connect failed or timed out: count it, reset the client.
    fn failed(&mut self, e: io::Error) -> Step {
        let Phase::Connecting { client, .. } = &self.phase else {
            return Step::Done;
        };
        client.reset_on_close();
        let ctx = &self.ctx;
        ctx.opts
            .event(self.local, self.target, DestEventKind::ConnectFailure);
        count_refused(ctx, &self.fw, &self.key, self.target, e);
        Step::Done
    }

    /// Connected: the handshake reaches the core and the relay takes over (the PROXY header,
    /// if the real server wants one, goes first).
    fn connected(&mut self, now: Instant) {
        let Phase::Connecting { client, server, .. } =
            std::mem::replace(&mut self.phase, Phase::Over)
        else {
            return;
        };
        let nat = self.fw.fwd == Forward::Masq;
        handshake(&self.ctx, &self.key, &self.fw, self.target, nat);
        // Counted from here on: the handshake went through packet_in/packet_out above. Its
        // segments are also in the sockets' TCP_INFO counters, so they start from what a
        // handshake leaves there: the accepted socket has received the SYN and the ACK, the
        // connected one the SYN+ACK. (Reading TCP_INFO here instead would cost two syscalls
        // per connection and miss a request that arrived in the meantime.)
        let track = Track {
            ctx: self.ctx.clone(),
            id: self.id,
            key: self.key,
            nat,
            rs: self.target.ip(),
            seen: Counters {
                client_segs_in: HANDSHAKE_SEGS_ACCEPTED,
                server_segs_in: HANDSHAKE_SEGS_CONNECTED,
                ..Counters::default()
            },
            client_first: None,
        };
        let opts = RelayOpts {
            report_every: self.ctx.opts.report_every,
            idle: Duration::from_secs(60),
        };
        let mut relay = Relay::new(client, server, &opts, track, now);
        if let Some(v) = proxy_version(self.pp) {
            let mut hdr = Vec::with_capacity(64);
            proxy_header::encode(v, self.peer, self.local, &mut hdr);
            relay.server_first(hdr);
        }
        self.phase = Phase::Relaying(Box::new(relay));
    }

    /// A paused session at its recheck: true when its server is back.
    fn resume(&mut self, now: Instant) -> Option<Step> {
        if now < self.recheck {
            return Some(Step::Wait);
        }
        let liveness = self.ctx.core.lock().conn_liveness(self.id, &self.key);
        match liveness {
            Liveness::Live => {
                self.paused = false;
                None
            }
            Liveness::Gone => {
                // the entry ended while paused: both sockets close with a reset
                self.sock(Side::Client).reset_on_close();
                self.sock(Side::Server).reset_on_close();
                Some(Step::Done)
            }
            Liveness::DestUnavailable => {
                self.recheck = now + PAUSE_RECHECK;
                Some(Step::Wait)
            }
        }
    }
}

/// How often a paused session looks whether its entry expired.
const PAUSE_RECHECK: Duration = Duration::from_secs(1);

impl Job for Session {
    fn run(&mut self, now: Instant) -> Step {
        if let Phase::Connecting {
            server, deadline, ..
        } = &mut self.phase
        {
            // The outcome is read from the readiness of the connecting socket: writable
            // without an error is connected, an error (refused, unreachable) comes with
            // EPOLLERR and is fetched then only, so a successful connect costs no SO_ERROR
            // query.
            if server.error || server.write_closed {
                let e = match server.take_error() {
                    Ok(Some(e)) | Err(e) => e,
                    Ok(None) => io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        "connection closed while connecting",
                    ),
                };
                return self.failed(e);
            }
            if !server.can_write() {
                if now >= *deadline {
                    let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                    return self.failed(e);
                }
                return Step::Wait;
            }
            self.connected(now);
        }
        if self.paused {
            if let Some(step) = self.resume(now) {
                return step;
            }
        }
        let Phase::Relaying(relay) = &mut self.phase else {
            return Step::Done;
        };
        match relay.turn(now) {
            Turn::Wait => Step::Wait,
            Turn::Again => Step::Again,
            Turn::End(outcome) => {
                let kind = match outcome {
                    Outcome::ServerReset => DestEventKind::Reset,
                    _ => DestEventKind::Success,
                };
                self.ctx.opts.event(self.local, self.target, kind);
                if let Outcome::Error(e) = outcome {
                    tracing::debug!(client = %self.peer, "relay: {e}");
                }
                Step::Done
            }
        }
    }

    fn sock(&mut self, side: Side) -> &mut Sock {
        match &mut self.phase {
            Phase::Connecting { client, server, .. } => match side {
                Side::Client => client,
                Side::Server => server,
            },
            Phase::Relaying(relay) => relay.sock(side),
            Phase::Over => unreachable!("a session is over only while changing phase"),
        }
    }

    fn sent(&mut self, side: Side, result: i32) {
        if let Phase::Relaying(relay) = &mut self.phase {
            relay.sent(side, result);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Connecting { deadline, .. } => Some(*deadline),
            Phase::Relaying(_) if self.paused => Some(self.recheck),
            Phase::Relaying(relay) => Some(relay.deadline()),
            Phase::Over => None,
        }
    }

    fn dest(&self) -> Option<DestId> {
        Some(self.fw.dest)
    }

    fn abandon(&mut self) {
        // the core saw the SYN: its entry hears the client's reset instead of waiting out
        // its timeout
        let now = self.ctx.core.now();
        let rst = PacketInfo::Tcp(TcpFlags::RST);
        self.ctx
            .core
            .lock()
            .conn_signal(self.id, &self.key, Direction::Input, rst, now);
    }

    fn set_paused(&mut self, paused: bool, now: Instant) {
        // a session told to go on looks at its entry at once
        self.paused = true;
        self.recheck = if paused { now + PAUSE_RECHECK } else { now };
    }
}

fn proxy_version(pp: ProxyProtocol) -> Option<proxy_header::Version> {
    match pp {
        ProxyProtocol::None => None,
        ProxyProtocol::V1 => Some(proxy_header::Version::V1),
        ProxyProtocol::V2 => Some(proxy_header::Version::V2),
    }
}

/// Starts a non-blocking connect to a real server (TCP_NODELAY set); the event loop sees
/// how it ends, or [`reactor::look`] right away when it is already over.
pub(crate) fn connect(target: SocketAddr) -> io::Result<TcpStream> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM.nonblocking().cloexec(),
        Some(socket2::Protocol::TCP),
    )?;
    sock.set_nodelay(true)?;
    match sock.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(sock.into())
}

/// The real server answered: its SYN+ACK (seen by the director with NAT only), then the
/// client's ACK.
fn handshake(ctx: &Ctx, key: &ConnKey, fw: &Forwarding, target: SocketAddr, nat: bool) {
    let now = ctx.core.now();
    let (c, v) = (key.client, key.vip);
    let mut ipvs = ctx.core.lock();
    if nat {
        let len = header_len(&target.ip(), true) as u32 + 8;
        let synack = Packet::tcp(fw.daddr, fw.dport, c.0, c.1, TcpFlags::SYN_ACK).len(len);
        ipvs.packet_out(&synack, now);
    }
    let ack = Packet::tcp(c.0, c.1, v.0, v.1, TcpFlags::ACK).len(header_len(&v.0, true) as u32);
    ipvs.packet_in(&ack, now);
}

/// The real server refused at once: count it, let the entry see the server's reset (NAT),
/// and reset the client.
fn refused(
    ctx: &Ctx,
    fw: &Forwarding,
    key: &ConnKey,
    target: SocketAddr,
    e: io::Error,
    client: TcpStream,
) {
    count_refused(ctx, fw, key, target, e);
    reset(client);
}

/// A connect that failed (refused, unreachable, timed out): counted, warned about, and the
/// entry sees the server's reset (NAT).
fn count_refused(ctx: &Ctx, fw: &Forwarding, key: &ConnKey, target: SocketAddr, e: io::Error) {
    *ctx.connect_failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(target)
        .or_insert(0) += 1;
    if ctx.may_warn() {
        tracing::warn!(real_server = %target, "connect: {e}; client reset");
    }
    if let (Some(id), Forward::Masq) = (fw.conn, fw.fwd) {
        let now = ctx.core.now();
        let rst = PacketInfo::Tcp(TcpFlags::RST);
        ctx.core
            .lock()
            .conn_signal(id, key, Direction::Output, rst, now);
    }
}

/// Follows a relayed connection in the core.
struct Track {
    ctx: Arc<Ctx>,
    id: ConnId,
    key: ConnKey,
    /// the real server's packets pass the director (NAT)
    nat: bool,
    /// the real server's address (its family sizes the headers of its segments)
    rs: IpAddr,
    /// what was reported so far
    seen: Counters,
    /// which side closed first (decides who sends the last ACK)
    client_first: Option<bool>,
}

impl Track {
    /// Report the traffic since the last call and the segment `signal` (when the kernel would
    /// see it), under one lock; whether the entry still forwards.
    fn report(&mut self, c: &Counters, signal: Option<(Direction, TcpFlags)>) -> Liveness {
        let now = self.ctx.core.now();
        // segment counts move only when the relay read TCP_INFO (FIN events repeat the last
        // reading), and then the timestamp flags of that reading are known too
        let s = &mut self.seen;
        let in_pkts = c.client_segs_in.saturating_sub(s.client_segs_in);
        let hdr_in = header_len(&self.key.vip.0, c.client_timestamps);
        let in_bytes = c.c2s_bytes.saturating_sub(s.c2s_bytes) + in_pkts * hdr_in;
        let out_pkts = c.server_segs_in.saturating_sub(s.server_segs_in);
        let hdr_out = header_len(&self.rs, c.server_timestamps);
        let out_bytes = c.s2c_bytes.saturating_sub(s.s2c_bytes) + out_pkts * hdr_out;
        s.client_segs_in = s.client_segs_in.max(c.client_segs_in);
        s.server_segs_in = s.server_segs_in.max(c.server_segs_in);
        (s.c2s_bytes, s.s2c_bytes) = (c.c2s_bytes, c.s2c_bytes);
        let (id, key) = (self.id, &self.key);
        let mut ipvs = self.ctx.core.lock();
        let live = ipvs.conn_traffic(id, key, Direction::Input, in_pkts, in_bytes, now);
        if live != Liveness::Live {
            return live;
        }
        if self.nat {
            ipvs.conn_traffic(id, key, Direction::Output, out_pkts, out_bytes, now);
        }
        match signal {
            // the kernel never sees a DR/TUN real server's segments
            Some((Direction::Output, _)) if !self.nat => live,
            Some((dir, flags)) => ipvs.conn_signal(id, key, dir, PacketInfo::Tcp(flags), now),
            None => live,
        }
    }
}

impl Observer for Track {
    fn event(&mut self, ev: Event, c: &Counters) -> bool {
        let signal = match ev {
            Event::Progress | Event::Idle => None,
            Event::ClientEof => {
                self.client_first.get_or_insert(true);
                Some((Direction::Input, TcpFlags::FIN_ACK))
            }
            Event::ServerEof => {
                self.client_first.get_or_insert(false);
                Some((Direction::Output, TcpFlags::FIN_ACK))
            }
            Event::ClientReset => Some((Direction::Input, TcpFlags::RST)),
            Event::ServerReset => Some((Direction::Output, TcpFlags::RST)),
            // the side that closed first acknowledges the other's FIN last
            Event::Done if self.client_first == Some(false) => {
                Some((Direction::Output, TcpFlags::ACK))
            }
            Event::Done => Some((Direction::Input, TcpFlags::ACK)),
        };
        // the kernel drops the packets of a connection whose entry is gone or whose real
        // server was removed: the relay resets both sides rather than relay what IPVS would not
        self.report(c, signal) == Liveness::Live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real server whose connects finish inside `connect()` is looked at every time; one
    /// whose connects do not, once in LOOK_AGAIN_EVERY connects, until one finishes again.
    #[test]
    fn quick_connects_look_again_only_now_and_then_after_a_miss() {
        let local: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:80".parse().unwrap();
        let mut q = QuickConnects::default();
        for _ in 0..40 {
            assert!(q.should_look(local));
            q.looked(local, true);
        }
        assert!(q.should_look(remote), "a server never seen is looked at");
        q.looked(remote, false);
        // after each miss: exactly LOOK_AGAIN_EVERY - 1 connects without a look, then one
        for _ in 0..4 {
            for i in 1..LOOK_AGAIN_EVERY {
                assert!(
                    !q.should_look(remote),
                    "connect {i} after a miss is not looked at"
                );
            }
            assert!(
                q.should_look(remote),
                "connect {LOOK_AGAIN_EVERY} after a miss is"
            );
            q.looked(remote, false);
        }
        // it moved to this host: the next look finds the connect over, and from then on
        // every connect is looked at
        let next_look = (1..=LOOK_AGAIN_EVERY).find(|_| q.should_look(remote));
        assert_eq!(next_look, Some(LOOK_AGAIN_EVERY));
        q.looked(remote, true);
        assert!((0..10).all(|_| q.should_look(remote)));
        // the other server's record is its own
        assert!(q.should_look(local));
    }

    /// What QuickConnects keeps is bounded by QUICK_MAX real servers.
    #[test]
    fn quick_connects_forget_past_their_bound() {
        let mut q = QuickConnects::default();
        for i in 0..(QUICK_MAX as u32 + 10) {
            let a = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i)), 80);
            q.looked(a, false);
            assert!(q.skip.len() <= QUICK_MAX);
        }
    }

    fn loads(v: &[usize]) -> Vec<AtomicU32> {
        v.iter().map(|&n| AtomicU32::new(n as u32)).collect()
    }

    #[test]
    fn a_worker_hands_over_only_when_far_enough_ahead() {
        let m = HANDOFF_MARGIN;
        assert_eq!(pick(&loads(&[0]), 0), 0, "one worker keeps everything");
        assert_eq!(pick(&loads(&[m - 1, 0]), 0), 0);
        assert_eq!(pick(&loads(&[m, 0]), 0), 1);
        assert_eq!(pick(&loads(&[0, m]), 1), 0);
        // the least loaded, the first of equals
        assert_eq!(pick(&loads(&[10 + m, 12, 10, 10]), 0), 2);
        assert_eq!(pick(&loads(&[7, 3 + m, 3, 5]), 1), 2);
        // within the margin of the least loaded, a worker keeps its connection, however busy
        // the others are
        assert_eq!(pick(&loads(&[10 + m - 1, 10, 30]), 0), 0);
        assert_eq!(pick(&loads(&[10 + m, 10, 30]), 0), 1);
    }

    #[test]
    fn picks_keep_workers_within_the_margin() {
        // every connection lands on the busiest listener (the worst hash): still within
        let l = loads(&[0, 0, 0]);
        for _ in 0..100 {
            let me = (0..3)
                .max_by_key(|&i| l[i].load(Ordering::Relaxed))
                .unwrap();
            l[pick(&l, me)].fetch_add(1, Ordering::Relaxed);
            let v: Vec<usize> = l
                .iter()
                .map(|a| a.load(Ordering::Relaxed) as usize)
                .collect();
            let (lo, hi) = (v.iter().min().unwrap(), v.iter().max().unwrap());
            assert!(hi - lo <= HANDOFF_MARGIN, "{v:?}");
        }
    }
}
