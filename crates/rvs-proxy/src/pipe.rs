//! Pipes for `splice(2)`, kept in a bounded pool per thread.
//!
//! The relay moves bytes socket → pipe → socket without copying them through userspace; a
//! [`Pipe`] is the kernel buffer in the middle. Creating one costs two syscalls (`pipe2`,
//! `fcntl(F_SETPIPE_SZ)`) and two descriptors, so pipes are reused: [`take`] pops one from the
//! calling thread's free list (or creates one), [`give`] puts it back if it is empty and the
//! list is below its limit ([`set_pool_limit`], [`DEFAULT_POOL_LIMIT`]), otherwise closes it.
//! A pipe that still holds bytes is never reused: those bytes belong to a connection that
//! ended abnormally.
//!
//! Every pipe is asked for [`PIPE_PAGES`] pages of capacity; when the system refuses (limits
//! for unprivileged users) the default capacity is used, silently.
//!
//! ```no_run
//! # fn demo(from: std::os::fd::RawFd, to: std::os::fd::RawFd) -> std::io::Result<()> {
//! let mut pipe = rvs_proxy::pipe::take()?;
//! let n = pipe.fill_from(from)?; // socket -> pipe
//! pipe.drain_to(to)?; // pipe -> socket
//! rvs_proxy::pipe::give(pipe); // back to this thread's pool if empty
//! # Ok(()) }
//! ```

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// Buffers (pages) asked for each pipe (`F_SETPIPE_SZ`): 16, Linux's default pipe size (64 KiB
/// with 4 KiB pages) and HAProxy's when it splices.
///
/// Why not more: a direction moves at most one pipeful (16 buffers, up to 64 KiB on loopback)
/// per splice to its destination socket, and a socket handed a large burst at once has to
/// spread it out when it paces (BBR, or any congestion control under `SO_MAX_PACING_RATE`,
/// without the `fq` qdisc): the kernel then arms its pacing timer again and again. On loopback
/// under BBR, 16 concurrent 1 MiB transfers through 1 MiB pipes armed that timer 5,800 times
/// per GB moved, against 2,600 with 64 KiB pipes (HAProxy splicing: 1,200-1,500); in paired
/// runs (12-16 rounds of `bench/paired.sh`) the 64 KiB pipe moved as much (0.98-1.07 of the
/// 1 MiB pipe's throughput) with a lower tail (p99.9 better in 10-13 of 12-16 rounds). It also
/// bounds what one connection holds in the director's kernel memory per direction.
pub const PIPE_PAGES: usize = DEFAULT_PAGES;

/// Idle pipes a thread keeps unless [`set_pool_limit`] says otherwise.
pub const DEFAULT_POOL_LIMIT: usize = 64;

/// Pipes count in pages in the kernel: the capacity when `F_GETPIPE_SZ` cannot be read.
const DEFAULT_PAGES: usize = 16;

const SPLICE_FLAGS: libc::c_uint = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;

/// Counters of the calling thread's pool, cumulative since the thread started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pipes created because the pool was empty.
    pub created: u64,
    /// Pipes taken from the pool.
    pub reused: u64,
    /// Empty pipes given back and kept.
    pub returned: u64,
    /// Pipes given back and closed (not empty, or the pool was full).
    pub discarded: u64,
    /// `splice(2)` calls made through [`Pipe::fill_from`] and [`Pipe::drain_to`].
    pub splices: u64,
}

impl Stats {
    const ZERO: Stats = Stats {
        created: 0,
        reused: 0,
        returned: 0,
        discarded: 0,
        splices: 0,
    };

    /// Pipes taken and not yet given back.
    pub fn outstanding(&self) -> u64 {
        (self.created + self.reused).saturating_sub(self.returned + self.discarded)
    }
}

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
    static LIMIT: Cell<usize> = const { Cell::new(DEFAULT_POOL_LIMIT) };
    static STATS: Cell<Stats> = const { Cell::new(Stats::ZERO) };
}

fn count(f: impl FnOnce(&mut Stats)) {
    let _ = STATS.try_with(|s| {
        let mut v = s.get();
        f(&mut v);
        s.set(v);
    });
}

/// A non-blocking pipe and the number of bytes it holds.
#[derive(Debug)]
pub struct Pipe {
    rd: OwnedFd,
    wr: OwnedFd,
    len: usize,
    size: usize,
    slots: usize,
}

impl Pipe {
    /// Creates a pipe (`O_NONBLOCK | O_CLOEXEC`) of [`PIPE_PAGES`] pages if the system allows.
    pub fn new() -> io::Result<Pipe> {
        let mut fds: [libc::c_int; 2] = [-1, -1];
        // SAFETY: `fds` is a writable array of two c_ints, which is what pipe2 fills.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nothing else.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let size = grow(&wr);
        let slots = (size / page_size()).max(1);
        Ok(Pipe {
            rd,
            wr,
            len: 0,
            size,
            slots,
        })
    }

    /// Bytes in the pipe.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the pipe holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.size
    }

    /// Capacity in buffers (pages). A buffer holds at least one byte, so a splice into an
    /// empty pipe that moved fewer bytes than this did not stop because the pipe was full.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Moves what the socket `from` has (up to the capacity) into the pipe, without blocking.
    /// `Ok(0)` is the end of the stream; `WouldBlock` means the socket has nothing or the
    /// pipe is full.
    pub fn fill_from(&mut self, from: RawFd) -> io::Result<usize> {
        let n = splice(from, self.wr.as_raw_fd(), self.size)?;
        self.len += n;
        Ok(n)
    }

    /// Moves the pipe's bytes to the socket `to`, without blocking. Fewer bytes than
    /// [`len`](Self::len) means the socket's send buffer is full.
    pub fn drain_to(&mut self, to: RawFd) -> io::Result<usize> {
        let n = splice(self.rd.as_raw_fd(), to, self.len)?;
        self.len = self.len.saturating_sub(n);
        Ok(n)
    }
}

/// One `splice(2)` call without offsets (both ends are a pipe or a socket).
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    count(|s| s.splices += 1);
    // SAFETY: no pointer is passed (null offsets are required for pipes and sockets); the
    // kernel checks the descriptors, so a stale one yields EBADF rather than unsoundness.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            SPLICE_FLAGS,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Asks for [`PIPE_PAGES`]; returns the capacity the pipe ends up with.
fn grow(wr: &OwnedFd) -> usize {
    let want = libc::c_int::try_from(PIPE_PAGES * page_size()).unwrap_or(libc::c_int::MAX);
    // SAFETY: fcntl with integer arguments on a descriptor we own touches no memory of ours.
    let got = unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_SETPIPE_SZ, want) };
    if let Ok(size) = usize::try_from(got) {
        return size;
    }
    // SAFETY: as above.
    let cur = unsafe { libc::fcntl(wr.as_raw_fd(), libc::F_GETPIPE_SZ) };
    usize::try_from(cur).unwrap_or(DEFAULT_PAGES * page_size())
}

fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf reads a system constant and takes no pointer.
        let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(v).ok().filter(|&p| p > 0).unwrap_or(4096)
    })
}

/// Takes an empty pipe from this thread's pool, or creates one.
pub fn take() -> io::Result<Pipe> {
    let pooled = POOL.try_with(|p| p.borrow_mut().pop()).ok().flatten();
    match pooled {
        Some(pipe) => {
            count(|s| s.reused += 1);
            Ok(pipe)
        }
        None => {
            let pipe = Pipe::new()?;
            count(|s| s.created += 1);
            Ok(pipe)
        }
    }
}

/// Gives a pipe back: kept for reuse if it is empty and the pool has room, closed otherwise.
pub fn give(pipe: Pipe) {
    if !pipe.is_empty() {
        count(|s| s.discarded += 1);
        return;
    }
    let limit = LIMIT.try_with(Cell::get).unwrap_or(0);
    // If the thread is exiting the closure does not run and the pipe is simply closed.
    let _ = POOL.try_with(move |p| {
        let mut p = p.borrow_mut();
        if p.len() < limit {
            p.push(pipe);
            count(|s| s.returned += 1);
        } else {
            count(|s| s.discarded += 1);
        }
    });
}

/// Sets how many idle pipes this thread keeps, closing the surplus now.
pub fn set_pool_limit(limit: usize) {
    let _ = LIMIT.try_with(|l| l.set(limit));
    let _ = POOL.try_with(|p| p.borrow_mut().truncate(limit));
}

/// Idle pipes in this thread's pool.
pub fn idle() -> usize {
    POOL.try_with(|p| p.borrow().len()).unwrap_or(0)
}

/// This thread's pool counters.
pub fn stats() -> Stats {
    STATS.try_with(Cell::get).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn pipe_has_capacity_and_slots() {
        let p = Pipe::new().unwrap();
        assert!(p.capacity() >= 4096);
        assert!(p.slots() >= 1);
        assert_eq!(p.capacity() / p.slots(), page_size());
        // PIPE_PAGES buffers, not more (see PIPE_PAGES); it equals the kernel's default, so
        // this holds as well where the system refuses F_SETPIPE_SZ
        assert_eq!(p.slots(), PIPE_PAGES);
        assert!(p.is_empty());
    }

    #[test]
    fn bytes_cross_the_pipe() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let (c, mut d) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        a.write_all(b"hello splice").unwrap();
        let mut p = take().unwrap();
        let before = stats().splices;
        assert_eq!(p.fill_from(b.as_raw_fd()).unwrap(), 12);
        assert_eq!(p.len(), 12);
        assert_eq!(p.drain_to(c.as_raw_fd()).unwrap(), 12);
        assert!(p.is_empty());
        assert_eq!(stats().splices - before, 2);
        let mut got = [0u8; 12];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello splice");
        // Nothing more to read: the non-blocking splice says so instead of waiting.
        let e = p.fill_from(b.as_raw_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        give(p);
    }

    #[test]
    fn pool_reuses_empty_pipes_and_closes_full_ones() {
        set_pool_limit(1);
        let s0 = stats();
        let a = take().unwrap();
        let b = take().unwrap();
        give(a);
        give(b); // pool full (limit 1): closed
        assert_eq!(idle(), 1);
        let c = take().unwrap(); // the one kept
        assert_eq!(idle(), 0);
        let s1 = stats();
        assert_eq!(s1.returned - s0.returned, 1);
        assert_eq!(s1.discarded - s0.discarded, 1);
        assert!(s1.reused > s0.reused);

        // A pipe that still holds bytes is never pooled.
        let (mut x, y) = UnixStream::pair().unwrap();
        y.set_nonblocking(true).unwrap();
        x.write_all(b"left over").unwrap();
        let mut c = c;
        c.fill_from(y.as_raw_fd()).unwrap();
        give(c);
        assert_eq!(idle(), 0);
        assert_eq!(stats().outstanding(), s0.outstanding());
        set_pool_limit(DEFAULT_POOL_LIMIT);
    }
}
