//! The sends of one pass of a worker's TCP event loop, made together in one system call.
//!
//! **Why.** On a machine where the balancer shares its CPUs with clients and servers, each
//! `send()` that wakes a sleeping peer (a real server waiting for a request, a client waiting
//! for its response) lets that peer take the balancer's CPU when the call returns: the woken
//! task has had less than its share, the balancer more. A pass that forwards 30 requests
//! then runs as 30 slices of a few microseconds, each followed by a context switch to a peer
//! that handles one message and sleeps again. Sends gathered over the pass and handed to the
//! kernel in one `io_uring_enter` wake the same peers, but the balancer keeps the CPU until
//! that one call returns, and each woken peer then finds all its messages at once.
//!
//! **How.** While the loop runs a job, posting is open with that job's token
//! ([`open`]); the relay's copy mode then keeps what it received in the direction's own
//! buffer and [`post`]s a send of it instead of calling `send()`. After the pass the loop
//! submits every post ([`Ring::submit`]) as `IORING_OP_SEND` with `MSG_DONTWAIT`: a socket
//! send that cannot go at once completes with `EAGAIN` instead of waiting, so the call
//! returns with every completion, and the loop hands each result to its job
//! ([`crate::reactor::Job::sent`]), which updates its buffer and flags as after a `send()`.
//!
//! **Safety.** A post holds a raw pointer into a job's buffer and the job's socket
//! descriptor. The job must keep both (not touch the buffer, not close the socket) until
//! its completion arrives; the loop submits the posts before it takes any job out of its
//! set. Posting is open only inside the loop's passes, so a job run anywhere else sends
//! directly. Without io_uring's send (a kernel before 5.6, `kernel.io_uring_disabled`, a
//! seccomp filter), or with `RVS_IO_URING=0` in the environment, the loop has no ring and
//! posting never opens.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring};

use crate::reactor::Side;

/// Submission queue entries of a thread's ring; a pass with more posts submits them in rounds.
const ENTRIES: u32 = 256;

/// One send waiting for the end of the pass.
struct Post {
    fd: RawFd,
    ptr: *const u8,
    len: u32,
    token: u64,
}

thread_local! {
    /// Whether a loop made on this thread gets a ring (tests turn it off).
    static WANTED: Cell<bool> = const { Cell::new(true) };
    /// The token of the job that runs now, while posting is open (its lowest bit clear: the
    /// side goes there).
    static OPEN: Cell<Option<u64>> = const { Cell::new(None) };
    static POSTS: RefCell<Vec<Post>> = const { RefCell::new(Vec::new()) };
}

/// Opens posting for the job with `token` (`None`: closes it).
pub(crate) fn open(token: Option<u64>) {
    let _ = OPEN.try_with(|o| o.set(token.map(|t| t & !1)));
}

/// Whether a send can be posted now.
pub(crate) fn is_open() -> bool {
    OPEN.try_with(|o| o.get().is_some()).unwrap_or(false)
}

/// Posts a send of `buf` to `fd`, the socket on `side` of the running job. False when
/// posting is closed (send directly then). The caller keeps `buf` where it is, unchanged,
/// and the socket open, until its job hears the result.
pub(crate) fn post(fd: RawFd, buf: &[u8], side: Side) -> bool {
    let Some(base) = OPEN.try_with(Cell::get).ok().flatten() else {
        return false;
    };
    let Ok(len) = u32::try_from(buf.len()) else {
        return false;
    };
    let token = base | u64::from(side == Side::Server);
    POSTS
        .try_with(|p| {
            p.borrow_mut().push(Post {
                fd,
                ptr: buf.as_ptr(),
                len,
                token,
            })
        })
        .is_ok()
}

/// Whether sends wait for [`Ring::submit`].
pub(crate) fn pending() -> bool {
    POSTS.try_with(|p| !p.borrow().is_empty()).unwrap_or(false)
}

/// A thread's io_uring instance.
pub(crate) struct Ring {
    ring: IoUring,
    /// The posts being submitted (kept for their allocation).
    batch: Vec<Post>,
}

/// Whether loops made on this thread from now on make their sends together (the default),
/// or one `send()` per message.
#[cfg(test)]
pub(crate) fn want_ring_here(want: bool) {
    WANTED.with(|w| w.set(want));
}

impl Ring {
    /// A ring, or the reason there is none: io_uring is unavailable, or turned off with
    /// `RVS_IO_URING=0` in the environment.
    pub(crate) fn new() -> io::Result<Ring> {
        let off = std::env::var_os("RVS_IO_URING").is_some_and(|v| v == "0");
        if off || !WANTED.try_with(Cell::get).unwrap_or(true) {
            return Err(io::Error::other("turned off"));
        }
        let ring = IoUring::new(ENTRIES)?;
        // io_uring came in Linux 5.1, its send in 5.6
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::Send::CODE) {
            return Err(io::Error::other("this kernel's io_uring has no send"));
        }
        Ok(Ring {
            ring,
            batch: Vec::new(),
        })
    }

    /// Makes every posted send and hands each result to `done(token, result)`: the bytes
    /// sent, or a negated errno (`-EAGAIN`: the socket's buffer was full).
    pub(crate) fn submit(&mut self, mut done: impl FnMut(u64, i32)) {
        let _ = POSTS.try_with(|p| std::mem::swap(&mut *p.borrow_mut(), &mut self.batch));
        let mut rest = &self.batch[..];
        while !rest.is_empty() {
            let mut left = 0;
            {
                let mut sq = self.ring.submission();
                for p in rest {
                    let e = opcode::Send::new(types::Fd(p.fd), p.ptr, p.len)
                        .flags(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                        .build()
                        .user_data(p.token);
                    // SAFETY: the buffer and the socket stay valid until the completion is
                    // read below (module docs).
                    if unsafe { sq.push(&e) }.is_err() {
                        break; // full: the rest goes in the next round
                    }
                    left += 1;
                }
            }
            rest = &rest[left..];
            crate::relay::ops::count(|s| s.batches += 1);
            let mut failures = 0u32;
            while left > 0 {
                if let Err(e) = self.ring.submit_and_wait(left) {
                    if e.raw_os_error() != Some(libc::EINTR) {
                        // Not seen in practice (EAGAIN, EBUSY: the kernel is short of memory).
                        // The sends point into buffers and at descriptors that must not be
                        // reused before they are done: rather than let bytes go to another
                        // connection, the process stops if this does not pass.
                        failures += 1;
                        if failures == 1 {
                            tracing::error!("TCP event loop: io_uring: {e}");
                        }
                        if failures == 1000 {
                            std::process::abort();
                        }
                        std::thread::yield_now();
                    }
                }
                for cqe in self.ring.completion() {
                    left -= 1;
                    done(cqe.user_data(), cqe.result());
                }
            }
        }
        self.batch.clear();
        let _ = POSTS.try_with(|p| {
            let mut p = p.borrow_mut();
            if p.is_empty() {
                std::mem::swap(&mut *p, &mut self.batch);
            }
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::timeout;

    use crate::relay::{self, Counters, Event, Observer, Outcome, RelayOpts};

    const LIMIT: Duration = Duration::from_secs(20);

    struct Quiet;

    impl Observer for Quiet {
        fn event(&mut self, _ev: Event, _c: &Counters) -> bool {
            true
        }
    }

    /// A connected pair: (the app's end, the relay's end).
    async fn connected() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (relay_end, _) = l.accept().await.unwrap();
        (app, relay_end)
    }

    type Relay = tokio::task::JoinHandle<(Outcome, Counters)>;

    /// `n` relays on this thread: (client app, server app, relay task) each.
    async fn relays(n: usize) -> Vec<(TcpStream, TcpStream, Relay)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let (client, relay_client) = connected().await;
            let (server, relay_server) = connected().await;
            let opts = RelayOpts::default();
            let task =
                tokio::spawn(
                    async move { relay::run(relay_client, relay_server, &opts, Quiet).await },
                );
            out.push((client, server, task));
        }
        // every relay in the loop, its first turn (nothing to move) taken
        tokio::time::sleep(Duration::from_millis(20)).await;
        out
    }

    /// Writes one message to every client, all before the loop runs, then reads each at its
    /// server; returns the copy-mode counters' difference.
    async fn one_message_each(rs: &mut [(TcpStream, TcpStream, Relay)]) -> relay::Stats {
        let before = relay::stats();
        for (i, (client, _, _)) in rs.iter_mut().enumerate() {
            client.write_all(&[i as u8; 100]).await.unwrap();
        }
        for (i, (_, server, _)) in rs.iter_mut().enumerate() {
            let mut buf = [0u8; 100];
            timeout(LIMIT, server.read_exact(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(buf, [i as u8; 100], "relay {i} delivered its own message");
        }
        let after = relay::stats();
        relay::Stats {
            sends: after.sends - before.sends,
            batches: after.batches - before.batches,
            held: after.held - before.held,
            ..relay::Stats::default()
        }
    }

    /// Whether this machine gives rvs a ring (not under a seccomp filter that forbids
    /// io_uring, for one); the tests that need one say so and pass without.
    pub(crate) fn ring_here() -> bool {
        match super::Ring::new() {
            Ok(_) => true,
            Err(e) => {
                eprintln!("no io_uring here ({e}): the sends are not made together");
                false
            }
        }
    }

    #[tokio::test]
    async fn the_sends_of_a_pass_go_out_in_one_call() {
        if !ring_here() {
            return;
        }
        let mut rs = relays(8).await;
        let d = one_message_each(&mut rs).await;
        assert_eq!(d.sends, 8);
        // Eight messages that arrived together, one io_uring_enter; two if the kernel put off
        // part of the loopback delivery (a busy machine).
        assert!(
            (1..=2).contains(&d.batches),
            "{} calls for eight sends: {d:?}",
            d.batches
        );
        assert_eq!(d.held, 0);
    }

    /// Sets whether this thread's loop gets a ring, and restores the default when dropped.
    struct Want;

    impl Want {
        fn ring(want: bool) -> Want {
            super::want_ring_here(want);
            Want
        }
    }

    impl Drop for Want {
        fn drop(&mut self) {
            super::want_ring_here(true);
        }
    }

    #[tokio::test]
    async fn without_a_ring_each_message_is_sent_at_once() {
        let _want = Want::ring(false);
        let mut rs = relays(4).await;
        let d = one_message_each(&mut rs).await;
        assert_eq!((d.sends, d.batches), (4, 0), "{d:?}");
        // and the relays still end as usual
        for (client, server, task) in rs {
            drop((client, server));
            let (outcome, _) = timeout(LIMIT, task).await.unwrap().unwrap();
            assert!(!matches!(outcome, Outcome::Error(_)), "{outcome:?}");
        }
    }
}
