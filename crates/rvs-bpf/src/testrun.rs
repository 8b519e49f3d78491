//! `BPF_PROG_TEST_RUN`: a loaded program run on a packet in memory, with its verdict, the
//! packet as the program left it, and the time per run.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// What one test run gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (an XDP verdict, see [`crate::verdict`]).
    pub verdict: u32,
    /// The packet after the program (rewritten headers included).
    pub packet: Vec<u8>,
    /// Average nanoseconds per run over `repeat` runs.
    pub ns_per_run: u32,
}

/// The `test` member of `union bpf_attr` (the kernel takes a shorter attr and zero-fills).
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    pad: u32,
}

/// `struct xdp_md` as a test run's context.
#[repr(C)]
#[derive(Default)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// Room after the packet for what a program may add (encapsulation headers).
const GROWTH: usize = 512;

pub(crate) fn run(
    prog: &aya::programs::ProgramFd,
    packet: &[u8],
    ifindex: Option<u32>,
    repeat: u32,
) -> io::Result<TestRun> {
    let len = u32::try_from(packet.len()).map_err(|_| io::Error::other("packet too long"))?;
    let mut out = vec![0u8; packet.len() + GROWTH];
    let ctx = XdpMd {
        data_end: len,
        ingress_ifindex: ifindex.unwrap_or(0),
        ..XdpMd::default()
    };
    let mut attr = TestAttr {
        prog_fd: u32::try_from(prog.as_fd().as_raw_fd()).map_err(|_| io::Error::other("bad fd"))?,
        data_size_in: len,
        data_size_out: out.len() as u32,
        data_in: packet.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: repeat.max(1),
        ..TestAttr::default()
    };
    if ifindex.is_some() {
        attr.ctx_size_in = std::mem::size_of::<XdpMd>() as u32;
        attr.ctx_in = std::ptr::addr_of!(ctx) as u64;
    }
    // SAFETY: the pointers in `attr` refer to `packet` (read, `len` bytes), `out` (written, at
    // most `data_size_out` bytes) and `ctx` (read), all alive until the call returns.
    unsafe { prog_test_run(&mut attr)? };
    out.truncate((attr.data_size_out as usize).min(out.len()));
    Ok(TestRun {
        verdict: attr.retval,
        packet: out,
        ns_per_run: attr.duration,
    })
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: the frames the program transmits or redirects really leave.
const LIVE_FRAMES: u32 = 1 << 1;

/// Runs `prog` `repeat` times in live-frames mode (kernel 5.18+) on copies of `packet`
/// arriving on interface `ifindex`: what it transmits (XDP_TX) leaves through that interface.
/// Returns the kernel's mean nanoseconds per run.
pub(crate) fn run_live(
    prog: &aya::programs::ProgramFd,
    packet: &[u8],
    ifindex: u32,
    repeat: u32,
) -> io::Result<u32> {
    let len = u32::try_from(packet.len()).map_err(|_| io::Error::other("packet too long"))?;
    let ctx = XdpMd {
        data_end: len,
        ingress_ifindex: ifindex,
        ..XdpMd::default()
    };
    let mut attr = TestAttr {
        prog_fd: u32::try_from(prog.as_fd().as_raw_fd()).map_err(|_| io::Error::other("bad fd"))?,
        data_size_in: len,
        data_in: packet.as_ptr() as u64,
        repeat: repeat.max(1),
        ctx_size_in: std::mem::size_of::<XdpMd>() as u32,
        ctx_in: std::ptr::addr_of!(ctx) as u64,
        flags: LIVE_FRAMES,
        ..TestAttr::default()
    };
    // SAFETY: the pointers in `attr` refer to `packet` (read, `len` bytes) and `ctx` (read),
    // both alive until the call returns; live frames have no output buffers.
    unsafe { prog_test_run(&mut attr)? };
    Ok(attr.duration)
}

/// `bpf(BPF_PROG_TEST_RUN, attr)`.
///
/// # Safety
///
/// Every pointer in `attr` must refer to memory of at least the size `attr` gives it (written
/// for the outputs), alive until the call returns.
unsafe fn prog_test_run(attr: &mut TestAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid bpf_attr prefix of the size passed; its pointers are the
    // caller's promise.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            std::ptr::from_mut(attr),
            std::mem::size_of::<TestAttr>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
