//! The bidirectional TCP relay: small messages are copied, bulk transfers spliced.
//!
//! A relay takes the accepted client connection and the connection to the chosen real server
//! and moves bytes both ways until both directions have ended. It is a state machine driven
//! by the thread's TCP event loop (the crate's `reactor` module): readiness comes from edge-triggered
//! epoll as flags on each socket, every syscall is non-blocking, and no task or future exists
//! per connection. The data plane's TCP sessions run it after their connect; [`run`] runs one
//! on two connected tokio sockets and waits for its end.
//!
//! - **Copy or splice, per direction** (as HAProxy's `splice-auto`): `splice(2)` saves the
//!   copy through userspace, which pays for bulk transfers, but for a small message its two
//!   calls (page references, pipe bookkeeping) cost more than a `recv` and a `send` that copy
//!   it: on loopback keep-alive HTTP with 64-byte bodies, copying takes about 7% less CPU per
//!   request. So a direction starts in *copy mode*: it receives into the thread's scratch buffer
//!   ([`SCRATCH`] bytes, one per thread, no allocation per connection) and sends at once
//!   (`MSG_NOSIGNAL`); inside a pass of the event loop that has io_uring, it copies the bytes
//!   into the direction's own buffer and posts the send instead, which the loop makes with
//!   the pass's other sends in one call (`sendq` module); nothing moves in that direction
//!   until the result is in, and a relay that must end meanwhile ends then, so that its
//!   final counters have those bytes. A receive that fills the whole buffer means a bulk transfer: the
//!   direction switches to *splice mode* (socket → pipe → socket, never through userspace).
//!   When the source runs empty after a burst smaller than the buffer, the direction goes back
//!   to copy mode (a keep-alive connection's next small request). [`stats`] and
//!   [`crate::pipe::stats`] count both sides.
//! - **Back pressure**: copy mode reads only when the destination is writable; what a send
//!   leaves over goes to a buffer of that direction's own (allocated only then, freed once
//!   sent), and the direction reads no more until it is flushed, as splice mode reads no more
//!   while its pipe holds bytes. Bytes always leave in the order they came, across a switch.
//! - **Pipes** come from the thread's pool ([`crate::pipe`]) when a direction in splice mode
//!   has something to read, and go back as soon as that direction waits with an empty pipe, so
//!   an idle keep-alive connection holds no pipe, and one in copy mode never takes one.
//! - **Half-close**: when one side sends FIN, what is left in that direction (pipe or copy
//!   buffer) is delivered, the other side gets a FIN (`shutdown(Write)`), [`Event::ClientEof`]
//!   or [`Event::ServerEof`] is reported, and the other direction goes on until it ends too;
//!   then [`Event::Done`] and [`Outcome::Closed`].
//! - **Resets**: a side that resets (`ECONNRESET`, `EPIPE` or `ENOTCONN`, on a read, a write,
//!   or as a socket error after its FIN) makes the relay reset the other side (`SO_LINGER` 0,
//!   then close: a RST, never a FIN). Aborts from the [`Observer`] and errors reset both sides.
//! - **Reports**: the observer hears [`Event::Progress`] at most every
//!   [`RelayOpts::report_every`] while bytes move, and at the latest `report_every` after the
//!   last byte moved; [`Event::Idle`] after [`RelayOpts::idle`] without a byte. Every event
//!   carries cumulative [`Counters`]: exact byte counts, and segment counts from `TCP_INFO`
//!   read just before the call (and only then), except for the FIN events
//!   ([`Event::ClientEof`], [`Event::ServerEof`]), which repeat the last reading: the event
//!   after them (at the latest [`Event::Done`] or a reset) reads it again, once for both.
//!
//! Requirements and limits:
//! - [`run`] needs a current-thread tokio runtime with IO and time enabled (`enable_all`):
//!   the event loop is per thread (the data plane's workers are such runtimes);
//! - the process ignores `SIGPIPE` (Rust programs do by default): `splice(2)` to a reset
//!   socket raises it (the copy mode's `send` does not);
//! - TCP urgent data (`MSG_OOB`: telnet interrupts, FTP `ABOR`) is not relayed. In copy mode
//!   (where such small messages are) the urgent byte is dropped and what follows it is
//!   relayed, at the latest once more bytes arrive (a receive stops at the urgent mark, which
//!   looks like an empty socket). In splice mode the kernel stops at the urgent byte, so that
//!   direction stalls there (until the idle timeout), and if the sender then closes, what
//!   followed the urgent byte is lost;
//! - dropping [`run`]'s future instead of letting it finish closes both sockets as they are
//!   (FIN, or RST where unread bytes remain) without a report.
//!
//! ```no_run
//! use rvs_proxy::relay::{self, Counters, Event, Observer, Outcome, RelayOpts};
//!
//! struct Log;
//! impl Observer for Log {
//!     fn event(&mut self, ev: Event, c: &Counters) -> bool {
//!         println!("{ev:?}: {} bytes in, {} bytes out", c.c2s_bytes, c.s2c_bytes);
//!         true // false would reset both sides
//!     }
//! }
//!
//! # async fn demo(client: tokio::net::TcpStream, server: tokio::net::TcpStream) {
//! let (outcome, counters) = relay::run(client, server, &RelayOpts::default(), Log).await;
//! assert!(matches!(outcome, Outcome::Closed) || counters.c2s_bytes > 0);
//! # }
//! ```
#![forbid(unsafe_code)]

pub(crate) mod ops;
#[cfg(test)]
mod tests;

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::pipe::{self, Pipe};
use crate::reactor::{self, Job, Side, Sock, Step};
use crate::{sendq, tcpinfo};
pub use ops::{stats, Stats, SCRATCH};

/// Transfers (splices, or receive-and-send) per direction in one wake-up before the task
/// yields to others on its thread.
const ROUNDS: usize = 32;

/// Cumulative counters of one relayed connection, since the relay started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Payload bytes delivered client → server (exact).
    pub c2s_bytes: u64,
    /// Payload bytes delivered server → client (exact).
    pub s2c_bytes: u64,
    /// `tcpi_segs_in` of the client socket.
    pub client_segs_in: u64,
    /// `tcpi_segs_out` of the client socket.
    pub client_segs_out: u64,
    /// `tcpi_segs_in` of the server socket.
    pub server_segs_in: u64,
    /// `tcpi_segs_out` of the server socket.
    pub server_segs_out: u64,
    /// TCP timestamps were negotiated on the client connection (12 more header bytes on
    /// each of its segments).
    pub client_timestamps: bool,
    /// TCP timestamps were negotiated on the server connection.
    pub server_timestamps: bool,
}

/// What the relay tells its [`Observer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Bytes moved since the last event (at most once per [`RelayOpts::report_every`]).
    Progress,
    /// The client sent FIN; the server has been sent FIN after the client's last byte.
    ClientEof,
    /// The server sent FIN; the client has been sent FIN after the server's last byte.
    ServerEof,
    /// The client reset; the server is being reset. The answer is ignored.
    ClientReset,
    /// The server reset; the client is being reset. The answer is ignored.
    ServerReset,
    /// Nothing moved for [`RelayOpts::idle`]: `true` waits another period, `false` aborts.
    Idle,
    /// Both directions ended with FIN; both sockets are closed normally. The answer is
    /// ignored.
    Done,
}

/// Receives the relay's events.
pub trait Observer {
    /// Told about every event with up-to-date counters (TCP_INFO read just before the call,
    /// except for the FIN events, see the module docs). Return false to abort: both sides are then reset (SO_LINGER 0 close) and run() returns.
    fn event(&mut self, ev: Event, c: &Counters) -> bool;
}

/// Timing of the relay's reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayOpts {
    /// Least time between two [`Event::Progress`]; zero reports after every wake-up that
    /// moved bytes.
    pub report_every: Duration,
    /// Time without a byte moved before [`Event::Idle`]; zero never reports idleness.
    pub idle: Duration,
}

impl Default for RelayOpts {
    /// One report per second; idle after 900 s (IPVS's established-TCP timeout).
    fn default() -> Self {
        RelayOpts {
            report_every: Duration::from_secs(1),
            idle: Duration::from_secs(900),
        }
    }
}

/// How the relay ended. Both sockets are closed when [`run`] returns (or the relay is
/// dropped).
#[derive(Debug)]
pub enum Outcome {
    /// Both directions ended with FIN.
    Closed,
    /// The client reset; the server was reset.
    ClientReset,
    /// The server reset; the client was reset.
    ServerReset,
    /// The observer said no (to any event but the final ones); both sides were reset.
    Aborted,
    /// A system error other than a reset; both sides were reset.
    Error(io::Error),
}

/// Relays `client` ⇄ `server` until both directions end, a side resets, the observer aborts
/// or an error occurs. Returns the outcome and the final counters (also after an error,
/// which has no event of its own). The sockets leave tokio for the thread's TCP event loop,
/// which the relay runs on; the calling runtime must be a current-thread one.
pub async fn run<O: Observer + Send + 'static>(
    client: TcpStream,
    server: TcpStream,
    opts: &RelayOpts,
    obs: O,
) -> (Outcome, Counters) {
    let socks = client.into_std().and_then(|c| Ok((c, server.into_std()?)));
    let (client, server) = match socks {
        Ok(s) => s,
        Err(e) => return (Outcome::Error(e), Counters::default()),
    };
    let (tx, rx) = oneshot::channel();
    let relay = Relay::new(
        Sock::new(client),
        Sock::new(server),
        opts,
        obs,
        Instant::now(),
    );
    let job = Box::new(Waited {
        relay,
        done: Some(tx),
    });
    let id = match reactor::add(job) {
        Ok(id) => id,
        Err(e) => return (Outcome::Error(e), Counters::default()),
    };
    let mut guard = Cancel(Some(id));
    let end = rx.await;
    guard.0 = None;
    end.unwrap_or_else(|_| {
        let e = io::Error::other("the TCP event loop stopped");
        (Outcome::Error(e), Counters::default())
    })
}

/// Takes an unfinished relay out of the loop when [`run`]'s future is dropped.
struct Cancel(Option<reactor::JobId>);

impl Drop for Cancel {
    fn drop(&mut self) {
        if let Some(id) = self.0.take() {
            reactor::cancel(id);
        }
    }
}

/// [`run`]'s job: the relay and where its end goes.
struct Waited<O> {
    relay: Relay<O>,
    done: Option<oneshot::Sender<(Outcome, Counters)>>,
}

impl<O: Observer> Job for Waited<O> {
    fn run(&mut self, now: Instant) -> Step {
        match self.relay.turn(now) {
            Turn::Wait => Step::Wait,
            Turn::Again => Step::Again,
            Turn::End(outcome) => {
                if let Some(tx) = self.done.take() {
                    let _ = tx.send((outcome, self.relay.counters()));
                }
                Step::Done
            }
        }
    }

    fn sock(&mut self, side: Side) -> &mut Sock {
        self.relay.sock(side)
    }

    fn deadline(&self) -> Option<Instant> {
        Some(self.relay.deadline())
    }

    fn sent(&mut self, side: Side, result: i32) {
        self.relay.sent(side, result);
    }
}

/// What a [`Relay::turn`] ended with.
#[derive(Debug)]
pub(crate) enum Turn {
    /// Waiting for readiness or the deadline.
    Wait,
    /// Used its rounds: more to do now.
    Again,
    /// Over; the sockets are closed when the relay is dropped (with a reset unless the
    /// outcome is [`Outcome::Closed`]).
    End(Outcome),
}

impl Side {
    fn reset_event(self) -> Event {
        match self {
            Side::Client => Event::ClientReset,
            Side::Server => Event::ServerReset,
        }
    }
}

/// Why the relay stops.
#[derive(Debug)]
enum Stop {
    Done,
    Reset(Side),
    Abort,
    Error(io::Error),
}

/// A reset seen as an error of `side`'s socket; anything else is an error.
fn classify(e: io::Error, side: Side) -> Stop {
    match e.raw_os_error() {
        Some(libc::ECONNRESET | libc::EPIPE | libc::ENOTCONN) => Stop::Reset(side),
        _ => Stop::Error(e),
    }
}

/// Where one direction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Reading the source.
    Open,
    /// The source sent FIN: deliver what is left, then FIN the destination.
    Eof,
    /// The destination has been sent FIN: this direction is over.
    Shut,
}

/// What one direction did in a wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pump {
    /// Waiting for readiness or over.
    Blocked,
    /// Used its rounds and may have more to do.
    Busy,
    /// Just sent FIN to its destination.
    Ended,
}

/// How a direction moves its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `recv` into the thread's scratch buffer, `send` at once.
    Copy,
    /// `splice` socket → pipe → socket.
    Splice,
}

/// One direction: source socket → (scratch buffer or pipe) → destination socket.
struct Half {
    mode: Mode,
    pipe: Option<Pipe>,
    /// Copy mode's leftover: bytes received that the destination did not take yet, or a
    /// posted send's bytes. Sent before anything else; allocated only when needed, freed
    /// once sent.
    held: Vec<u8>,
    /// How much of `held` has been sent.
    held_sent: usize,
    /// Bytes at the front of `held` that are not payload (a PROXY protocol header): sent
    /// first, not counted.
    uncounted: usize,
    /// Bytes read since the source was last found empty.
    burst: usize,
    flow: Flow,
    /// Bytes delivered to the destination.
    bytes: u64,
    /// `held` is posted ([`crate::sendq`]): nothing moves in this direction, and `held`
    /// stays as it is, until [`Half::sent`].
    posted: bool,
    /// The posted send failed: the direction stops with this error at its next turn.
    failed: Option<io::Error>,
}

impl Drop for Half {
    fn drop(&mut self) {
        self.release();
    }
}

impl Half {
    fn new() -> Half {
        Half {
            mode: Mode::Copy,
            pipe: None,
            held: Vec::new(),
            held_sent: 0,
            uncounted: 0,
            burst: 0,
            flow: Flow::Open,
            bytes: 0,
            posted: false,
            failed: None,
        }
    }

    /// Gives the pipe back to the pool (closed there if it still holds bytes).
    fn release(&mut self) {
        if let Some(p) = self.pipe.take() {
            pipe::give(p);
        }
    }

    /// Bytes read but not yet delivered (in the copy buffer or the pipe).
    fn has_backlog(&self) -> bool {
        self.held_sent < self.held.len() || self.pipe.as_ref().is_some_and(|p| !p.is_empty())
    }

    /// Moves what can move without blocking from `src` (the `from` side) to `dst`. `last`:
    /// the other direction is over, so when this one ends both sockets close at once.
    fn pump(
        &mut self,
        src: &mut Sock,
        dst: &mut Sock,
        from: Side,
        last: bool,
    ) -> Result<Pump, Stop> {
        if let Some(e) = self.failed.take() {
            return Err(classify(e, from.peer()));
        }
        for _ in 0..ROUNDS {
            if self.posted {
                return Ok(Pump::Blocked);
            }
            if self.has_backlog() {
                if !dst.can_write() {
                    return Ok(Pump::Blocked);
                }
                self.flush(dst).map_err(|e| classify(e, from.peer()))?;
                continue;
            }
            match self.flow {
                Flow::Open => {}
                Flow::Eof => {
                    self.finish(dst, from.peer(), last)?;
                    return Ok(Pump::Ended);
                }
                Flow::Shut => return Ok(Pump::Blocked),
            }
            // Copy mode sends what it receives at once: it reads only when there is room.
            if self.mode == Mode::Copy && !dst.can_write() {
                return Ok(Pump::Blocked);
            }
            if !src.can_read() {
                self.source_empty();
                return Ok(Pump::Blocked);
            }
            match self.mode {
                Mode::Copy => self.copy(src, dst, from)?,
                Mode::Splice => self.fill(src, from)?,
            }
        }
        Ok(Pump::Busy)
    }

    /// Sends the backlog (copy buffer first: it holds older bytes than any pipe could).
    fn flush(&mut self, dst: &mut Sock) -> io::Result<()> {
        if self.held_sent < self.held.len() {
            let n = ops::send_some(dst, &self.held[self.held_sent..])?;
            self.took(n);
        } else if let Some(pipe) = self.pipe.as_mut() {
            let n = ops::write_some(pipe, dst)?;
            self.count(n);
        }
        Ok(())
    }

    /// `n` bytes of `held` went out.
    fn took(&mut self, n: usize) {
        self.held_sent += n;
        if self.held_sent == self.held.len() {
            // an idle connection holds no buffer
            self.held = Vec::new();
            self.held_sent = 0;
        }
        self.count(n);
    }

    /// `n` bytes reached the destination; a PROXY header's are not payload.
    fn count(&mut self, n: usize) {
        let skip = n.min(self.uncounted);
        self.uncounted -= skip;
        self.bytes += (n - skip) as u64;
    }

    /// The posted send of `held` was made (`result`: bytes sent or a negated errno), as
    /// [`ops::send_some`] would have made it.
    fn sent(&mut self, result: i32, dst: &mut Sock) {
        if !self.posted {
            return;
        }
        self.posted = false;
        let want = self.held.len() - self.held_sent;
        let r = match usize::try_from(result) {
            Ok(n) => Ok(n),
            Err(_) => Err(io::Error::from_raw_os_error(-result)),
        };
        match ops::write_done(dst, r, want) {
            Ok(n) => {
                if n < want {
                    ops::count(|s| s.held += 1);
                }
                self.took(n);
            }
            Err(e) => self.failed = Some(e),
        }
    }

    /// The source has nothing now: the pipe (empty) goes back, and after a small burst a
    /// spliced direction returns to copy mode.
    fn source_empty(&mut self) {
        self.release();
        if self.mode == Mode::Splice && self.burst < SCRATCH {
            self.mode = Mode::Copy;
            ops::count(|s| s.to_copy += 1);
        }
        self.burst = 0;
    }

    /// Copy mode: one receive into the scratch buffer, sent at once; what the destination
    /// does not take is held. A full buffer switches the direction to splice mode.
    fn copy(&mut self, src: &mut Sock, dst: &mut Sock, from: Side) -> Result<(), Stop> {
        ops::with_scratch(|buf| {
            let n = match ops::recv_some(src, buf).map_err(|e| classify(e, from))? {
                None => return Ok(()),
                Some(0) => {
                    self.flow = Flow::Eof;
                    return Ok(());
                }
                Some(n) => n,
            };
            self.burst = self.burst.saturating_add(n);
            if n == buf.len() {
                self.mode = Mode::Splice;
                ops::count(|s| s.to_splice += 1);
            }
            if sendq::is_open() {
                // kept until the send is made, at the end of the loop's pass
                self.held = buf[..n].to_vec();
                self.held_sent = 0;
                if sendq::post(dst.fd(), &self.held, from.peer()) {
                    ops::count(|s| s.sends += 1);
                    self.posted = true;
                }
                // not posted: the next round sends it as a backlog
                return Ok(());
            }
            let sent = ops::send_some(dst, &buf[..n]).map_err(|e| classify(e, from.peer()))?;
            self.bytes += sent as u64;
            if sent < n {
                self.held = buf[sent..n].to_vec();
                self.held_sent = 0;
                ops::count(|s| s.held += 1);
            }
            Ok(())
        })
        .map_err(Stop::Error)?
    }

    /// Splice mode: one splice from the source into the (empty) pipe.
    fn fill(&mut self, src: &mut Sock, from: Side) -> Result<(), Stop> {
        let pipe = match self.pipe.as_mut() {
            Some(p) => p,
            None => self.pipe.insert(pipe::take().map_err(Stop::Error)?),
        };
        match ops::read_some(pipe, src).map_err(|e| classify(e, from))? {
            Some(0) => self.flow = Flow::Eof,
            Some(n) => self.burst = self.burst.saturating_add(n),
            None => {}
        }
        Ok(())
    }

    /// The source ended and nothing is left to deliver: FIN to the destination. When this
    /// is the `last` direction, the close that follows at once sends that FIN (the socket's
    /// receive side has ended too, so nothing unread could turn it into a RST).
    fn finish(&mut self, dst: &Sock, dst_side: Side, last: bool) -> Result<(), Stop> {
        self.flow = Flow::Shut;
        self.release();
        if last {
            return Ok(());
        }
        socket2::SockRef::from(&dst.stream)
            .shutdown(Shutdown::Write)
            .map_err(|e| classify(e, dst_side))
    }
}

/// `t + d`, or far in the future when that overflows.
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(30 * 365 * 86_400))
}

/// One relayed connection: both sockets, both directions, the observer and its timing.
pub(crate) struct Relay<O> {
    client: Sock,
    server: Sock,
    c2s: Half,
    s2c: Half,
    report_every: Duration,
    idle: Option<Duration>,
    obs: O,
    counters: Counters,
    /// Counters (TCP_INFO included) are up to date: read in this turn, and no byte, FIN or
    /// error since. Events of one turn then share one reading.
    fresh: bool,
    /// Bytes moved (both ways) when the observer last heard of them.
    reported: u64,
    /// Bytes moved (both ways) at the end of the last turn.
    seen: u64,
    last_progress: Instant,
    last_activity: Instant,
    /// Why the relay ends, once a posted send's result is in (so the final counters have
    /// its bytes).
    stopping: Option<Stop>,
}

impl<O: Observer> Relay<O> {
    /// A relay of two connected, non-blocking sockets (not yet in the loop).
    pub(crate) fn new(client: Sock, server: Sock, opts: &RelayOpts, obs: O, now: Instant) -> Self {
        Relay {
            client,
            server,
            c2s: Half::new(),
            s2c: Half::new(),
            report_every: opts.report_every,
            idle: (!opts.idle.is_zero()).then_some(opts.idle),
            obs,
            counters: Counters::default(),
            fresh: false,
            reported: 0,
            seen: 0,
            last_progress: now,
            last_activity: now,
            stopping: None,
        }
    }

    /// The server receives `bytes` (a PROXY protocol header) before anything from the
    /// client; they are not counted as payload.
    pub(crate) fn server_first(&mut self, bytes: Vec<u8>) {
        debug_assert!(!self.c2s.has_backlog() && self.c2s.bytes == 0);
        self.c2s.uncounted = bytes.len();
        self.c2s.held = bytes;
        self.c2s.held_sent = 0;
    }

    pub(crate) fn sock(&mut self, side: Side) -> &mut Sock {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    /// The send posted to `side`'s socket was made (see [`crate::sendq`]).
    pub(crate) fn sent(&mut self, side: Side, result: i32) {
        // bytes moved (or an error came): the counters are to be read again
        self.fresh = false;
        match side {
            Side::Server => self.c2s.sent(result, &mut self.server),
            Side::Client => self.s2c.sent(result, &mut self.client),
        }
    }

    /// The final counters (after [`Turn::End`]).
    pub(crate) fn counters(&self) -> Counters {
        self.counters
    }

    /// Moves what can move, reports, handles the deadlines that passed by `now`.
    pub(crate) fn turn(&mut self, now: Instant) -> Turn {
        let r = match self.stopping.take() {
            Some(stop) => Err(stop),
            None => self.step(now),
        };
        match r {
            Ok(true) => Turn::Again,
            Ok(false) => Turn::Wait,
            Err(stop) if self.c2s.posted || self.s2c.posted => {
                // the other direction's send is being made: its result comes before the end
                self.stopping = Some(stop);
                Turn::Wait
            }
            Err(Stop::Reset(side)) => {
                self.fresh = false;
                self.emit(side.reset_event());
                Turn::End(self.close(Stop::Reset(side)))
            }
            Err(stop) => Turn::End(self.close(stop)),
        }
    }

    /// Final counters, and both sockets set to close as the end requires: normally after
    /// `Done`, with RST otherwise.
    fn close(&mut self, stop: Stop) -> Outcome {
        if !self.fresh {
            self.refresh();
        }
        let outcome = match stop {
            Stop::Done => return Outcome::Closed,
            Stop::Reset(Side::Client) => Outcome::ClientReset,
            Stop::Reset(Side::Server) => Outcome::ServerReset,
            Stop::Abort => Outcome::Aborted,
            Stop::Error(e) => Outcome::Error(e),
        };
        // The side that reset is already closed in the kernel; lingering 0 on it too makes
        // sure nothing but a RST can leave either socket.
        self.client.reset_on_close();
        self.server.reset_on_close();
        outcome
    }

    /// Both directions, then reports and timers. `Ok(true)`: more to do now.
    fn step(&mut self, now: Instant) -> Result<bool, Stop> {
        self.fresh = false;
        let a = self.c2s.pump(
            &mut self.client,
            &mut self.server,
            Side::Client,
            self.s2c.flow == Flow::Shut,
        )?;
        if a == Pump::Ended {
            self.emit_or_abort(Event::ClientEof)?;
        }
        let b = self.s2c.pump(
            &mut self.server,
            &mut self.client,
            Side::Server,
            self.c2s.flow == Flow::Shut,
        )?;
        if b == Pump::Ended {
            self.fresh = false;
            self.emit_or_abort(Event::ServerEof)?;
        }
        if self.c2s.flow == Flow::Shut && self.s2c.flow == Flow::Shut {
            self.emit(Event::Done);
            return Err(Stop::Done);
        }
        self.note_movement(now)?;
        // A side whose read direction is over is not read any more: its reset shows only as
        // a socket error.
        if self.c2s.flow == Flow::Shut {
            watch_reset(&mut self.client, Side::Client)?;
        }
        if self.s2c.flow == Flow::Shut {
            watch_reset(&mut self.server, Side::Server)?;
        }
        self.timers(now)?;
        Ok(a == Pump::Busy || b == Pump::Busy)
    }

    fn total(&self) -> u64 {
        self.c2s.bytes + self.s2c.bytes
    }

    /// After I/O: activity time, and a Progress report now if one is due.
    fn note_movement(&mut self, now: Instant) -> Result<(), Stop> {
        let total = self.total();
        if total == self.seen {
            return Ok(());
        }
        self.seen = total;
        self.fresh = false;
        self.last_activity = now;
        if total != self.reported && now >= after(self.last_progress, self.report_every) {
            return self.progress(now);
        }
        Ok(())
    }

    fn progress(&mut self, now: Instant) -> Result<(), Stop> {
        self.last_progress = now;
        self.emit_or_abort(Event::Progress)
    }

    /// A Progress that fell due, idleness.
    fn timers(&mut self, now: Instant) -> Result<(), Stop> {
        if self.total() != self.reported && now >= after(self.last_progress, self.report_every) {
            self.progress(now)?;
        }
        if let Some(idle) = self.idle {
            if now >= after(self.last_activity, idle) {
                self.emit_or_abort(Event::Idle)?;
                self.last_activity = now;
            }
        }
        Ok(())
    }

    /// The earliest of the pending Progress and the idle deadline.
    pub(crate) fn deadline(&self) -> Instant {
        let far = after(self.last_activity, Duration::MAX);
        let idle = self.idle.map_or(far, |d| after(self.last_activity, d));
        if self.total() != self.reported {
            idle.min(after(self.last_progress, self.report_every))
        } else {
            idle
        }
    }

    /// Reads TCP_INFO of both sockets into the counters (keeping old values on failure).
    fn refresh(&mut self) {
        let c = &mut self.counters;
        c.c2s_bytes = self.c2s.bytes;
        c.s2c_bytes = self.s2c.bytes;
        if let Ok(i) = tcpinfo::info(self.client.fd()) {
            (c.client_segs_in, c.client_segs_out) = (i.segs_in, i.segs_out);
            c.client_timestamps = i.timestamps;
        }
        if let Ok(i) = tcpinfo::info(self.server.fd()) {
            (c.server_segs_in, c.server_segs_out) = (i.segs_in, i.segs_out);
            c.server_timestamps = i.timestamps;
        }
        self.fresh = true;
    }

    /// Tells the observer; returns its answer. A FIN event carries up-to-date byte counters
    /// and the segment counters of the last reading: the other side's FIN (or the end) is
    /// usually moments away, and the event after it reads TCP_INFO once for both.
    fn emit(&mut self, ev: Event) -> bool {
        if matches!(ev, Event::ClientEof | Event::ServerEof) {
            self.counters.c2s_bytes = self.c2s.bytes;
            self.counters.s2c_bytes = self.s2c.bytes;
        } else if !self.fresh {
            self.refresh();
        }
        self.reported = self.total();
        self.obs.event(ev, &self.counters)
    }

    fn emit_or_abort(&mut self, ev: Event) -> Result<(), Stop> {
        if self.emit(ev) {
            Ok(())
        } else {
            Err(Stop::Abort)
        }
    }
}

/// Looks at the error a side's socket reported after its read direction ended (a RST that
/// arrives after its FIN shows only there).
fn watch_reset(sock: &mut Sock, side: Side) -> Result<(), Stop> {
    if !sock.error {
        return Ok(());
    }
    match sock.take_error() {
        Ok(Some(e)) => Err(classify(e, side)),
        Ok(None) => Ok(()),
        Err(e) => Err(Stop::Error(e)),
    }
}
