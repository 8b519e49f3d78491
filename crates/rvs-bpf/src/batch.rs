//! Reading a whole hash map in chunks (`BPF_MAP_LOOKUP_BATCH`, Linux 5.6+): one system call
//! per [`CHUNK`] entries instead of two per entry (`get_next_key`, then `lookup`), which is
//! what aya's iterator does. At a million flows that is the difference between seconds and
//! a fraction of one (`cargo run --release -p rvs-bpf --example flow_dump`).
//!
//! A kernel without the command (or a map type without it) answers `EINVAL` or
//! `ENOTSUPP`/`EOPNOTSUPP` on the first call: [`dump`] then says `None`, and the caller walks
//! the map key by key as before.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Entries asked for per call. A hash map's batch never splits a bucket: a bucket holding
/// more than this fails with `ENOSPC` (then the chunk is doubled and the call repeated).
pub(crate) const CHUNK: u32 = 4096;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The kernel's `ENOTSUPP` (not in libc: an internal errno that reaches user space here).
const ENOTSUPP: i32 = 524;

/// Every entry of the hash map `map` whose keys are `K` and values `V` (plain `repr(C)`
/// data of exactly the map's key and value sizes), or `None` when the kernel cannot read it
/// in batches. Entries added or deleted while the dump runs may or may not be in it; no
/// entry present throughout is missed or given twice.
pub(crate) fn dump<K: Copy + Default, V: Copy + Default>(
    map: BorrowedFd<'_>,
) -> io::Result<Option<Vec<(K, V)>>> {
    let fd = u32::try_from(map.as_raw_fd()).map_err(|_| io::Error::other("bad map fd"))?;
    let mut out = Vec::new();
    let mut chunk = CHUNK;
    let mut keys: Vec<K> = Vec::new();
    let mut values: Vec<V> = Vec::new();
    // the position token: a hash map's is a bucket number (u32); room for a u64
    let mut pos = [0u64; 1];
    let mut next = [0u64; 1];
    let mut first = true;
    loop {
        keys.resize(chunk as usize, K::default());
        values.resize(chunk as usize, V::default());
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { pos.as_ptr() as u64 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk,
            map_fd: fd,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` points at buffers of `chunk` keys and values (the map's own sizes,
        // the caller's promise) and at 8-byte position tokens, all alive across the call; the
        // kernel writes at most `count` entries and one token.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                std::ptr::addr_of_mut!(attr),
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let err = (rc < 0).then(io::Error::last_os_error);
        let errno = err.as_ref().and_then(io::Error::raw_os_error);
        if errno == Some(libc::ENOSPC) && chunk < (1 << 20) {
            // a bucket larger than the chunk: nothing was copied, ask again with more room
            chunk *= 2;
            continue;
        }
        if first
            && matches!(
                errno,
                Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS | ENOTSUPP)
            )
        {
            return Ok(None);
        }
        // the kernel sets `count` to the entries copied, also on the last (ENOENT) call
        let n = (attr.count as usize).min(chunk as usize);
        out.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        match errno {
            None => {}
            Some(libc::ENOENT) => return Ok(Some(out)),
            Some(_) => return Err(err.expect("an errno comes with an error")),
        }
        pos = next;
        first = false;
    }
}
