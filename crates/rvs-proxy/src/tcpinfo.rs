//! Segment counters of a TCP socket from `getsockopt(TCP_INFO)`.
//!
//! The relay reports, with its byte counts, how many TCP segments each socket received and
//! sent (`tcpi_segs_in`, `tcpi_segs_out`, Linux 4.2 and later), the closest a proxy gets to
//! the packet counters IPVS keeps per connection.
//!
//! ```no_run
//! # fn demo(s: &std::net::TcpStream) -> std::io::Result<()> {
//! use std::os::fd::AsRawFd;
//! let (segs_in, segs_out) = rvs_proxy::tcpinfo::segs(s.as_raw_fd())?;
//! # Ok(()) }
//! ```

use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::RawFd;

/// Bytes of `struct tcp_info` the kernel must fill for the segment counters to be there.
const NEEDED: usize = offset_of!(libc::tcp_info, tcpi_segs_in) + size_of::<u32>();

/// Make the socket `fd` close with a reset instead of a FIN (`SO_LINGER` on, 0 s). `fd` must
/// be an open socket that the caller's code still owns (it is only borrowed here).
pub fn reset_on_close(fd: RawFd) -> io::Result<()> {
    let lin = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let len = libc::socklen_t::try_from(size_of::<libc::linger>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: setsockopt only reads `len` bytes from the valid `lin`; an fd that is not a
    // socket (or not open) makes it fail with an error, never touches memory.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(lin).cast::<libc::c_void>(),
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What a proxy wants from `TCP_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// `tcpi_segs_in`
    pub segs_in: u64,
    /// `tcpi_segs_out`
    pub segs_out: u64,
    /// TCP timestamps were negotiated (`TCPI_OPT_TIMESTAMPS`): each segment carries 12 more
    /// header bytes
    pub timestamps: bool,
}

/// `TCPI_OPT_TIMESTAMPS` of `tcpi_options`.
const OPT_TIMESTAMPS: u8 = 1;

/// `(segs_in, segs_out)` of the TCP socket `fd`.
///
/// Fails with the system error (`EBADF`, `ENOTSOCK`, `EOPNOTSUPP` for a non-TCP socket) or
/// with [`io::ErrorKind::Unsupported`] on kernels older than 4.2, whose `tcp_info` ends
/// before these fields.
pub fn segs(fd: RawFd) -> io::Result<(u64, u64)> {
    info(fd).map(|i| (i.segs_in, i.segs_out))
}

/// Segment counters and negotiated options of the TCP socket `fd` (errors as [`segs`]).
pub fn info(fd: RawFd) -> io::Result<Info> {
    // SAFETY: tcp_info is a plain C struct of integers, for which all-zero bytes are valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(size_of::<libc::tcp_info>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `info` is a writable tcp_info and `len` says its exact size; the kernel writes at
    // most `len` bytes and stores the number written back into `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::addr_of_mut!(info).cast::<libc::c_void>(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < NEEDED {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "TCP_INFO has no segment counters (kernel before 4.2)",
        ));
    }
    Ok(Info {
        segs_in: u64::from(info.tcpi_segs_in),
        segs_out: u64::from(info.tcpi_segs_out),
        timestamps: info.tcpi_options & OPT_TIMESTAMPS != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    #[test]
    fn counts_segments_of_a_loopback_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        for _ in 0..5 {
            a.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            b.read_exact(&mut buf).unwrap();
            b.write_all(b"pong").unwrap();
            a.read_exact(&mut buf).unwrap();
        }
        let (a_in, a_out) = segs(a.as_raw_fd()).unwrap();
        let (b_in, b_out) = segs(b.as_raw_fd()).unwrap();
        // Handshake plus five data segments each way, at least.
        assert!(a_out >= 6, "{a_out}");
        assert!(b_out >= 5, "{b_out}");
        assert!(a_in >= 5 && b_in >= 6, "{a_in} {b_in}");
    }

    #[test]
    fn refuses_what_is_not_a_tcp_socket() {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(segs(u.as_raw_fd()).is_err());
        assert!(segs(-1).is_err());
    }
}
