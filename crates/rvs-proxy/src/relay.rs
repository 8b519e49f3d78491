//! The bidirectional TCP relay: one future per proxied connection; small messages are copied,
//! bulk transfers spliced.
//!
//! [`run`] takes the accepted client connection and the connection to the chosen real server
//! and moves bytes both ways until both directions have ended, inside one future (no second
//! task). Readiness comes from tokio (edge-triggered epoll); every syscall is non-blocking.
//!
//! - **Copy or splice, per direction** (as HAProxy's `splice-auto`): `splice(2)` saves the
//!   copy through userspace, which pays for bulk transfers, but for a small message its two
//!   calls (page references, pipe bookkeeping) cost more than a `recv` and a `send` that copy
//!   it: on loopback keep-alive HTTP with 64-byte bodies, copying takes about 7% less CPU per
//!   request. So a direction starts in *copy mode*: it receives into the thread's scratch buffer
//!   ([`SCRATCH`] bytes, one per thread, no allocation per connection) and sends at once
//!   (`MSG_NOSIGNAL`). A receive that fills the whole buffer means a bulk transfer: the
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
//! - the runtime has IO and time enabled (`enable_all`);
//! - the process ignores `SIGPIPE` (Rust programs do by default): `splice(2)` to a reset
//!   socket raises it (the copy mode's `send` does not);
//! - TCP urgent data (`MSG_OOB`: telnet interrupts, FTP `ABOR`) is not relayed. In copy mode
//!   (where such small messages are) the urgent byte is dropped and what follows it is
//!   relayed, at the latest once more bytes arrive (a receive stops at the urgent mark, which
//!   looks like an empty socket). In splice mode the kernel stops at the urgent byte, so that
//!   direction stalls there (until the idle timeout), and if the sender then closes, what
//!   followed the urgent byte is lost;
//! - dropping the future instead of letting it finish closes both sockets as they are
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
//! let (outcome, counters) = relay::run(client, server, &RelayOpts::default(), &mut Log).await;
//! assert!(matches!(outcome, Outcome::Closed) || counters.c2s_bytes > 0);
//! # }
//! ```
#![forbid(unsafe_code)]

mod ops;
#[cfg(test)]
mod tests;

use std::future::{poll_fn, Future};
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{Interest, Ready};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::pipe::{self, Pipe};
use crate::tcpinfo;
pub use ops::{stats, Stats, SCRATCH};

/// Transfers (splices, or receive-and-send) per direction in one wake-up before the task
/// yields to others on its thread.
const ROUNDS: usize = 32;

/// Timer expiries handled in one wake-up (a deadline reached again at once waits a turn).
const TIMER_ROUNDS: usize = 4;

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

/// How the relay ended. Both sockets are closed when [`run`] returns.
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
/// which has no event of its own).
pub async fn run<O: Observer>(
    client: TcpStream,
    server: TcpStream,
    opts: &RelayOpts,
    obs: &mut O,
) -> (Outcome, Counters) {
    let (stop, counters) = {
        let mut relay = Relay::new(&client, &server, opts, obs);
        let mut sleep = pin!(tokio::time::sleep_until(relay.timer_at));
        // A side that sent FIN is not read any more: these futures notice its reset while the
        // other direction still runs.
        let mut client_err = pin!(Some(client.ready(Interest::ERROR)));
        let mut server_err = pin!(Some(server.ready(Interest::ERROR)));
        let stop =
            poll_fn(|cx| relay.poll(cx, sleep.as_mut(), client_err.as_mut(), server_err.as_mut()))
                .await;
        if !relay.fresh {
            relay.refresh();
        }
        (stop, relay.counters)
    };
    (close(stop, client, server), counters)
}

/// Closes both sockets as the end requires: normally after `Done`, with RST otherwise.
fn close(stop: Stop, client: TcpStream, server: TcpStream) -> Outcome {
    let outcome = match stop {
        Stop::Done => return Outcome::Closed,
        Stop::Reset(Side::Client) => Outcome::ClientReset,
        Stop::Reset(Side::Server) => Outcome::ServerReset,
        Stop::Abort => Outcome::Aborted,
        Stop::Error(e) => Outcome::Error(e),
    };
    // The side that reset is already closed in the kernel; lingering 0 on it too makes
    // sure nothing but a RST can leave either socket.
    reset(client);
    reset(server);
    outcome
}

fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

impl Side {
    fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

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
    /// Waiting for readiness (a waker is registered) or over.
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
    /// Copy mode's leftover: bytes received that the destination did not take yet. Sent
    /// before anything else; allocated only when needed, freed once sent.
    held: Vec<u8>,
    /// How much of `held` has been sent.
    held_sent: usize,
    /// Bytes read since the source was last found empty.
    burst: usize,
    flow: Flow,
    /// Bytes delivered to the destination.
    bytes: u64,
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
            burst: 0,
            flow: Flow::Open,
            bytes: 0,
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
        src: &TcpStream,
        dst: &TcpStream,
        from: Side,
        last: bool,
        cx: &mut Context<'_>,
    ) -> Result<Pump, Stop> {
        for _ in 0..ROUNDS {
            if self.has_backlog() {
                if !ready(dst.poll_write_ready(cx))? {
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
            if self.mode == Mode::Copy && !ready(dst.poll_write_ready(cx))? {
                return Ok(Pump::Blocked);
            }
            if !ready(src.poll_read_ready(cx))? {
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
    fn flush(&mut self, dst: &TcpStream) -> io::Result<()> {
        let n = if self.held_sent < self.held.len() {
            let n = ops::send_some(dst, &self.held[self.held_sent..])?;
            self.held_sent += n;
            if self.held_sent == self.held.len() {
                self.held = Vec::new();
                self.held_sent = 0;
            }
            n
        } else if let Some(pipe) = self.pipe.as_mut() {
            ops::write_some(pipe, dst)?
        } else {
            0
        };
        self.bytes += n as u64;
        Ok(())
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
    fn copy(&mut self, src: &TcpStream, dst: &TcpStream, from: Side) -> Result<(), Stop> {
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
    fn fill(&mut self, src: &TcpStream, from: Side) -> Result<(), Stop> {
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
    fn finish(&mut self, dst: &TcpStream, dst_side: Side, last: bool) -> Result<(), Stop> {
        self.flow = Flow::Shut;
        self.release();
        if last {
            return Ok(());
        }
        socket2::SockRef::from(dst)
            .shutdown(Shutdown::Write)
            .map_err(|e| classify(e, dst_side))
    }
}

/// `Ok(true)` when ready, `Ok(false)` when a waker is registered.
fn ready(p: Poll<io::Result<()>>) -> Result<bool, Stop> {
    match p {
        Poll::Ready(Ok(())) => Ok(true),
        Poll::Ready(Err(e)) => Err(Stop::Error(e)),
        Poll::Pending => Ok(false),
    }
}

/// `t + d`, or far in the future when that overflows.
fn after(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(30 * 365 * 86_400))
}

/// The state of one relay, borrowed sockets included.
struct Relay<'a, O> {
    client: &'a TcpStream,
    server: &'a TcpStream,
    c2s: Half,
    s2c: Half,
    report_every: Duration,
    idle: Option<Duration>,
    obs: &'a mut O,
    counters: Counters,
    /// Counters (TCP_INFO included) are up to date: read in this wake-up, and no byte, FIN
    /// or error since. Events of one wake-up then share one reading.
    fresh: bool,
    /// Bytes moved (both ways) when the observer last heard of them.
    reported: u64,
    /// Bytes moved (both ways) at the end of the last wake-up.
    seen: u64,
    last_progress: Instant,
    last_activity: Instant,
    /// Deadline the timer is armed for.
    timer_at: Instant,
}

impl<'a, O: Observer> Relay<'a, O> {
    fn new(client: &'a TcpStream, server: &'a TcpStream, opts: &RelayOpts, obs: &'a mut O) -> Self {
        let now = Instant::now();
        let mut r = Relay {
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
            timer_at: now,
        };
        r.timer_at = r.next_deadline();
        r
    }

    fn poll<W: Future<Output = io::Result<Ready>>>(
        &mut self,
        cx: &mut Context<'_>,
        sleep: Pin<&mut Sleep>,
        client_err: Pin<&mut Option<W>>,
        server_err: Pin<&mut Option<W>>,
    ) -> Poll<Stop> {
        match self.step(cx, sleep, client_err, server_err) {
            Ok(busy) => {
                if busy {
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
            Err(Stop::Reset(side)) => {
                self.fresh = false;
                self.emit(side.reset_event());
                Poll::Ready(Stop::Reset(side))
            }
            Err(stop) => Poll::Ready(stop),
        }
    }

    /// One wake-up: both directions, then reports and timers. `Ok(true)`: more to do now.
    fn step<W: Future<Output = io::Result<Ready>>>(
        &mut self,
        cx: &mut Context<'_>,
        mut sleep: Pin<&mut Sleep>,
        client_err: Pin<&mut Option<W>>,
        server_err: Pin<&mut Option<W>>,
    ) -> Result<bool, Stop> {
        let (client, server) = (self.client, self.server);
        self.fresh = false;
        let a = self.c2s.pump(
            client,
            server,
            Side::Client,
            self.s2c.flow == Flow::Shut,
            cx,
        )?;
        if a == Pump::Ended {
            self.emit_or_abort(Event::ClientEof)?;
        }
        let b = self.s2c.pump(
            server,
            client,
            Side::Server,
            self.c2s.flow == Flow::Shut,
            cx,
        )?;
        if b == Pump::Ended {
            self.fresh = false;
            self.emit_or_abort(Event::ServerEof)?;
        }
        if self.c2s.flow == Flow::Shut && self.s2c.flow == Flow::Shut {
            self.emit(Event::Done);
            return Err(Stop::Done);
        }
        self.note_movement(sleep.as_mut())?;
        if self.c2s.flow == Flow::Shut {
            watch_reset(cx, client_err, client, Side::Client)?;
        }
        if self.s2c.flow == Flow::Shut {
            watch_reset(cx, server_err, server, Side::Server)?;
        }
        self.poll_timer(cx, sleep)?;
        Ok(a == Pump::Busy || b == Pump::Busy)
    }

    fn total(&self) -> u64 {
        self.c2s.bytes + self.s2c.bytes
    }

    /// After I/O: activity time, and a Progress report now or a timer for it.
    fn note_movement(&mut self, sleep: Pin<&mut Sleep>) -> Result<(), Stop> {
        let total = self.total();
        if total == self.seen {
            return Ok(());
        }
        self.seen = total;
        self.fresh = false;
        let now = Instant::now();
        self.last_activity = now;
        if total == self.reported {
            return Ok(());
        }
        let due = after(self.last_progress, self.report_every);
        if now >= due {
            return self.progress(now);
        }
        if due < self.timer_at {
            self.arm(sleep, due);
        }
        Ok(())
    }

    fn progress(&mut self, now: Instant) -> Result<(), Stop> {
        self.last_progress = now;
        self.emit_or_abort(Event::Progress)
    }

    /// Handles the timer: a Progress that fell due, idleness; re-arms it.
    fn poll_timer(&mut self, cx: &mut Context<'_>, mut sleep: Pin<&mut Sleep>) -> Result<(), Stop> {
        for _ in 0..TIMER_ROUNDS {
            if sleep.as_mut().poll(cx).is_pending() {
                return Ok(());
            }
            let now = Instant::now();
            if self.total() != self.reported && now >= after(self.last_progress, self.report_every)
            {
                self.progress(now)?;
            }
            if let Some(idle) = self.idle {
                if now >= after(self.last_activity, idle) {
                    self.emit_or_abort(Event::Idle)?;
                    self.last_activity = now;
                }
            }
            let next = self.next_deadline();
            self.arm(sleep.as_mut(), next);
        }
        cx.waker().wake_by_ref();
        Ok(())
    }

    /// The earliest of the pending Progress and the idle deadline.
    fn next_deadline(&self) -> Instant {
        let far = after(self.last_activity, Duration::MAX);
        let idle = self.idle.map_or(far, |d| after(self.last_activity, d));
        if self.total() != self.reported {
            idle.min(after(self.last_progress, self.report_every))
        } else {
            idle
        }
    }

    fn arm(&mut self, sleep: Pin<&mut Sleep>, at: Instant) {
        self.timer_at = at;
        sleep.reset(at);
    }

    /// Reads TCP_INFO of both sockets into the counters (keeping old values on failure).
    fn refresh(&mut self) {
        let c = &mut self.counters;
        c.c2s_bytes = self.c2s.bytes;
        c.s2c_bytes = self.s2c.bytes;
        if let Ok(i) = tcpinfo::info(self.client.as_raw_fd()) {
            (c.client_segs_in, c.client_segs_out) = (i.segs_in, i.segs_out);
            c.client_timestamps = i.timestamps;
        }
        if let Ok(i) = tcpinfo::info(self.server.as_raw_fd()) {
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

/// Watches the socket of a side whose read direction is over for an error: a RST that
/// arrives after its FIN shows only there. Resolves once; a spurious wake ends the watch.
fn watch_reset<W: Future<Output = io::Result<Ready>>>(
    cx: &mut Context<'_>,
    mut watch: Pin<&mut Option<W>>,
    sock: &TcpStream,
    side: Side,
) -> Result<(), Stop> {
    let Some(fut) = watch.as_mut().as_pin_mut() else {
        return Ok(());
    };
    if fut.poll(cx).is_pending() {
        return Ok(());
    }
    watch.set(None);
    match sock.take_error() {
        Ok(Some(e)) => Err(classify(e, side)),
        Ok(None) => Ok(()),
        Err(e) => Err(Stop::Error(e)),
    }
}
