//! The relay's non-blocking transfers, one syscall each, and the copy counters.
//!
//! Splice mode: [`read_some`] (socket → pipe) and [`write_some`] (pipe → socket). Copy mode:
//! [`recv_some`] (socket → the thread's scratch buffer, lent by [`with_scratch`]) and
//! [`send_some`] (bytes → socket, `MSG_NOSIGNAL`). A call that finds the socket empty (or
//! full) clears its readiness flag; a call that moved less than it could have clears it too,
//! which saves the syscall that would only say `EAGAIN`: new bytes (or room) raise a new edge.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};

use socket2::SockRef;

use crate::pipe::Pipe;
use crate::reactor::Sock;

/// Size of each thread's copy buffer: a receive that fills it means a bulk transfer.
pub const SCRATCH: usize = 16 * 1024;

/// Copy-mode counters of the calling thread, cumulative since the thread started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// `recv(2)` calls (copy mode).
    pub recvs: u64,
    /// `send(2)` calls (copy mode, remainders included).
    pub sends: u64,
    /// Sends the destination took only in part: the rest was kept in a buffer of its own.
    pub held: u64,
    /// Directions switched from copy to splice (a receive filled the scratch buffer).
    pub to_splice: u64,
    /// Directions switched back from splice to copy (a small burst, then the source empty).
    pub to_copy: u64,
    /// Sends made together at the end of a pass of the event loop (one `io_uring_enter`
    /// each; their sends are counted in `sends`).
    pub batches: u64,
}

impl Stats {
    const ZERO: Stats = Stats {
        recvs: 0,
        sends: 0,
        held: 0,
        to_splice: 0,
        to_copy: 0,
        batches: 0,
    };
}

thread_local! {
    static SCRATCH_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static STATS: Cell<Stats> = const { Cell::new(Stats::ZERO) };
}

/// Adds to this thread's counters.
pub(crate) fn count(f: impl FnOnce(&mut Stats)) {
    let _ = STATS.try_with(|s| {
        let mut v = s.get();
        f(&mut v);
        s.set(v);
    });
}

/// This thread's copy-mode counters (see [`crate::pipe::stats`] for the splice side).
pub fn stats() -> Stats {
    STATS.try_with(Cell::get).unwrap_or_default()
}

/// Lends `f` this thread's scratch buffer ([`SCRATCH`] bytes, allocated on first use).
/// Fails only while the thread exits (or if `f` asked for the buffer again).
pub(super) fn with_scratch<T>(f: impl FnOnce(&mut [u8]) -> T) -> io::Result<T> {
    let unavailable = || io::Error::other("the relay's scratch buffer is unavailable");
    SCRATCH_BUF
        .try_with(|cell| {
            let mut buf = cell.try_borrow_mut().map_err(|_| unavailable())?;
            if buf.len() != SCRATCH {
                buf.resize(SCRATCH, 0);
            }
            Ok(f(&mut buf))
        })
        .map_err(|_| unavailable())?
}

/// Receives into `buf`. `Some(0)` is EOF, `None` means the socket had nothing (its readable
/// flag is cleared).
pub(super) fn recv_some(src: &mut Sock, buf: &mut [u8]) -> io::Result<Option<usize>> {
    count(|s| s.recvs += 1);
    let r = (&src.stream).read(buf);
    // A TCP receive stops short only where the queue ran out (or at an urgent mark, see the
    // module docs of the relay): the socket is empty now.
    read_done(src, r, buf.len())
}

/// Sends from `buf` (never raising `SIGPIPE`); returns how many bytes went out (fewer than
/// `buf.len()`, maybe 0, when the send buffer is full: its writable flag is then cleared).
pub(super) fn send_some(dst: &mut Sock, buf: &[u8]) -> io::Result<usize> {
    count(|s| s.sends += 1);
    let r = SockRef::from(&dst.stream).send_with_flags(buf, libc::MSG_NOSIGNAL);
    write_done(dst, r, buf.len())
}

/// Splices from `src` into the (empty) pipe. `Some(0)` is EOF, `None` means the socket had
/// nothing (its readable flag is cleared).
pub(super) fn read_some(pipe: &mut Pipe, src: &mut Sock) -> io::Result<Option<usize>> {
    debug_assert!(pipe.is_empty());
    let r = pipe.fill_from(src.fd());
    // Each pipe buffer holds at least one byte, so fewer bytes than buffers did not stop at a
    // full pipe: the socket is empty.
    read_done(src, r, pipe.slots())
}

/// Splices the pipe's bytes to `dst`; returns how many went out (0 if the socket was full).
pub(super) fn write_some(pipe: &mut Pipe, dst: &mut Sock) -> io::Result<usize> {
    let want = pipe.len();
    // splice(2) to a socket stops short only where the socket refused more (EAGAIN): its
    // buffer is full.
    match pipe.drain_to(dst.fd()) {
        Ok(0) => Err(io::ErrorKind::WriteZero.into()),
        r => write_done(dst, r, want),
    }
}

/// A read that could take `room` bytes returned `r`: fewer (or `EAGAIN`) means the source is
/// empty now.
fn read_done(src: &mut Sock, r: io::Result<usize>, room: usize) -> io::Result<Option<usize>> {
    match r {
        Ok(n) => {
            if n > 0 && n < room {
                src.readable = false;
            }
            Ok(Some(n))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            src.readable = false;
            Ok(None)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(e) => Err(e),
    }
}

/// A write of `want` bytes returned `r`: fewer (or `EAGAIN`) means the destination is full.
pub(super) fn write_done(dst: &mut Sock, r: io::Result<usize>, want: usize) -> io::Result<usize> {
    match r {
        Ok(n) => {
            if n < want {
                dst.writable = false;
            }
            Ok(n)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            dst.writable = false;
            Ok(0)
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}
