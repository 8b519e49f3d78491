//! The worker of each new TCP connection, chosen by the kernel as the SYN arrives.
//!
//! SO_REUSEPORT alone spreads connections over the workers' listeners by a hash of their
//! addresses: even on average, uneven at any moment. A worker that finds itself ahead must
//! then hand connections over, and every hand-off is one more wake-up of another thread
//! before the connection starts (measured: 1.75 ms median on two busy cores). Here a small
//! BPF program (`BPF_PROG_TYPE_SK_REUSEPORT`, attached to the listeners' reuseport group)
//! picks the listener instead. The kernel runs it when a packet for the service's port finds
//! no connection (a SYN, mostly): it chooses the worker with the fewest connections, counting
//! those it holds and those the program sent it that it has not accepted yet (handshakes
//! under way and connections in its queue); the first of equals, and as that worker is then
//! one ahead, equals take turns. The connection lands in that worker's queue and only that
//! worker wakes. The program compares every worker's count without a branch (a
//! subtraction's sign chooses), so the verifier walks one path and the program's length
//! grows linearly with the workers: about 30 instructions and 14 per worker.
//!
//! The counts live in memory-mapped BPF arrays, so neither side makes a system call to keep
//! them: [`Board`] holds each worker's open connections (the workers count them, as they
//! always have), and each reuseport group's own board the connections the program sent to
//! each worker that it has not accepted (the program adds one, the worker takes one off when
//! it accepts; see [`Steer`] for the counts of connections that never arrive).
//!
//! The counts are exact when SYNs come one at a time; two SYNs handled at once on two CPUs
//! can both see the same least worker (the program reads, then adds), so under a burst the
//! workers can end more than one apart, by as many as arrived together.
//!
//! When the kernel refuses the program (no privilege, a kernel before 5.5), the listeners
//! keep the plain hash and the workers hand connections over as before (see
//! [`crate::tcp`]); the data plane then logs it once and does not ask again for later
//! services. Once the kernel has taken the program, a service whose program cannot be
//! loaded (descriptors or memory short) goes without it, and the next one tries again.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// `bpf(2)` commands.
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_PROG_LOAD: libc::c_int = 5;
/// Map and program types, flags.
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_REUSEPORT_SOCKARRAY: u32 = 20;
const BPF_PROG_TYPE_SK_REUSEPORT: u32 = 21;
const BPF_SK_REUSEPORT_SELECT: u32 = 39;
const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Helpers the program calls.
const FN_MAP_LOOKUP_ELEM: i32 = 1;
const FN_SK_SELECT_REUSEPORT: i32 = 82;
/// The most workers the program compares (14 instructions each, run for every SYN; more
/// workers hand over instead).
pub(crate) const MAX_WORKERS: usize = 256;
/// How often each worker turns its pending counts' generations (see [`Steer`]).
pub(crate) const TURN: std::time::Duration = std::time::Duration::from_secs(1);
/// What the program returns: let the socket (chosen or not) take the connection.
const SK_PASS: i32 = 1;

/// A `union bpf_attr`, zeroed beyond the fields a command sets.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(&mut self, off: usize, name: &str) -> &mut Attr {
        let b = name.as_bytes();
        let n = b.len().min(15);
        self.0[off..off + n].copy_from_slice(&b[..n]);
        self
    }
    fn call(&mut self, cmd: libc::c_int) -> io::Result<libc::c_long> {
        // SAFETY: the attribute is a valid, fully initialised bpf_attr of the size passed;
        // the pointers inside it (set by the callers) point at live memory of the sizes given.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                self.0.as_mut_ptr(),
                std::mem::size_of::<Attr>() as libc::c_uint,
            )
        };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }
    fn fd(&mut self, cmd: libc::c_int) -> io::Result<OwnedFd> {
        let fd = self.call(cmd)? as RawFd;
        // SAFETY: the command returned a new descriptor that nobody else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// Counts (u32) in a one-element BPF array the program reads (and adds to) and this process
/// maps into its memory, or in plain memory when there is no program: one per worker for the
/// open connections, three per worker for a group's pending ones (see [`Steer`]).
pub(crate) enum Board {
    /// counts only this process reads
    Plain(Box<[AtomicU32]>),
    /// counts the program reads too
    Mapped(Mapping),
}

/// A BPF array's values mapped into this process.
pub(crate) struct Mapping {
    /// the BPF array
    map: OwnedFd,
    ptr: NonNull<AtomicU32>,
    /// the counts
    len: usize,
    /// bytes mapped (whole pages)
    bytes: usize,
}

// SAFETY: the mapping is a slice of atomics; sharing it between threads is what atomics are
// for, and it is unmapped only by its owner's drop.
unsafe impl Send for Mapping {}
// SAFETY: as above: every access goes through `AtomicU32`.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Board::shared`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.bytes) };
    }
}

impl Board {
    /// A board of `n` zeroes in plain memory.
    pub(crate) fn plain(n: usize) -> Board {
        Board::Plain((0..n).map(|_| AtomicU32::new(0)).collect())
    }

    /// A board of `n` zeroes in a BPF array the program can read.
    pub(crate) fn shared(n: usize, name: &str) -> io::Result<Board> {
        let value = (4 * n) as u32;
        let map = Attr::new()
            .u32(0, BPF_MAP_TYPE_ARRAY)
            .u32(4, 4)
            .u32(8, value)
            .u32(12, 1)
            .u32(16, BPF_F_MMAPABLE)
            .name(28, name)
            .fd(BPF_MAP_CREATE)?;
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let bytes = (value as usize).div_ceil(page) * page;
        // SAFETY: a shared mapping of the map's values (it was created mmapable); the kernel
        // chooses the address; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Board::Mapped(Mapping {
            map,
            ptr: NonNull::new(p.cast::<AtomicU32>()).ok_or_else(|| io::Error::other("mmap"))?,
            len: n,
            bytes,
        }))
    }

    /// The counts, one per worker.
    pub(crate) fn get(&self) -> &[AtomicU32] {
        match self {
            Board::Plain(b) => b,
            // SAFETY: `ptr` points at `len` initialised (zero-filled by the kernel), aligned
            // u32s of a page-aligned mapping that lives as long as the board.
            Board::Mapped(m) => unsafe { std::slice::from_raw_parts(m.ptr.as_ptr(), m.len) },
        }
    }

    /// The BPF array's descriptor; none in plain memory.
    fn fd(&self) -> Option<RawFd> {
        match self {
            Board::Plain(_) => None,
            Board::Mapped(m) => Some(m.map.as_raw_fd()),
        }
    }
}

/// The program and maps of one reuseport group (the workers' listeners of one address).
///
/// Its pending board counts, per worker, the connections the program sent it and it has not
/// accepted, in two generations: the program adds to the current one, an accept takes from
/// the older one first. Each second ([`TURN`]) the worker drops what is left of the older
/// generation (connections counted over a second ago that never reached its queue: a
/// handshake that failed or timed out, a SYN dropped at a full queue, a SYN cookie's ACK,
/// which the kernel selects for again) and makes it the current one. So a count lost this way
/// lasts one to two seconds, and a handshake still under way is never dropped before that.
/// A connection that waits in the queue longer (at the descriptor budget, where no worker
/// accepts: see [`crate::limits`]) stops being counted after those seconds too, until it is
/// accepted; every worker waits on the same budget, so that falls on all of them alike.
pub(crate) struct Steer {
    /// `[generation 0: n][generation 1: n][which generation is current, per worker: n]`
    pending: Board,
    workers: usize,
    /// keeps the group's socket array alive (the program holds it too)
    _sockets: OwnedFd,
    _prog: OwnedFd,
}

impl Steer {
    /// Load the program for the listeners `socks` (one per worker, in worker order, all bound
    /// to one address with SO_REUSEPORT and listening) and attach it to their group; `loads`
    /// is the workers' shared board of open connections.
    pub(crate) fn attach(loads: &Board, socks: &[RawFd]) -> io::Result<Steer> {
        let n = socks.len();
        let loads_fd = loads
            .fd()
            .ok_or_else(|| io::Error::other("the workers' counts are not shared"))?;
        if !(2..=MAX_WORKERS).contains(&n) || n != loads.get().len() {
            return Err(io::Error::other(format!(
                "one listener per worker, 2 to {MAX_WORKERS} of them"
            )));
        }
        let pending = Board::shared(3 * n, "rvs_pending")?;
        let sockets = Attr::new()
            .u32(0, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY)
            .u32(4, 4)
            .u32(8, 4)
            .u32(12, n as u32)
            .name(28, "rvs_listeners")
            .fd(BPF_MAP_CREATE)?;
        for (i, fd) in socks.iter().enumerate() {
            let key = i as u32;
            let value = *fd as u32;
            Attr::new()
                .u32(0, sockets.as_raw_fd() as u32)
                .u64(8, std::ptr::addr_of!(key) as u64)
                .u64(16, std::ptr::addr_of!(value) as u64)
                .call(BPF_MAP_UPDATE_ELEM)?;
        }
        let code = program(
            n as i32,
            loads_fd,
            pending.fd().unwrap_or(-1),
            sockets.as_raw_fd(),
        );
        let prog = load(&code)?;
        let pfd = prog.as_raw_fd();
        // SAFETY: setsockopt reads one int from a live local.
        let rc = unsafe {
            libc::setsockopt(
                socks[0],
                libc::SOL_SOCKET,
                libc::SO_ATTACH_REUSEPORT_EBPF,
                std::ptr::addr_of!(pfd).cast(),
                std::mem::size_of::<RawFd>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Steer {
            pending,
            workers: n,
            _sockets: sockets,
            _prog: prog,
        })
    }

    /// The counts of worker `w`: the generation the program adds to, the other one.
    fn counts(&self, w: usize) -> (&AtomicU32, &AtomicU32) {
        let b = self.pending.get();
        let n = self.workers;
        let (a, c) = (&b[w], &b[n + w]);
        if b[2 * n + w].load(Ordering::Relaxed) & 1 == 0 {
            (a, c)
        } else {
            (c, a)
        }
    }

    /// Worker `w` accepted a connection from this group: one off its pending count, from the
    /// older generation while it has any (the queue is first in, first out).
    pub(crate) fn accepted(&self, w: usize) {
        let (current, older) = self.counts(w);
        // Release: the worker's open count, raised before, is seen by a program that sees
        // this fall (the program reads pending before open)
        let less = |v: u32| v.checked_sub(1);
        if older
            .fetch_update(Ordering::Release, Ordering::Relaxed, less)
            .is_err()
        {
            // the older generation is empty: counted in the current one (or not at all, if
            // hashed before the program was attached; then nothing is taken)
            let _ = current.fetch_update(Ordering::Release, Ordering::Relaxed, less);
        }
    }

    /// Worker `w`'s second has passed: what is left of the older generation was counted
    /// more than a second ago and never arrived (see [`TURN`]); it is dropped, and its count
    /// becomes the one the program adds to.
    pub(crate) fn turn(&self, w: usize) {
        let b = self.pending.get();
        let (_, older) = self.counts(w);
        older.store(0, Ordering::Relaxed);
        b[2 * self.workers + w].fetch_xor(1, Ordering::Relaxed);
    }

    /// Count `k` connections sent to worker `w` in its current generation (as the program
    /// does) or, with `older`, in the other one.
    #[cfg(test)]
    pub(crate) fn sent(&self, w: usize, k: u32, older: bool) {
        let (current, other) = self.counts(w);
        if older { other } else { current }.fetch_add(k, Ordering::Relaxed);
    }

    /// Connections sent to each worker and not accepted yet (both generations).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> Vec<u32> {
        let b = self.pending.get();
        (0..self.workers)
            .map(|w| b[w].load(Ordering::Relaxed) + b[self.workers + w].load(Ordering::Relaxed))
            .collect()
    }
}

/// One BPF instruction.
#[derive(Clone, Copy)]
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    // the register fields are C bit-fields: the first one takes the low bits on a
    // little-endian machine, the high bits on a big-endian one
    let regs = if cfg!(target_endian = "little") {
        (src << 4) | dst
    } else {
        (dst << 4) | src
    };
    Insn {
        code,
        regs,
        off,
        imm,
    }
}

// Opcodes used (classes, sizes, modes, operations).
const ALU64_K: u8 = 0x07;
const ALU64_X: u8 = 0x0f;
const JMP_K: u8 = 0x05;
const ADD: u8 = 0x00;
const SUB: u8 = 0x10;
const MUL: u8 = 0x20;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const XOR: u8 = 0xa0;
const MOV: u8 = 0xb0;
const ARSH: u8 = 0xc0;
const JEQ: u8 = 0x10;
const JGE: u8 = 0x30;
const JNE: u8 = 0x50;
const LDX_W: u8 = 0x61;
const ST_W: u8 = 0x62;
const STX_W: u8 = 0x63;
const ATOMIC_W: u8 = 0xc3;
const LD_DW_IMM: u8 = 0x18;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const PSEUDO_MAP_FD: u8 = 1;

/// An assembler with forward jumps to one label (`pass`).
struct Asm {
    code: Vec<Insn>,
    to_pass: Vec<usize>,
}

impl Asm {
    fn op(&mut self, i: Insn) -> &mut Asm {
        self.code.push(i);
        self
    }
    fn mov(&mut self, dst: u8, src: u8) -> &mut Asm {
        self.op(insn(ALU64_X | MOV, dst, src, 0, 0))
    }
    fn movi(&mut self, dst: u8, imm: i32) -> &mut Asm {
        self.op(insn(ALU64_K | MOV, dst, 0, 0, imm))
    }
    fn alui(&mut self, op: u8, dst: u8, imm: i32) -> &mut Asm {
        self.op(insn(ALU64_K | op, dst, 0, 0, imm))
    }
    fn add(&mut self, dst: u8, src: u8) -> &mut Asm {
        self.op(insn(ALU64_X | ADD, dst, src, 0, 0))
    }
    fn ldx(&mut self, dst: u8, src: u8, off: i16) -> &mut Asm {
        self.op(insn(LDX_W, dst, src, off, 0))
    }
    fn map(&mut self, dst: u8, fd: RawFd) -> &mut Asm {
        self.op(insn(LD_DW_IMM, dst, PSEUDO_MAP_FD, 0, fd))
            .op(insn(0, 0, 0, 0, 0))
    }
    fn call(&mut self, f: i32) -> &mut Asm {
        self.op(insn(CALL, 0, 0, 0, f))
    }
    /// `if dst <op> imm goto pass`
    fn jpass(&mut self, op: u8, dst: u8, imm: i32) -> &mut Asm {
        self.to_pass.push(self.code.len());
        self.op(insn(JMP_K | op, dst, 0, 0, imm))
    }
    /// Look up element 0 of the array `fd` (key on the stack at -4): the value in r0.
    fn lookup0(&mut self, fd: RawFd) -> &mut Asm {
        self.mov(2, 10)
            .alui(ADD, 2, -4)
            .map(1, fd)
            .call(FN_MAP_LOOKUP_ELEM)
    }
    fn finish(mut self) -> Vec<Insn> {
        let pass = self.code.len();
        for at in std::mem::take(&mut self.to_pass) {
            self.code[at].off = (pass - at - 1) as i16;
        }
        self.movi(0, SK_PASS).op(insn(EXIT, 0, 0, 0, 0));
        self.code
    }
}

/// The program for `n` workers (2 or more): the worker with the least open + pending
/// connections (the first of equals), found without a branch, so the verifier walks one path
/// whatever `n` is. Registers: r6 the context, r7 the open connections' board, r8 the pending
/// board (`[older or current: n][the other: n][generation: n]`, see [`Steer`]), r9 the least
/// count so far, r3 its worker.
fn program(n: i32, loads: RawFd, pending: RawFd, sockets: RawFd) -> Vec<Insn> {
    let mut a = Asm {
        code: Vec::new(),
        to_pass: Vec::new(),
    };
    a.mov(6, 1).op(insn(ST_W, 10, 0, -4, 0));
    a.lookup0(loads).jpass(JEQ, 0, 0).mov(7, 0);
    a.lookup0(pending).jpass(JEQ, 0, 0).mov(8, 0);
    // above any count (three u32s), small enough that no subtraction below overflows
    a.op(insn(LD_DW_IMM, 9, 0, 0, 0))
        .op(insn(0, 0, 0, 0, 1 << 8));
    a.movi(3, 0);
    for i in 0..n {
        let off = (4 * i) as i16;
        let other = (4 * (n + i)) as i16;
        // r0 = count(i) - least, the pending counts read before the open one: a worker
        // adds to its open count before it takes from pending, so in this order a
        // connection being accepted is counted once or twice, never missed
        a.ldx(0, 8, off).ldx(1, 8, other).add(0, 1);
        a.ldx(1, 7, off).add(0, 1);
        a.op(insn(ALU64_X | SUB, 0, 9, 0, 0));
        // r1 = all ones when negative (ARSH), else zero
        a.mov(1, 0).alui(ARSH, 1, 63);
        // least += r0 & r1 (the new least when lower); worker = r1 ? i : worker
        a.op(insn(ALU64_X | AND, 0, 1, 0, 0)).add(9, 0);
        a.movi(2, i)
            .op(insn(ALU64_X | XOR, 2, 3, 0, 0))
            .op(insn(ALU64_X | AND, 2, 1, 0, 0))
            .op(insn(ALU64_X | XOR, 3, 2, 0, 0));
    }
    // a bound the verifier can see (never taken)
    a.jpass(JGE, 3, n);
    a.op(insn(STX_W, 10, 3, -8, 0));
    // r9 = the worker's count of the current generation: 4 * (worker + n * generation)
    a.alui(LSH, 3, 2).mov(9, 8).add(9, 3);
    a.ldx(2, 9, (8 * n) as i16)
        .alui(AND, 2, 1)
        .alui(MUL, 2, 4 * n)
        .add(9, 2);
    a.mov(1, 6)
        .map(2, sockets)
        .mov(3, 10)
        .alui(ADD, 3, -8)
        .movi(4, 0)
        .call(FN_SK_SELECT_REUSEPORT);
    // not selected (a socket missing from the array): the kernel's hash decides
    a.jpass(JNE, 0, 0);
    a.movi(1, 1).op(insn(ATOMIC_W, 9, 1, 0, 0));
    a.finish()
}

/// Load the program; on refusal the error carries the end of the verifier's log.
fn load(code: &[Insn]) -> io::Result<OwnedFd> {
    let license = c"GPL";
    let attr = |log: Option<&mut Vec<u8>>| {
        let mut a = Attr::new();
        a.u32(0, BPF_PROG_TYPE_SK_REUSEPORT)
            .u32(4, code.len() as u32)
            .u64(8, code.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .name(48, "rvs_steer")
            .u32(68, BPF_SK_REUSEPORT_SELECT);
        if let Some(buf) = log {
            a.u32(24, 1)
                .u32(28, buf.len() as u32)
                .u64(32, buf.as_mut_ptr() as u64);
        }
        a
    };
    match attr(None).fd(BPF_PROG_LOAD) {
        Ok(fd) => Ok(fd),
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            let mut log = vec![0u8; 1 << 16];
            let again = attr(Some(&mut log)).fd(BPF_PROG_LOAD);
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0');
            let tail: String = text.lines().rev().take(4).collect::<Vec<_>>().join(" | ");
            again.map_err(|_| io::Error::new(e.kind(), format!("{e}: {tail}")))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn queued(l: &TcpListener) -> usize {
        let mut n = 0;
        while l.accept().is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn the_kernel_sends_each_connection_to_the_less_loaded_worker() {
        steered_on("127.0.0.1:0");
        steered_on("[::1]:0");
    }

    fn steered_on(any_port: &str) {
        let loads = Board::shared(2, "rvs_test").expect("a shared board (root, BPF)");
        let l0 = crate::listen::tcp(any_port.parse().unwrap()).unwrap();
        let addr = l0.local_addr().unwrap();
        let l1 = crate::listen::tcp(addr).unwrap();
        let steer = Steer::attach(&loads, &[l0.as_raw_fd(), l1.as_raw_fd()])
            .expect("the program loads and attaches");
        // worker 0 holds 5 connections: the next 5 all go to worker 1
        loads.get()[0].store(5, Ordering::Relaxed);
        let mut clients: Vec<TcpStream> =
            (0..5).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert_eq!(steer.pending(), vec![0, 5]);
        // then they alternate between equals: never more than one apart
        for _ in 0..10 {
            clients.push(TcpStream::connect(addr).unwrap());
            let p = steer.pending();
            assert!((5 + p[0]).abs_diff(p[1]) <= 1, "{p:?}");
        }
        assert_eq!(steer.pending().iter().sum::<u32>(), 15);
        let (q0, q1) = (queued(&l0), queued(&l1));
        assert_eq!((q0, q1), (5, 10), "the queues hold what the counts say");
        for _ in 0..10 {
            steer.accepted(1);
        }
        steer.accepted(1); // more than were counted: stays at zero
        assert_eq!(steer.pending(), vec![5, 0]);
        // worker 0's five never arrive (taken above without `accepted`, as if their
        // handshakes had failed): one turn keeps them (they might be under way), the next
        // drops them
        steer.turn(0);
        assert_eq!(steer.pending(), vec![5, 0]);
        steer.turn(0);
        assert_eq!(steer.pending(), vec![0, 0]);
        // a connection counted before a turn and accepted after it is taken from the older
        // generation, one counted after the turn stays
        loads.get()[1].store(9, Ordering::Relaxed);
        let _a = TcpStream::connect(addr).unwrap();
        steer.turn(0);
        let _b = TcpStream::connect(addr).unwrap();
        assert_eq!(steer.pending(), vec![2, 0]);
        steer.accepted(0);
        steer.turn(0);
        assert_eq!(
            steer.pending(),
            vec![1, 0],
            "the newer count outlives the turn"
        );
        steer.accepted(0);
        steer.turn(0);
        steer.turn(0);
        assert_eq!(steer.pending(), vec![0, 0]);
        assert_eq!((queued(&l0), queued(&l1)), (2, 0));
    }

    #[test]
    fn the_least_loaded_of_five_then_equals_in_turn() {
        let loads = Board::shared(5, "rvs_test").expect("a shared board (root, BPF)");
        let first = crate::listen::tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let mut ls = vec![first];
        ls.extend((1..5).map(|_| crate::listen::tcp(addr).unwrap()));
        let fds: Vec<RawFd> = ls.iter().map(|l| l.as_raw_fd()).collect();
        let steer = Steer::attach(&loads, &fds).expect("the program loads and attaches");
        for (b, n) in loads.get().iter().zip([3, 1, 4, 1, 5]) {
            b.store(n, Ordering::Relaxed);
        }
        let mut clients = Vec::new();
        let expect = |c: &mut Vec<TcpStream>, want: [u32; 5]| {
            c.push(TcpStream::connect(addr).unwrap());
            assert_eq!(steer.pending(), want);
        };
        // 1 and 3 hold one each: the first of them, then the other
        expect(&mut clients, [0, 1, 0, 0, 0]);
        expect(&mut clients, [0, 1, 0, 1, 0]);
        // held + waiting now 3, 2, 4, 2, 5: 1 and 3 again, then 0 before 1 (3 and 3)
        expect(&mut clients, [0, 2, 0, 1, 0]);
        expect(&mut clients, [0, 2, 0, 2, 0]);
        expect(&mut clients, [1, 2, 0, 2, 0]);
        expect(&mut clients, [1, 3, 0, 2, 0]);
        let queued: Vec<usize> = ls.iter().map(queued).collect();
        assert_eq!(queued, vec![1, 3, 0, 2, 0]);
    }

    #[test]
    fn plain_boards_count_without_a_program() {
        let b = Board::plain(3);
        b.get()[2].fetch_add(2, Ordering::Relaxed);
        assert_eq!(
            b.get()
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect::<Vec<_>>(),
            vec![0, 0, 2]
        );
        assert!(
            Steer::attach(&b, &[0, 1, 2]).is_err(),
            "a plain board cannot steer"
        );
    }
}
