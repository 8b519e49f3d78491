//! The control protocol of `rvsd`, version 1.
//!
//! A client connects to the Unix socket, writes one [`Request`] as JSON, shuts down its
//! writing half, and reads one [`Response`] as JSON until end of file. A request carries the
//! words of one ipvsadm invocation; rvsd parses them with `rvs_config::ipvsadm` (the same
//! parser as rvsadm, so defaults and errors are ipvsadm's), applies the command to its state
//! and answers what ipvsadm would print: standard output, standard error and exit status.
//! When the answer arrives, the change is in effect (and written to the state file).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The socket rvsd serves when neither `--socket` nor `RVS_SOCKET` says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/rvs/rvsd.sock";

/// Largest request or response accepted (bytes).
pub const MAX_MESSAGE: u64 = 64 << 20;

/// `RVS_SOCKET` if set and not empty, else [`DEFAULT_SOCKET`].
pub fn default_socket() -> PathBuf {
    match std::env::var_os("RVS_SOCKET") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_SOCKET),
    }
}

/// One request: an ipvsadm invocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// must equal [`VERSION`]
    pub version: u32,
    /// the program name ipvsadm texts mention (`rvsadm`)
    pub argv0: String,
    /// the words after the program name, e.g. `["-A", "-t", "10.0.0.1:80", "-s", "rr"]`
    pub args: Vec<String>,
    /// `true`: one line of `-R` input (parsed as ipvsadm parses restore lines)
    #[serde(default)]
    pub restore_line: bool,
    /// an rvs control action instead of an ipvsadm invocation (`args` then empty):
    /// `"reload"` re-reads the configuration files (as SIGHUP does) and answers a summary
    /// on stdout, or the located error on stderr with status 1; `"health"` /
    /// `"health-json"` answer the health checker's state as a table / as JSON
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
}

impl Request {
    /// A version-1 request for `args` (not a restore line).
    pub fn ipvsadm(argv0: &str, args: &[&str]) -> Request {
        Request {
            version: VERSION,
            argv0: argv0.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            restore_line: false,
            control: None,
        }
    }

    /// A version-1 control action (`"reload"`).
    pub fn control(argv0: &str, action: &str) -> Request {
        Request {
            control: Some(action.to_string()),
            ..Request::ipvsadm(argv0, &[])
        }
    }
}

/// The answer: what ipvsadm prints and its exit status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// the protocol version of the daemon
    pub version: u32,
    /// text for standard output
    pub stdout: String,
    /// text for standard error
    pub stderr: String,
    /// the exit status (0 success, 1 listing failure, 2 misuse, 255 refused by the state)
    pub status: i32,
}

impl Response {
    /// A response of this version.
    pub fn new(stdout: String, stderr: String, status: i32) -> Response {
        Response {
            version: VERSION,
            stdout,
            stderr,
            status,
        }
    }
}

/// Read one JSON message of at most [`MAX_MESSAGE`] bytes until end of file.
pub fn read_message<T: for<'de> Deserialize<'de>>(stream: &mut impl Read) -> io::Result<T> {
    let mut buf = Vec::new();
    stream.take(MAX_MESSAGE + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too large",
        ));
    }
    serde_json::from_slice(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Write one JSON message.
pub fn write_message<T: Serialize>(stream: &mut impl Write, msg: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(io::Error::other)?;
    stream.write_all(&bytes)?;
    stream.flush()
}

/// Send `req` to the rvsd listening on `socket` and wait for its answer. A connection error
/// (no socket, nobody listening) is returned as is; the caller decides what to print.
pub fn call(socket: &Path, req: &Request) -> io::Result<Response> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write_message(&mut stream, req)?;
    stream.shutdown(Shutdown::Write)?;
    read_message(&mut stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_json_is_the_documented_shape() {
        let req = Request::ipvsadm("rvsadm", &["-Ln"]);
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"argv0":"rvsadm","args":["-Ln"],"restore_line":false}"#
        );
        let back: Request =
            serde_json::from_str(r#"{"version":1,"argv0":"x","args":["-C"]}"#).unwrap();
        assert!(!back.restore_line);
    }
}
