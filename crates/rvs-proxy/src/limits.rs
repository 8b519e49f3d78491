//! The descriptor budget. Every relayed TCP connection holds two sockets and, while bytes are
//! in flight, up to two pipes (four descriptors); a UDP flow holds one socket. The data plane
//! admits only as many connections as the process's descriptor limit can carry, so it never
//! accepts a connection it then cannot connect onwards: past the budget, new connections
//! wait in the kernel's listen backlog (accept is not called) until one ends.

use std::io;

/// Descriptors a relayed TCP connection may hold at once.
pub const PER_CONN: u64 = 6;

/// Descriptors kept for everything else: standard streams, the control socket and its
/// clients, the state file, per worker an event queue, its waker and its listeners.
pub fn reserve(workers: usize) -> u64 {
    32 + 8 * workers as u64
}

/// Raise the soft RLIMIT_NOFILE to the hard limit (as HAProxy and nginx do for their
/// connection budget) and return the soft limit now in force.
pub fn raise_nofile() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the valid, writable `lim`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one valid rlimit; raising the soft limit up to the hard one
        // is always permitted.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    Ok(lim.rlim_cur)
}

/// Connections (and UDP flows) admitted at once under a soft limit of `nofile` descriptors
/// with `workers` workers; at least one.
pub fn budget(nofile: u64, workers: usize) -> usize {
    let spare = nofile.saturating_sub(reserve(workers));
    usize::try_from(spare / PER_CONN)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Idle pipes each worker keeps for reuse: at most 64, and never so many that pooled pipes
/// eat a large share of the budget.
pub fn pipe_pool(budget: usize, workers: usize) -> usize {
    (budget / (8 * workers.max(1))).min(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_follows_the_limit() {
        assert_eq!(budget(1024, 2), (1024 - 48) / 6);
        assert_eq!(budget(100, 1), (100 - 40) / 6);
        assert_eq!(budget(10, 1), 1);
        assert_eq!(pipe_pool(budget(1 << 20, 2), 2), 64);
        assert_eq!(pipe_pool(10, 1), 1);
        assert!(raise_nofile().unwrap() >= 3);
    }
}
