//! The bidirectional TCP relay: one future per proxied connection, bytes moved by `splice(2)`.
//!
//! [`run`] takes the accepted client connection and the connection to the chosen real server
//! and moves bytes both ways until both directions have ended, inside one future (no second
//! task): client → pipe → server and server → pipe → client, never through a userspace
//! buffer. Readiness comes from tokio (edge-triggered epoll); every syscall is non-blocking.
//!
//! - **Pipes** come from the thread's pool ([`crate::pipe`]) when a direction first has
//!   something to read, and go back as soon as that direction waits with an empty pipe, so
//!   an idle keep-alive connection holds no pipe.
//! - **Half-close**: when one side sends FIN, what is left in that direction's pipe is
//!   delivered, the other side gets a FIN (`shutdown(Write)`), [`Event::ClientEof`] or
//!   [`Event::ServerEof`] is reported, and the other direction goes on until it ends too; then
//!   [`Event::Done`] and [`Outcome::Closed`].
//! - **Resets**: a side that resets (`ECONNRESET` or `EPIPE`, on a read, a write, or as a
//!   socket error after its FIN) makes the relay reset the other side (`SO_LINGER` 0, then
//!   close: a RST, never a FIN). Aborts from the [`Observer`] and errors reset both sides.
//! - **Reports**: the observer hears [`Event::Progress`] at most every
//!   [`RelayOpts::report_every`] while bytes move, and at the latest `report_every` after the
//!   last byte moved; [`Event::Idle`] after [`RelayOpts::idle`] without a byte. Every event
//!   carries cumulative [`Counters`] with `TCP_INFO` read just before the call (and only
//!   then).
//!
//! Requirements and limits:
//! - the runtime has IO and time enabled (`enable_all`);
//! - the process ignores `SIGPIPE` (Rust programs do by default): `splice(2)` to a reset
//!   socket raises it;
//! - TCP urgent data (`MSG_OOB`: telnet interrupts, FTP `ABOR`) is not relayed: the kernel's
//!   splice path stops at the urgent byte, so that direction stalls there (until the idle
//!   timeout), and if the sender then closes, what followed the urgent byte is lost;
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

/// Splices per direction in one wake-up before the task yields to others on its thread.
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
    /// Told about every event with up-to-date counters (TCP_INFO read just before the call).
    /// Return false to abort: both sides are then reset (SO_LINGER 0 close) and run() returns.
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
    /// The source sent FIN: deliver what the pipe holds, then FIN the destination.
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

/// One direction: source socket → pipe → destination socket.
struct Half {
    pipe: Option<Pipe>,
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
            pipe: None,
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

    /// Moves what can move without blocking from `src` (the `from` side) to `dst`.
    fn pump(
        &mut self,
        src: &TcpStream,
        dst: &TcpStream,
        from: Side,
        cx: &mut Context<'_>,
    ) -> Result<Pump, Stop> {
        for _ in 0..ROUNDS {
            if let Some(pipe) = self.pipe.as_mut().filter(|p| !p.is_empty()) {
                if !ready(dst.poll_write_ready(cx))? {
                    return Ok(Pump::Blocked);
                }
                let n = write_some(pipe, dst).map_err(|e| classify(e, from.peer()))?;
                self.bytes += n as u64;
                continue;
            }
            match self.flow {
                Flow::Open => {}
                Flow::Eof => {
                    self.finish(dst, from.peer())?;
                    return Ok(Pump::Ended);
                }
                Flow::Shut => return Ok(Pump::Blocked),
            }
            if !ready(src.poll_read_ready(cx))? {
                self.release();
                return Ok(Pump::Blocked);
            }
            let pipe = match self.pipe.as_mut() {
                Some(p) => p,
                None => self.pipe.insert(pipe::take().map_err(Stop::Error)?),
            };
            if read_some(pipe, src).map_err(|e| classify(e, from))? == Some(0) {
                self.flow = Flow::Eof;
            }
        }
        Ok(Pump::Busy)
    }

    /// The source ended and the pipe is empty: FIN to the destination.
    fn finish(&mut self, dst: &TcpStream, dst_side: Side) -> Result<(), Stop> {
        self.flow = Flow::Shut;
        self.release();
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

/// Splices from `src` into the (empty) pipe. `Some(0)` is EOF, `None` means the socket had
/// nothing (its readiness is cleared).
fn read_some(pipe: &mut Pipe, src: &TcpStream) -> io::Result<Option<usize>> {
    debug_assert!(pipe.is_empty());
    let fd = src.as_raw_fd();
    let mut got = 0;
    let r = src.try_io(Interest::READABLE, || {
        let n = pipe.fill_from(fd)?;
        got = n;
        // Each pipe buffer holds at least one byte, so fewer bytes than buffers did not stop
        // at a full pipe: the socket is empty. Clearing the readiness now (WouldBlock) saves
        // the splice that would fail with EAGAIN; new data raises a new edge.
        if n > 0 && n < pipe.slots() {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match r {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok((got > 0).then_some(got)),
        Err(e) => Err(e),
    }
}

/// Splices the pipe's bytes to `dst`; returns how many went out (0 if the socket was full).
fn write_some(pipe: &mut Pipe, dst: &TcpStream) -> io::Result<usize> {
    let fd = dst.as_raw_fd();
    let want = pipe.len();
    let mut put = 0;
    let r = dst.try_io(Interest::WRITABLE, || {
        let n = pipe.drain_to(fd)?;
        put = n;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        // splice(2) to a socket stops short only where the socket refused more (EAGAIN): its
        // buffer is full, so the readiness is cleared now rather than by one more call.
        if n < want {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match r {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(put),
        Err(e) => Err(e),
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
        let a = self.c2s.pump(client, server, Side::Client, cx)?;
        if a == Pump::Ended {
            self.emit_or_abort(Event::ClientEof)?;
        }
        let b = self.s2c.pump(server, client, Side::Server, cx)?;
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
        if let Ok((i, o)) = tcpinfo::segs(self.client.as_raw_fd()) {
            (c.client_segs_in, c.client_segs_out) = (i, o);
        }
        if let Ok((i, o)) = tcpinfo::segs(self.server.as_raw_fd()) {
            (c.server_segs_in, c.server_segs_out) = (i, o);
        }
        self.fresh = true;
    }

    /// Tells the observer; returns its answer.
    fn emit(&mut self, ev: Event) -> bool {
        if !self.fresh {
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
