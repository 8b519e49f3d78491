//! The TCP event loop of a worker thread: an epoll set of its own holding every TCP socket the
//! worker relays, driven by one task on the worker's tokio runtime.
//!
//! **Why not one tokio task per connection.** The relay's work per readiness event is a
//! `recv` and a `send` (or two splices). With a task per connection, each event also costs
//! tokio's dispatch: the driver sets the socket's readiness, takes its waiters' lock, wakes
//! the task (reference counts, the task's state word, the run queue), and the task then polls
//! its readiness futures again, which registers the waker again under that lock. On loopback
//! keep-alive HTTP that bookkeeping was about a tenth of the balancer's CPU time and the
//! difference to HAProxy's throughput. Here an event costs what it costs in HAProxy or nginx:
//! the loop reads a batch of events and calls each connection's handler at once.
//!
//! **How it fits in tokio.** The epoll descriptor is itself pollable: it is readable while its
//! ready list holds events. It is registered with the runtime ([`AsyncFd`]), and the driver
//! task ([`Driver`]) is woken once per batch, reads the batch with a non-blocking
//! `epoll_wait`, runs the handlers ([`Job::run`]), fires due timers, and yields back to the
//! runtime after [`PASSES`] passes, so listeners, UDP flows and commands on the same thread
//! keep their turn.
//!
//! **Readiness.** Sockets are registered edge-triggered for input, output and peer shutdown.
//! An event sets flags on the [`Sock`]: readable, writable, and sticky ones for the peer's
//! shutdown and for errors. The syscall that finds the socket empty (or full) clears its
//! flag, and the next edge sets it again. Closing a socket removes it from the set (no
//! `EPOLL_CTL_DEL`). A job may also run once before it joins the set ([`run_then_add`]), on
//! flags set by one `poll` ([`look`]); joining then reports whatever its sockets have left.
//!
//! **Timers.** A job tells its next deadline ([`Job::deadline`]); the loop keeps a binary heap
//! of `(time, slot)` and a slot keeps the times it has in the heap. A deadline needs a new heap
//! entry only when no entry of its slot comes earlier: an entry that fires early just runs
//! the job, which looks at the clock and asks again. Entries belong to the slot, not the job,
//! so a job that ends leaves its entries to the next job in the slot instead of piling up.
//!
//! One loop per thread, created on first use ([`add`]) on a current-thread runtime; it closes
//! every socket it holds when its task is dropped (the runtime stopped).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rvs_core::dest::DestId;
use tokio::io::unix::AsyncFd;
use tokio::time::{Instant, Sleep};

/// Events read by one `epoll_wait`.
const BATCH: usize = 256;

/// Passes (a batch of events, due timers, handlers that asked to run again) before the
/// driver yields to the other tasks of its thread.
const PASSES: usize = 8;

/// Heap entries a slot keeps (see the module docs).
const ARMED: usize = 3;

/// Which of a job's two sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

impl Side {
    pub(crate) fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// A non-blocking TCP socket in a loop's set, with its readiness as last reported.
#[derive(Debug)]
pub(crate) struct Sock {
    pub(crate) stream: TcpStream,
    /// Input, peer shutdown or an error was reported and no read has found it empty since.
    pub(crate) readable: bool,
    /// Room (or an error) was reported and no write has found it full since.
    pub(crate) writable: bool,
    /// `EPOLLERR` was reported and not looked at yet.
    pub(crate) error: bool,
    /// The peer shut its sending side down, or the socket failed (`EPOLLRDHUP`, `EPOLLHUP`,
    /// `EPOLLERR`). Sticky: an EOF that arrived with the last bytes raises no edge of its
    /// own after a read that took the bytes.
    pub(crate) read_closed: bool,
    /// The socket can send no more (`EPOLLHUP`, `EPOLLERR`: both directions over, a reset,
    /// or a failed connect). Sticky.
    pub(crate) write_closed: bool,
}

impl Sock {
    /// A socket not yet in any set; `stream` must be non-blocking.
    pub(crate) fn new(stream: TcpStream) -> Sock {
        Sock {
            stream,
            readable: false,
            writable: false,
            error: false,
            read_closed: false,
            write_closed: false,
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Close with a reset (SO_LINGER 0) rather than a FIN when dropped.
    pub(crate) fn reset_on_close(&self) {
        let _ = crate::tcpinfo::reset_on_close(self.fd());
    }

    /// The pending socket error (`SO_ERROR`), clearing the error flag.
    pub(crate) fn take_error(&mut self) -> io::Result<Option<io::Error>> {
        self.error = false;
        self.stream.take_error()
    }

    /// A read may find something (bytes, EOF or an error).
    pub(crate) fn can_read(&self) -> bool {
        self.readable || self.read_closed
    }

    /// A write may do something (send, or fail).
    pub(crate) fn can_write(&self) -> bool {
        self.writable || self.write_closed
    }

    fn apply(&mut self, ev: u32) {
        const CLOSED: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        const FAILED: u32 = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
        self.readable |= ev & libc::EPOLLIN as u32 != 0;
        self.writable |= ev & libc::EPOLLOUT as u32 != 0;
        self.read_closed |= ev & CLOSED != 0;
        self.write_closed |= ev & FAILED != 0;
        self.error |= ev & libc::EPOLLERR as u32 != 0;
    }
}

/// What a job wants after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Waiting for readiness or its deadline.
    Wait,
    /// More to do now: run again after the others of this pass.
    Again,
    /// Over: the loop drops the job (closing its sockets).
    Done,
}

/// A connection the loop drives: two sockets and what to do when they are ready.
pub(crate) trait Job {
    /// Called after an event on one of its sockets (flags set), at (or after) its deadline,
    /// after [`Step::Again`] and after [`Job::set_paused`]; also once before the job joins
    /// the loop when it is added with [`run_then_add`]. `now` is the time of the pass.
    fn run(&mut self, now: Instant) -> Step;
    /// The job's socket on `side`.
    fn sock(&mut self, side: Side) -> &mut Sock;
    /// When the job wants to run even without an event.
    fn deadline(&self) -> Option<Instant>;
    /// The real server the job's connection goes to, if pausing applies to it.
    fn dest(&self) -> Option<DestId> {
        None
    }
    /// The real server became unavailable (`true`) or available again (`false`).
    fn set_paused(&mut self, _paused: bool, _now: Instant) {}
    /// The job never got into the loop (its sockets could not be registered, or the thread
    /// has no loop any more) and is about to be dropped, its sockets set to close with a
    /// reset. Added with [`run_then_add`], it may have run once and moved bytes before.
    fn abandon(&mut self) {}
    /// A send the job posted to its socket on `side` ([`crate::sendq::post`]) was made: the
    /// bytes sent, or a negated errno. The job runs again in the next pass.
    fn sent(&mut self, _side: Side, _result: i32) {}
}

/// Identifies a job for [`cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobId {
    /// the loop it was added to ([`Reactor::id`])
    in_loop: u64,
    slot: u32,
    gen: u32,
}

/// Numbers loops, so a job id never names a job of another loop.
static NEXT_LOOP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

struct Slot {
    gen: u32,
    job: Option<Box<dyn Job>>,
    /// In `ready` already.
    queued: bool,
    /// Times this slot has entries for in the heap.
    armed: [Option<Instant>; ARMED],
}

/// Jobs per real server, and whether they were told to pause.
#[derive(Default)]
struct DestJobs {
    jobs: usize,
    paused: bool,
}

/// A thread's TCP event loop (see the module docs).
pub(crate) struct Reactor {
    ep: AsyncFd<OwnedFd>,
    /// Where the sends of a pass are made together; `None` without io_uring (then the jobs
    /// send directly).
    ring: Option<crate::sendq::Ring>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    events: Vec<libc::epoll_event>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    sleep: Pin<Box<Sleep>>,
    sleep_at: Option<Instant>,
    /// Jobs to run in this pass (events, timers, pause changes), as (slot, generation): an
    /// entry left by a job that was cancelled meanwhile does not run the slot's next job.
    ready: Vec<(u32, u32)>,
    /// Jobs that asked to run again: next pass (they count as queued meanwhile).
    again: Vec<(u32, u32)>,
    dests: HashMap<DestId, DestJobs>,
    /// The driver's waker, for changes made from outside its task.
    waker: Option<Waker>,
    /// Alive while the driver task exists.
    driver: Weak<()>,
    /// This loop's number (unique in the process).
    id: u64,
}

thread_local! {
    static LOOP: RefCell<Option<Reactor>> = const { RefCell::new(None) };
}

/// The token of an epoll registration: slot, generation (31 bits), side.
fn token(slot: u32, gen: u32, side: Side) -> u64 {
    (u64::from(slot) << 32) | (u64::from(gen & 0x7fff_ffff) << 1) | u64::from(side == Side::Server)
}

fn untoken(t: u64) -> (u32, u32, Side) {
    let side = if t & 1 == 1 {
        Side::Server
    } else {
        Side::Client
    };
    ((t >> 32) as u32, ((t >> 1) & 0x7fff_ffff) as u32, side)
}

/// Adds `job` to this thread's loop (creating the loop and its task on first use; the
/// runtime must be a current-thread one) and registers both its sockets. On failure the
/// job is dropped, its sockets closed with a reset.
pub(crate) fn add(job: Box<dyn Job>) -> io::Result<JobId> {
    let mut job = Some(job);
    let r = with_loop(|r| r.add(job.take().expect("the job is added once")));
    if let Some(job) = job {
        // the loop could not be reached: the job never got in
        abandon(job);
    }
    r?
}

/// Calls one of a job's handlers; `None` when it panicked (logged, with `then`: what follows
/// for the job): one connection's bug must not take the worker's others down with it.
fn guarded<T>(then: &str, f: impl FnOnce() -> T) -> Option<T> {
    let r = std::panic::catch_unwind(AssertUnwindSafe(f));
    if r.is_err() {
        tracing::error!("a TCP connection's handler panicked: {then}");
    }
    r.ok()
}

/// Runs `job`; `None` when its handler panicked: its sockets are then reset.
fn run_guarded(job: &mut dyn Job, now: Instant) -> Option<Step> {
    guarded("both its sockets are reset", || job.run(now))
}

/// Drops a job whose handler panicked: both its sockets close with a reset, and a panic
/// while resetting or dropping stays with it too.
fn discard_panicked(mut job: Box<dyn Job>) {
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        job.sock(Side::Client).reset_on_close();
        job.sock(Side::Server).reset_on_close();
    }));
    let _ = std::panic::catch_unwind(AssertUnwindSafe(move || drop(job)));
}

/// Drops a job that could not join the loop: both sockets close with a reset, and the job
/// hears of it first ([`Job::abandon`]).
fn abandon(mut job: Box<dyn Job>) {
    job.sock(Side::Client).reset_on_close();
    job.sock(Side::Server).reset_on_close();
    job.abandon();
}

/// Runs a new `job` once, now, and then adds it to this thread's loop (as [`add`]) unless
/// that run ended it. For a job whose sockets [`look`] found ready: its first bytes move
/// before the thread's other work instead of after it. A run that panics resets both
/// sockets, as in the loop. `Ok(None)`: the job is over (or panicked) and was dropped.
pub(crate) fn run_then_add(mut job: Box<dyn Job>, now: Instant) -> io::Result<Option<JobId>> {
    let again = match run_guarded(job.as_mut(), now) {
        Some(Step::Done) => return Ok(None),
        Some(Step::Wait) => false,
        Some(Step::Again) => true,
        None => {
            discard_panicked(job);
            return Ok(None);
        }
    };
    let mut job = Some(job);
    let r = with_loop(|r| {
        let id = r.add(job.take().expect("the job is added once"))?;
        if again {
            r.queue(id.slot);
        }
        Ok(id)
    });
    if let Some(job) = job {
        abandon(job);
    }
    r?.map(Some)
}

/// Looks, without waiting (one `poll`), at what the two sockets of a job not yet in a loop
/// already have, and sets their flags as the loop's events would: input, room or the
/// peer's shutdown on `client`; room, a finished connect or an error on `server`. True when
/// `server` reported anything, that is when its connect is over, one way or the other. A
/// connect to a real server on the same host is usually over before `connect()` returns:
/// the kernel usually runs the whole handshake inside the call.
pub(crate) fn look(client: &mut Sock, server: &mut Sock) -> bool {
    let mut fds = [
        libc::pollfd {
            fd: client.fd(),
            events: libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP,
            revents: 0,
        },
        libc::pollfd {
            fd: server.fd(),
            events: libc::POLLOUT,
            revents: 0,
        },
    ];
    // SAFETY: `fds` holds two pollfd entries, which poll reads and whose `revents` it writes;
    // a zero timeout never waits.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 0) };
    if n <= 0 {
        return false;
    }
    // poll's bits are epoll's, so the flags are set by the code that reads the loop's events
    const _: () = assert!(
        libc::POLLIN as i32 == libc::EPOLLIN
            && libc::POLLOUT as i32 == libc::EPOLLOUT
            && libc::POLLERR as i32 == libc::EPOLLERR
            && libc::POLLHUP as i32 == libc::EPOLLHUP
            && libc::POLLRDHUP as i32 == libc::EPOLLRDHUP
    );
    client.apply(fds[0].revents as u16 as u32);
    server.apply(fds[1].revents as u16 as u32);
    fds[1].revents != 0
}

/// Drops the job `id` (its sockets close as they are) if it is still in this thread's loop.
pub(crate) fn cancel(id: JobId) {
    let job = LOOP
        .try_with(|cell| {
            cell.try_borrow_mut()
                .ok()
                .and_then(|mut g| g.as_mut().and_then(|r| r.remove(id)))
        })
        .ok()
        .flatten();
    drop(job);
}

/// Tells the jobs whose real server changed availability (`available(dest)`) to pause or
/// go on. Does nothing when this thread has no loop.
pub(crate) fn check_dests(available: impl Fn(DestId) -> bool) {
    let _ = LOOP.try_with(|cell| {
        if let Ok(mut g) = cell.try_borrow_mut() {
            if let Some(r) = g.as_mut() {
                r.check_dests(available, Instant::now());
            }
        }
    });
}

/// The real servers this thread's loop has jobs for (empty without a loop).
pub(crate) fn dests() -> Vec<DestId> {
    LOOP.try_with(|cell| {
        cell.try_borrow()
            .ok()
            .and_then(|g| g.as_ref().map(|r| r.dests.keys().copied().collect()))
            .unwrap_or_default()
    })
    .unwrap_or_default()
}

/// Accepts one connection from a non-blocking listener: a non-blocking, close-on-exec
/// socket (one `accept4`) and the peer's address.
pub(crate) fn accept(l: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    // SAFETY: sockaddr_storage is plain data that may be all zeroes.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: accept4 writes at most `len` bytes of address into `storage` and the new
    // descriptor is returned (or -1); no other memory is touched.
    let fd = unsafe {
        libc::accept4(
            l.as_raw_fd(),
            std::ptr::addr_of_mut!(storage).cast::<libc::sockaddr>(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor owned by nobody else.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    // SAFETY: the kernel filled `storage` with an address of `len` bytes.
    let addr = unsafe { socket2::SockAddr::new(storage, len) };
    let peer = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("accepted a connection without an IP address"))?;
    Ok((stream, peer))
}

fn with_loop<T>(f: impl FnOnce(&mut Reactor) -> T) -> io::Result<T> {
    LOOP.try_with(|cell| {
        let mut g = cell
            .try_borrow_mut()
            .map_err(|_| io::Error::other("the TCP event loop is busy"))?;
        if g.as_ref().is_none_or(|r| r.driver.strong_count() == 0) {
            let handle = tokio::runtime::Handle::try_current()
                .map_err(|_| io::Error::other("the TCP event loop needs a tokio runtime"))?;
            if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
                return Err(io::Error::other(
                    "the TCP event loop needs a current-thread tokio runtime",
                ));
            }
            let alive = Arc::new(());
            let old = g.replace(Reactor::new(Arc::downgrade(&alive))?);
            drop(old); // a loop whose runtime is gone: its sockets close
            handle.spawn(Driver { alive });
        }
        Ok(f(g.as_mut().expect("the loop was just made")))
    })
    .map_err(|_| io::Error::other("the thread is exiting"))?
}

impl Drop for Reactor {
    fn drop(&mut self) {
        // passes end with their posts made; this covers a pass that did not end
        self.submit_posts();
    }
}

/// The task that drives this thread's loop.
struct Driver {
    alive: Arc<()>,
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let alive = Arc::downgrade(&self.alive);
        LOOP.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut g) => match g.as_mut() {
                Some(r) if r.driver.ptr_eq(&alive) => r.poll(cx),
                _ => Poll::Ready(()),
            },
            Err(_) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .unwrap_or(Poll::Ready(()))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let alive = Arc::downgrade(&self.alive);
        // taken out first, dropped after the borrow: dropping jobs must not find it held
        let r = LOOP
            .try_with(|cell| {
                let mut g = cell.try_borrow_mut().ok()?;
                if g.as_ref().is_some_and(|r| r.driver.ptr_eq(&alive)) {
                    g.take()
                } else {
                    None
                }
            })
            .ok()
            .flatten();
        drop(r);
    }
}

/// Registers an owned descriptor with the current runtime for readability.
pub(crate) fn register<T: AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T` owns its descriptor (an `OwnedFd` or a std socket), which stays open and
    // the same for as long as the `AsyncFd` holds it.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; returns a new descriptor or -1.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Reactor {
    fn new(driver: Weak<()>) -> io::Result<Reactor> {
        let ep = register(epoll_create()?)?;
        let ring = match crate::sendq::Ring::new() {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!("TCP event loop without io_uring ({e}): one send() per message");
                None
            }
        };
        Ok(Reactor {
            ep,
            ring,
            slots: Vec::new(),
            free: Vec::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; BATCH],
            timers: BinaryHeap::new(),
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            sleep_at: None,
            ready: Vec::new(),
            again: Vec::new(),
            dests: HashMap::new(),
            waker: None,
            driver,
            id: NEXT_LOOP.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    fn register(&self, fd: RawFd, data: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: data,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        let rc = unsafe {
            libc::epoll_ctl(
                self.ep.get_ref().as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd,
                &mut ev,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn add(&mut self, mut job: Box<dyn Job>) -> io::Result<JobId> {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                let s = u32::try_from(self.slots.len())
                    .map_err(|_| io::Error::other("too many connections in one event loop"))?;
                self.slots.push(Slot {
                    gen: 0,
                    job: None,
                    queued: false,
                    armed: [None; ARMED],
                });
                s
            }
        };
        let gen = self.slots[slot as usize].gen;
        let mut reg = Ok(());
        for side in [Side::Client, Side::Server] {
            let fd = job.sock(side).fd();
            if reg.is_ok() {
                reg = self.register(fd, token(slot, gen, side));
            }
        }
        if let Err(e) = reg {
            abandon(job);
            // a socket that did get in leaves the set when the job drops it; its token is
            // retired all the same
            let s = &mut self.slots[slot as usize];
            s.gen = s.gen.wrapping_add(1) & 0x7fff_ffff;
            self.free.push(slot);
            return Err(e);
        }
        if let Some(d) = job.dest() {
            self.dests.entry(d).or_default().jobs += 1;
        }
        let deadline = job.deadline();
        self.slots[slot as usize].job = Some(job);
        self.arm(slot, deadline);
        self.wake_driver();
        Ok(JobId {
            in_loop: self.id,
            slot,
            gen,
        })
    }

    /// Takes job `id` out (the caller drops it, outside any borrow of the loop).
    fn remove(&mut self, id: JobId) -> Option<Box<dyn Job>> {
        if id.in_loop != self.id {
            return None; // a job of another thread's loop, or of a loop since replaced
        }
        let s = self.slots.get_mut(id.slot as usize)?;
        if s.gen != id.gen || s.job.is_none() {
            return None;
        }
        self.take(id.slot)
    }

    fn take(&mut self, slot: u32) -> Option<Box<dyn Job>> {
        // a posted send may point into this job's buffers and at its sockets
        self.submit_posts();
        let s = &mut self.slots[slot as usize];
        let job = s.job.take()?;
        s.gen = s.gen.wrapping_add(1) & 0x7fff_ffff;
        s.queued = false;
        self.free.push(slot);
        if let Some(d) = job.dest() {
            if let Some(e) = self.dests.get_mut(&d) {
                e.jobs -= 1;
                if e.jobs == 0 {
                    self.dests.remove(&d);
                }
            }
        }
        Some(job)
    }

    /// Takes a job out after its handler panicked: its sockets close with a reset.
    fn abort(&mut self, slot: u32) {
        if let Some(job) = self.take(slot) {
            discard_panicked(job);
        }
    }

    fn wake_driver(&self) {
        if let Some(w) = &self.waker {
            w.wake_by_ref();
        }
    }

    fn queue(&mut self, slot: u32) {
        let s = &mut self.slots[slot as usize];
        if !s.queued && s.job.is_some() {
            s.queued = true;
            self.ready.push((slot, s.gen));
        }
    }

    /// Makes sure the heap has an entry of `slot` no later than `deadline`.
    fn arm(&mut self, slot: u32, deadline: Option<Instant>) {
        let Some(d) = deadline else { return };
        let armed = &mut self.slots[slot as usize].armed;
        if armed.iter().flatten().any(|a| *a <= d) {
            return;
        }
        // a free place, or forget the latest entry (it fires, finds itself forgotten, and
        // does nothing)
        let i = armed.iter().position(Option::is_none).unwrap_or_else(|| {
            (0..ARMED)
                .max_by_key(|&i| armed[i])
                .expect("ARMED is not zero")
        });
        armed[i] = Some(d);
        self.timers.push(Reverse((d, slot)));
    }

    fn check_dests(&mut self, available: impl Fn(DestId) -> bool, now: Instant) {
        let mut changed = HashMap::new();
        for (d, e) in self.dests.iter_mut() {
            let pause = !available(*d);
            if pause != e.paused {
                e.paused = pause;
                changed.insert(*d, pause);
            }
        }
        if changed.is_empty() {
            return;
        }
        for slot in 0..self.slots.len() {
            let Some(job) = self.slots[slot].job.as_mut() else {
                continue;
            };
            if let Some(&pause) = job.dest().and_then(|d| changed.get(&d)) {
                job.set_paused(pause, now);
                self.queue(slot as u32);
            }
        }
        self.wake_driver();
    }

    /// Reads one batch of events without blocking; true when there may be more. It reads on
    /// every pass, whatever the runtime last saw of the set: while jobs are busy the runtime
    /// polls its own events only now and then, and new events must not wait for that.
    fn read_events(&mut self) -> io::Result<bool> {
        // SAFETY: `events` has room for BATCH entries, which the kernel fills from the start.
        let n = unsafe {
            libc::epoll_wait(
                self.ep.get_ref().as_raw_fd(),
                self.events.as_mut_ptr(),
                BATCH as libc::c_int,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(true)
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        for i in 0..n {
            let (slot, gen, side) = untoken(self.events[i].u64);
            let ev = self.events[i].events;
            let Some(s) = self.slots.get_mut(slot as usize) else {
                continue;
            };
            if s.gen != gen {
                continue; // a job that ended earlier in this batch
            }
            let Some(job) = s.job.as_mut() else { continue };
            job.sock(side).apply(ev);
            self.queue(slot);
        }
        Ok(n == BATCH)
    }

    /// Queues the jobs whose heap entries are due.
    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((t, slot))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let armed = &mut self.slots[slot as usize].armed;
            if let Some(a) = armed.iter_mut().find(|a| **a == Some(t)) {
                *a = None;
                self.queue(slot);
            }
        }
    }

    fn run_jobs(&mut self, now: Instant) {
        let mut list = std::mem::take(&mut self.ready);
        list.append(&mut self.again);
        for &(slot, gen) in &list {
            let s = &mut self.slots[slot as usize];
            if s.gen != gen {
                continue;
            }
            s.queued = false;
            let Some(job) = s.job.as_mut() else { continue };
            if self.ring.is_some() {
                crate::sendq::open(Some(token(slot, gen, Side::Client)));
            }
            let step = run_guarded(job.as_mut(), now);
            crate::sendq::open(None);
            let Some(step) = step else {
                self.abort(slot);
                continue;
            };
            let Some(job) = self.slots[slot as usize].job.as_mut() else {
                continue;
            };
            match step {
                Step::Wait => {
                    let d = job.deadline();
                    self.arm(slot, d);
                }
                Step::Again => {
                    let d = job.deadline();
                    self.arm(slot, d);
                    // queued: an event before the next pass does not list it twice
                    self.slots[slot as usize].queued = true;
                    self.again.push((slot, gen));
                }
                Step::Done => drop(self.take(slot)),
            }
        }
        list.clear();
        // keep the allocation; jobs queued meanwhile (none today) are kept too
        list.append(&mut self.ready);
        self.ready = list;
        self.submit_posts();
    }

    /// Makes the sends the pass's jobs posted, in one system call, and tells each job how
    /// its send went (the job runs again in the next pass).
    fn submit_posts(&mut self) {
        if !crate::sendq::pending() {
            return;
        }
        let Some(mut ring) = self.ring.take() else {
            return;
        };
        ring.submit(|t, result| {
            let (slot, gen, side) = untoken(t);
            let Some(s) = self.slots.get_mut(slot as usize) else {
                return;
            };
            if s.gen != gen {
                return;
            }
            let Some(job) = s.job.as_mut() else { return };
            guarded("on a send's result; it runs again", || {
                job.sent(side, result)
            });
            self.queue(slot);
        });
        self.ring = Some(ring);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.waker = Some(cx.waker().clone());
        }
        for _ in 0..PASSES {
            let more = match self.read_events() {
                Ok(more) => more,
                Err(e) => {
                    tracing::error!("TCP event loop: epoll: {e}");
                    false
                }
            };
            let now = Instant::now();
            self.fire_timers(now);
            self.run_jobs(now);
            if more || !self.again.is_empty() || !self.ready.is_empty() {
                continue;
            }
            // waiting: the earliest timer, then the set's readiness as the runtime sees it
            if let Some(&Reverse((t, _))) = self.timers.peek() {
                if self.sleep_at != Some(t) {
                    self.sleep.as_mut().reset(t);
                    self.sleep_at = Some(t);
                }
                if self.sleep.as_mut().poll(cx).is_ready() {
                    continue;
                }
            }
            match self.ep.poll_read_ready(cx) {
                Poll::Pending => return Poll::Pending,
                // Readiness the runtime saw, maybe of events read since: forget it and look
                // again. An event after that look raises a new edge on the set's descriptor,
                // which the runtime sees at its next wait (the waker is registered then).
                Poll::Ready(Ok(mut guard)) => guard.clear_ready(),
                Poll::Ready(Err(e)) => {
                    tracing::error!("TCP event loop: {e}");
                    return Poll::Pending;
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A job over two connected sockets: counts its runs, panics on its first if asked,
    /// answers `first` on its first run and waits after that.
    struct Probe {
        socks: [Sock; 2],
        runs: Arc<AtomicUsize>,
        panics: bool,
        first: Step,
    }

    impl Job for Probe {
        fn run(&mut self, _now: Instant) -> Step {
            let n = self.runs.fetch_add(1, Ordering::SeqCst);
            assert!(!self.panics, "a handler's bug");
            if n == 0 {
                self.first
            } else {
                Step::Wait
            }
        }
        fn sock(&mut self, side: Side) -> &mut Sock {
            &mut self.socks[usize::from(side == Side::Server)]
        }
        fn deadline(&self) -> Option<Instant> {
            None
        }
    }

    /// (the job's end, the peer's end) of a loopback TCP connection.
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        (b, a)
    }

    #[test]
    fn a_panicking_handler_costs_its_own_connection_only() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (bad_runs, good_runs) =
                (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let (b1, mut p1) = pair();
            let (b2, _p2) = pair();
            let (g1, mut q1) = pair();
            let (g2, _q2) = pair();
            let bad = Probe {
                socks: [Sock::new(b1), Sock::new(b2)],
                runs: bad_runs.clone(),
                panics: true,
                first: Step::Wait,
            };
            let good = Probe {
                socks: [Sock::new(g1), Sock::new(g2)],
                runs: good_runs.clone(),
                panics: false,
                first: Step::Wait,
            };
            add(Box::new(bad)).unwrap();
            add(Box::new(good)).unwrap();
            p1.write_all(b"x").unwrap();
            q1.write_all(b"y").unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while (bad_runs.load(Ordering::SeqCst) == 0 || good_runs.load(Ordering::SeqCst) == 0)
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(bad_runs.load(Ordering::SeqCst), 1);
            // the panicking job is gone with a reset; the other one still runs on events
            p1.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 8];
            let e = p1.read(&mut buf).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
            let before = good_runs.load(Ordering::SeqCst);
            q1.write_all(b"z").unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while good_runs.load(Ordering::SeqCst) == before && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(
                good_runs.load(Ordering::SeqCst) > before,
                "the loop goes on"
            );
        });
    }

    /// CPU time this thread has used.
    fn thread_cpu() -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec for the call to fill.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert_eq!(rc, 0);
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// After traffic the loop sleeps until the next event: the driver's passes and its wake-up
    /// of itself after [`PASSES`] never turn into spinning on the CPU.
    #[test]
    fn a_loop_without_events_sleeps() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let runs = Arc::new(AtomicUsize::new(0));
            let (b1, mut p1) = pair();
            let (b2, _p2) = pair();
            add(Box::new(Probe {
                socks: [Sock::new(b1), Sock::new(b2)],
                runs: runs.clone(),
                panics: false,
                first: Step::Wait,
            }))
            .unwrap();
            for _ in 0..20 {
                p1.write_all(b"x").unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while runs.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(runs.load(Ordering::SeqCst) > 0, "the job ran on its events");
            let before = thread_cpu();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let used = thread_cpu() - before;
            assert!(
                used < Duration::from_millis(50),
                "the idle loop used {used:?} of CPU in 300 ms"
            );
        });
    }

    /// Waits up to 5 s for `cond`.
    async fn until(cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !cond() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A job run before it joins the loop: one that ends there never joins it (its sockets
    /// close), one that panics costs its own sockets only (reset), one that waits joins
    /// the loop and runs again on its next event.
    #[test]
    fn a_job_run_before_it_is_added() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let probe = |panics, first| {
                let (a, pa) = pair();
                let (b, pb) = pair();
                let runs = Arc::new(AtomicUsize::new(0));
                let job = Probe {
                    socks: [Sock::new(a), Sock::new(b)],
                    runs: runs.clone(),
                    panics,
                    first,
                };
                pa.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                (Box::new(job), runs, pa, pb)
            };
            let mut buf = [0u8; 8];

            let (job, runs, mut peer, _pb) = probe(false, Step::Done);
            assert!(run_then_add(job, Instant::now()).unwrap().is_none());
            assert_eq!(runs.load(Ordering::SeqCst), 1);
            assert_eq!(peer.read(&mut buf).unwrap(), 0, "closed with a FIN");

            let (job, runs, mut peer, _pb) = probe(true, Step::Wait);
            assert!(run_then_add(job, Instant::now()).unwrap().is_none());
            assert_eq!(runs.load(Ordering::SeqCst), 1);
            let e = peer.read(&mut buf).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);

            let (job, runs, mut peer, _pb) = probe(false, Step::Wait);
            assert!(run_then_add(job, Instant::now()).unwrap().is_some());
            assert_eq!(
                runs.load(Ordering::SeqCst),
                1,
                "ran before joining the loop"
            );
            // joining reports what the sockets have then; after that, the next event
            until(|| runs.load(Ordering::SeqCst) >= 2).await;
            let before = runs.load(Ordering::SeqCst);
            peer.write_all(b"x").unwrap();
            until(|| runs.load(Ordering::SeqCst) > before).await;
            assert!(
                runs.load(Ordering::SeqCst) > before,
                "runs on events in the loop"
            );
        });
    }

    /// A loopback socket whose send buffer is full (its peer reads nothing): no room.
    fn full() -> (TcpStream, TcpStream) {
        let (mut a, b) = pair();
        let chunk = [0u8; 65536];
        loop {
            match a.write(&chunk) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("filling a socket: {e}"),
            }
        }
        (a, b)
    }

    /// A job that is not done after its first run ([`Step::Again`]) runs again with no event
    /// at all; one that waits ([`Step::Wait`]) does not. Both sockets have no room and no
    /// input, so joining the loop reports nothing for them.
    #[test]
    fn a_job_that_asks_again_before_it_is_added_runs_again() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut keep = Vec::new();
            let mut job = |first| {
                let (a, pa) = full();
                let (b, pb) = full();
                keep.push((pa, pb));
                let runs = Arc::new(AtomicUsize::new(0));
                let job = Probe {
                    socks: [Sock::new(a), Sock::new(b)],
                    runs: runs.clone(),
                    panics: false,
                    first,
                };
                (Box::new(job), runs)
            };
            let (waits, wait_runs) = job(Step::Wait);
            let (again, again_runs) = job(Step::Again);
            run_then_add(waits, Instant::now()).unwrap().unwrap();
            run_then_add(again, Instant::now()).unwrap().unwrap();
            until(|| again_runs.load(Ordering::SeqCst) >= 2).await;
            assert_eq!(again_runs.load(Ordering::SeqCst), 2, "ran again, once");
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(
                wait_runs.load(Ordering::SeqCst),
                1,
                "nothing woke the waiting job"
            );
        });
    }

    /// `look` reports a connect that finished inside `connect()` (loopback) and input that
    /// waits, as the loop's events would; a refused connect shows as an error; a server
    /// socket with nothing to report (no room) is "not over" and leaves its flags alone.
    #[test]
    fn look_sees_a_finished_connect_and_waiting_input() {
        // the data plane's own non-blocking connect
        let connecting = crate::tcp::connect;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        // the kernel usually finishes a loopback handshake inside connect(); a busy machine
        // may leave it to a kernel thread for a moment, so a few fresh connects are allowed
        let mut seen = None;
        for _ in 0..50 {
            let (c, mut pc) = pair();
            pc.write_all(b"GET /").unwrap();
            let mut client = Sock::new(c);
            let mut server = Sock::new(connecting(l.local_addr().unwrap()).unwrap());
            if look(&mut client, &mut server) {
                seen = Some((client, server, pc));
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (client, server, _pc) = seen.expect("a loopback connect over within 50 tries");
        assert!(server.writable && !server.error && !server.write_closed);
        assert!(client.readable && client.writable && !client.read_closed);

        // nothing waits on a fresh client socket
        let (c2, _pc2) = pair();
        let mut client = Sock::new(c2);
        let mut server = Sock::new(connecting(l.local_addr().unwrap()).unwrap());
        look(&mut client, &mut server);
        assert!(!client.readable && client.writable);

        // no room on the server socket: nothing to report, nothing set
        let (c3, _pc3) = pair();
        let (s3, _ps3) = full();
        let mut client = Sock::new(c3);
        let mut server = Sock::new(s3);
        assert!(!look(&mut client, &mut server));
        assert!(!server.writable && !server.error && !server.write_closed);

        // a port nobody listens on: the refusal is in by the time connect() returns
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = closed.local_addr().unwrap();
        drop(closed);
        if let Ok(s) = connecting(to) {
            let (c4, _pc4) = pair();
            let mut client = Sock::new(c4);
            let mut server = Sock::new(s);
            if look(&mut client, &mut server) {
                assert!(server.error && server.write_closed);
                let e = server.take_error().unwrap().expect("the connect's error");
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
            }
        }
    }

    /// Posts a send of its message to its server-side socket on its first run, in the loop,
    /// and ends in that same run; tells whether posting was open and what the send did.
    struct PostAndEnd {
        socks: [Sock; 2],
        msg: Vec<u8>,
        posted: Arc<AtomicUsize>,
        result: Arc<std::sync::atomic::AtomicI32>,
    }

    impl Job for PostAndEnd {
        fn run(&mut self, _now: Instant) -> Step {
            if crate::sendq::post(self.socks[1].fd(), &self.msg, Side::Server) {
                self.posted.fetch_add(1, Ordering::SeqCst);
            }
            Step::Done
        }
        fn sock(&mut self, side: Side) -> &mut Sock {
            &mut self.socks[usize::from(side == Side::Server)]
        }
        fn deadline(&self) -> Option<Instant> {
            None
        }
        fn sent(&mut self, _side: Side, result: i32) {
            self.result.store(result, Ordering::SeqCst);
        }
    }

    /// A job that posts a send and ends in the same run is dropped (its sockets closed) only
    /// after the send is made: its peer gets the bytes, then the FIN, never a closed or
    /// reused descriptor's error.
    #[test]
    fn a_posted_send_is_made_before_its_job_is_dropped() {
        if !crate::sendq::tests::ring_here() {
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, mut pa) = pair();
            let (b, mut pb) = pair();
            let (posted, result) = (Arc::new(AtomicUsize::new(0)), Arc::default());
            let job = PostAndEnd {
                socks: [Sock::new(a), Sock::new(b)],
                msg: b"the last words".to_vec(),
                posted: posted.clone(),
                result: Arc::clone(&result),
            };
            add(Box::new(job)).unwrap();
            pa.write_all(b"go").unwrap();
            pb.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let got = tokio::task::spawn_blocking(move || {
                let mut got = Vec::new();
                pb.read_to_end(&mut got).map(|_| got)
            })
            .await
            .unwrap()
            .expect("the bytes, then a FIN");
            assert_eq!(
                posted.load(Ordering::SeqCst),
                1,
                "posted in the loop's pass"
            );
            assert_eq!(got, b"the last words");
            assert_eq!(result.load(Ordering::SeqCst), 14, "told of its send");
        });
    }

    #[test]
    fn tokens_round_trip() {
        for (slot, gen, side) in [
            (0, 0, Side::Client),
            (7, 3, Side::Server),
            (u32::MAX, 0x7fff_ffff, Side::Server),
        ] {
            assert_eq!(untoken(token(slot, gen, side)), (slot, gen, side));
        }
    }
}
